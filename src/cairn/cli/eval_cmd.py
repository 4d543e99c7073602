"""``cairn eval beir``: retrieval quality on a BEIR-format folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cairn.cli.app import eval_app, print_json, want_json_errors
from cairn.cli.context import (
    ConfigFileOpt,
    DecomposeOpt,
    GraphOpt,
    ProfileOpt,
    RerankDepthOpt,
    RerankOpt,
    RewriteOpt,
    open_cairn,
    pipeline_config,
    progress_bar,
)
from cairn.eval.beir import kb_name_for, load_beir, report, run_queries, score

err = Console(stderr=True)


@eval_app.command("beir")
def eval_beir(
    folder: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv.")],
    split: Annotated[str, typer.Option(help="Qrels split to score.")] = "test",
    mode: Annotated[str | None, typer.Option(help="hybrid, bm25 or dense (default: the profile's).")] = None,
    fusion: Annotated[str | None, typer.Option(help="rrf or convex (default from settings).")] = None,
    alpha: Annotated[float | None, typer.Option(help="Dense weight for convex fusion.")] = None,
    mmr: Annotated[bool | None, typer.Option("--mmr/--no-mmr", help="Re-order with MMR (default: settings).")] = None,
    profile: ProfileOpt = None,
    config_file: ConfigFileOpt = None,
    rerank: RerankOpt = None,
    rerank_depth: RerankDepthOpt = None,
    rewrite: RewriteOpt = None,
    decompose: DecomposeOpt = None,
    graph: GraphOpt = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N queries.")] = None,
    kb: Annotated[str | None, typer.Option(help="Knowledge base to index into (default beir-NAME).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Index the corpus (incrementally) and report nDCG@10, recall@100, MRR@10 and latency."""
    want_json_errors(json_out)
    if mode not in (None, "hybrid", "bm25", "dense") or fusion not in (None, "rrf", "convex"):
        raise typer.BadParameter("mode: hybrid|bm25|dense; fusion: rrf|convex")
    dataset = load_beir(folder, split)
    cairn = open_cairn()
    kb_name = kb or kb_name_for(dataset)
    progress = progress_bar()
    with progress:
        task = progress.add_task("index corpus", total=None)
        cairn.ingestor.ingest_documents(kb_name, dataset.corpus(), progress=lambda _: progress.advance(task))
        config = pipeline_config(
            cairn,
            [kb_name],
            profile=profile,
            config_file=config_file,
            mode=mode,
            fusion=fusion,
            alpha=alpha,
            mmr=mmr,
            rerank=rerank,
            rerank_depth=rerank_depth,
            rewrite=rewrite,
            decompose=decompose,
            graph=graph,
        )
        qtask = progress.add_task("queries", total=min(len(dataset.queries), limit or len(dataset.queries)))
        run, latencies = run_queries(
            cairn.retriever,
            dataset,
            kb_name,
            config,
            limit=limit,
            progress=lambda n: progress.update(qtask, completed=n),
        )
    result = report(dataset, config, score(dataset, run), latencies)
    if json_out:
        print_json(result)
    else:
        for key, value in result.items():
            if key != "config":
                err.print(f"{key:>12}: {value}")
        err.print(f"{'config':>12}: {result['config']}")
    cairn.close()
