"""Queued ingestion with 1 vs N worker processes on the same corpus, against an inline ``cairn ingest``.

    python bench/queue_workers.py                         # the sample corpus x 20, workers 1 and 4
    python bench/queue_workers.py --copies 50 --workers 1 2 4 --rounds 3 --embedder 'fake:hash?dim=384'

The corpus is the sample corpus (scripts/build_samples.py: PDF, DOCX, HTML, Markdown, text) copied
``--copies`` times into sub-folders, so there are enough files to share. Each run gets its own
knowledge base: an inline sync (one process, `Ingestor.sync_folder`), then for each worker count one
queued sync (`cairn ingest --queue`) drained by that many `cairn worker --once` processes; with
``--rounds R`` these runs alternate R times and the medians are reported. Per run: the wall time,
processes' start-up included (interpreter, model load), and the busy time from the first claim to the
last finished job (the queue's own timestamps), as files per second. The database is an embedded
PostgreSQL in a temporary CAIRN_HOME unless CAIRN_DATABASE_URL is set. On a machine with fewer free
cores than workers, the figures show it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _corpus(out: Path, copies: int) -> int:
    samples = out / "_samples"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_samples.py"), str(samples)], check=True, capture_output=True
    )
    files = [p for p in samples.rglob("*") if p.is_file()]
    for i in range(copies):
        for path in files:
            target = out / "corpus" / f"copy{i:03d}" / path.relative_to(samples)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    shutil.rmtree(samples)
    return copies * len(files)


def _busy_seconds(cairn: object, parent: int) -> float:
    from cairn.types import SYSTEM

    with cairn.db.connection(SYSTEM) as conn:  # type: ignore[attr-defined]
        row = conn.execute(
            "SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM ingest_jobs"
            " WHERE id = %s OR parent_id = %s",
            (parent, parent),
        ).fetchone()
    return float(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=20, help="Copies of the sample corpus.")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="Worker process counts to run.")
    parser.add_argument("--batch", type=int, default=4, help="CAIRN_WORKER_BATCH of the workers.")
    parser.add_argument("--embedder", default=None, help="CAIRN_EMBEDDER (default: the packaged ONNX model).")
    parser.add_argument("--rounds", type=int, default=1, help="Rounds of all runs, alternated; medians reported.")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cairn-queue-bench-"))
    os.environ.setdefault("CAIRN_HOME", str(work / "home"))
    if args.embedder:
        os.environ["CAIRN_EMBEDDER"] = args.embedder
    os.environ["CAIRN_GENERATOR"] = "extractive:"
    os.environ["CAIRN_WORKER_POLL_S"] = "0.2"
    from cairn.assistant import Cairn
    from cairn.ingest.queue import JobQueue
    from cairn.settings import get_settings
    from cairn.types import SYSTEM

    files = _corpus(work, args.copies)
    folder = work / "corpus"
    cairn = Cairn(get_settings())
    cairn.db.warm_up()
    cairn.embedder.warm_up()
    queue = JobQueue(cairn.db, cairn.store)
    env = os.environ | {"CAIRN_DATABASE_URL": cairn.db.url, "CAIRN_WORKER_BATCH": str(args.batch)}
    runs: dict[str, list[dict[str, Any]]] = {}
    # The runs alternate, round after round, so that a machine whose load changes meanwhile (shared
    # CPUs) weighs on each of them alike; medians are reported.
    for round_ in range(args.rounds):
        started = time.perf_counter()
        report = cairn.ingestor.sync_folder(folder, f"inline{round_}")
        wall = time.perf_counter() - started
        runs.setdefault("inline cairn ingest", []).append({"files": files, "wall": wall, "busy": report.seconds})
        for count in args.workers:
            sync = queue.enqueue(folder, f"queued{count}r{round_}", principal=SYSTEM)
            started = time.perf_counter()
            command = [sys.executable, "-m", "cairn", "worker", "--once", "--json", "--quiet"]
            procs = [
                subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(count)
            ]
            stats = []
            for proc in procs:
                out, err = proc.communicate()
                if proc.returncode != 0:
                    raise SystemExit(f"a worker failed: {err}")
                stats.append(json.loads(out))
            wall = time.perf_counter() - started
            progress = queue.progress(sync.id, principal=SYSTEM)
            name = f"queued, {count} worker process{'es' if count > 1 else ''}"
            runs.setdefault(name, []).append(
                {
                    "files": sum(progress.states.values()),  # the file jobs the folder job turned into
                    "wall": wall,
                    "busy": _busy_seconds(cairn, sync.id),
                    "per_worker": [s["done"] for s in stats],
                    "failed": progress.states.get("failed", 0),
                }
            )
    results = []
    for name, rounds in runs.items():
        busy = statistics.median(r["busy"] for r in rounds)
        results.append(
            {
                "run": name,
                "files": rounds[0]["files"],
                "wall_s": round(statistics.median(r["wall"] for r in rounds), 2),
                "busy_s": round(busy, 2),
                "busy_s_each_round": [round(r["busy"], 2) for r in rounds],
                "files_per_s": round(rounds[0]["files"] / busy, 2),
                "jobs_per_worker": [r["per_worker"] for r in rounds if "per_worker" in r],
                "failed": sum(r.get("failed", 0) for r in rounds),
            }
        )
    cairn.close()
    shutil.rmtree(work, ignore_errors=True)
    meta = {
        "cpus": os.cpu_count(),
        "embedder": get_settings().embedder,
        "batch": args.batch,
        "copies": args.copies,
        "rounds": args.rounds,
    }
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
        return
    print(
        f"{files} files ({args.copies} copies of the sample corpus), embedder {meta['embedder']},"
        f" {meta['cpus']} CPUs, worker batch {args.batch}"
    )
    for r in results:
        extra = f"  jobs per worker {r['jobs_per_worker'][-1]}" if r["jobs_per_worker"] else ""
        print(
            f"  {r['run']:<32} wall {r['wall_s']:>7.2f} s  busy {r['busy_s']:>7.2f} s"
            f"  {r['files_per_s']:>7.2f} files/s  (rounds: {r['busy_s_each_round']}){extra}"
        )


if __name__ == "__main__":
    main()
