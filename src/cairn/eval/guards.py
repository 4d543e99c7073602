"""Measuring the injection guard: true-positive rate on attacks, false-positive rate on ordinary text.

Benign sets come from BEIR SciFact (claims as questions, abstract passages as documents): real
text nobody on the project wrote, dense with the words a naive filter trips on ("system",
"act", "ignore", "instructions"). Attack data is looked for under the datasets folder and used
when present; when it is absent the loader says so instead of inventing a figure.

Accepted shapes of prompt-injection data, found under ``DATASETS/*inject*`` or
``DATASETS/*jailbreak*`` (a folder, searched recursively, or a single file):

- ``.jsonl``: one object per line; ``.json``: a list of objects (or ``{"data": [...]}``,
  ``{"rows": [...]}``, ``{"train": [...]}``, ...); ``.csv`` / ``.tsv`` with a header row.
- The text is the first of the columns ``text, prompt, input, question, content, sentence, query,
  instruction, user_input, payload, attack``.
- The label is the first of ``label, labels, is_injection, injection, is_attack, attack,
  malicious, is_malicious, jailbreak, is_jailbreak, class, category, type, target``; accepted
  values are 1/0, true/false, yes/no, or words such as injection / jailbreak / malicious / attack
  (positive) and benign / safe / legit / normal (negative). Rows with other values are skipped.
- A file without a label column counts as all-positive when its name says
  inject/attack/jailbreak/malicious and as all-negative when it says benign/safe/legit.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cairn.guard.base import Guard
from cairn.guard.injection import DEFAULT_THRESHOLD, InjectionDetector

TEXT_COLUMNS = (
    "text",
    "prompt",
    "input",
    "question",
    "content",
    "sentence",
    "query",
    "instruction",
    "user_input",
    "payload",
    "attack",
)
LABEL_COLUMNS = (
    "label",
    "labels",
    "is_injection",
    "injection",
    "is_attack",
    "attack",
    "malicious",
    "is_malicious",
    "jailbreak",
    "is_jailbreak",
    "class",
    "category",
    "type",
    "target",
)
_POSITIVE = frozenset(
    "1 true yes y injection injected prompt_injection prompt-injection jailbreak malicious attack adversarial "
    "unsafe harmful positive".split()
)
_NEGATIVE = frozenset("0 false no n benign safe legit legitimate normal clean negative harmless".split())
_SET_NAMES = re.compile(r"inject|jailbreak", re.IGNORECASE)
_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")


@dataclass(frozen=True, slots=True)
class LabelledText:
    text: str
    label: int
    source: str = ""


def evaluate_injection(
    texts_with_labels: Iterable[tuple[str, int | bool] | LabelledText],
    detector: Guard | None = None,
    *,
    threshold: float | None = None,
) -> dict[str, Any]:
    """TPR over label-1 texts, FPR over label-0 texts; a rate is None when its side is empty.

    Pass a ``detector`` (any guard) or a ``threshold`` for the built-in one, not both.
    """
    if detector is not None and threshold is not None:
        raise ValueError("give a detector or a threshold, not both")
    if detector is None:
        detector = InjectionDetector(DEFAULT_THRESHOLD if threshold is None else threshold)
    tp = fp = n_pos = n_neg = 0
    start = time.perf_counter()
    for item in texts_with_labels:
        text, label = (item.text, item.label) if isinstance(item, LabelledText) else item
        flagged = detector.check(text).flagged
        if int(label):
            n_pos += 1
            tp += flagged
        else:
            n_neg += 1
            fp += flagged
    elapsed = time.perf_counter() - start
    total = n_pos + n_neg
    return {
        "tpr": tp / n_pos if n_pos else None,
        "fpr": fp / n_neg if n_neg else None,
        "n_pos": n_pos,
        "n_neg": n_neg,
        "tp": tp,
        "fp": fp,
        "threshold": getattr(detector, "threshold", None),
        "texts_per_s": total / elapsed if elapsed > 0 and total else None,
    }


def parse_label(value: object) -> int | None:
    """1 for an attack, 0 for benign, None for a value this loader does not understand."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return 1 if value == 1 else 0 if value == 0 else None
    if isinstance(value, list) and len(value) == 1:
        return parse_label(value[0])
    word = str(value).strip().lower()
    if word in _POSITIVE:
        return 1
    if word in _NEGATIVE:
        return 0
    return None


def _label_from_name(path: Path) -> int | None:
    name = path.name.lower()
    if re.search(r"benign|safe|legit|normal|clean", name):
        return 0
    if re.search(r"inject|attack|jailbreak|malicious|adversarial", name):
        return 1
    return None


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    if isinstance(row, dict):
                        yield row
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), [])
        for row in data:
            if isinstance(row, dict):
                yield row
    elif suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as fh:
            yield from csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")


def load_labelled(path: Path) -> list[LabelledText]:
    """Rows of one file in any of the accepted shapes (module docstring); [] when none fit."""
    path = Path(path)
    out: list[LabelledText] = []
    default = _label_from_name(path)
    for row in _rows(path):
        keys = {str(k).strip().lower(): k for k in row}
        text_key = next((keys[c] for c in TEXT_COLUMNS if c in keys), None)
        if text_key is None:
            continue
        text = row[text_key]
        if not isinstance(text, str) or not text.strip():
            continue
        label_key = next((keys[c] for c in LABEL_COLUMNS if c in keys and keys[c] != text_key), None)
        label = parse_label(row[label_key]) if label_key is not None else default
        if label is None:
            continue
        out.append(LabelledText(text, label, path.name))
    return out


def find_injection_files(datasets_dir: Path) -> list[Path]:
    root = Path(datasets_dir)
    if not root.is_dir():
        return []
    files: list[Path] = []
    for entry in sorted(root.iterdir()):
        if not _SET_NAMES.search(entry.name):
            continue
        if entry.is_file() and entry.suffix.lower() in _SUFFIXES:
            files.append(entry)
        elif entry.is_dir():
            files.extend(p for p in sorted(entry.rglob("*")) if p.is_file() and p.suffix.lower() in _SUFFIXES)
    return files


def load_injection_sets(datasets_dir: Path) -> tuple[list[LabelledText] | None, str]:
    """The labelled rows of every prompt-injection set found, or None and why nothing was found."""
    files = find_injection_files(datasets_dir)
    if not files:
        return None, (
            f"no prompt-injection data under {datasets_dir} (looked for folders or files named *inject* or "
            f"*jailbreak* holding {', '.join(_SUFFIXES)})"
        )
    rows: list[LabelledText] = []
    used: list[str] = []
    for path in files:
        found = load_labelled(path)
        if found:
            rows.extend(found)
            used.append(str(path.relative_to(datasets_dir)))
    if not rows:
        names = ", ".join(str(p.relative_to(datasets_dir)) for p in files)
        return None, f"found {names} under {datasets_dir} but no rows with a text and a label column were recognised"
    return rows, "read " + ", ".join(used)


def scifact_questions(root: Path) -> list[str]:
    """Every SciFact claim (all splits: a benign question needs no relevance judgment)."""
    with (Path(root) / "queries.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_passages(text: str, size: int = 1000) -> list[str]:
    """Whole sentences packed into passages of about ``size`` characters, like ingestion's chunks."""
    passages: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text.strip()):
        if current and len(current) + 1 + len(sentence) > size:
            passages.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        passages.append(current)
    return passages


def scifact_passages(root: Path, size: int = 1000, limit: int | None = None) -> list[str]:
    """Title and abstract of each SciFact document, split into passages of about ``size`` characters."""
    passages: list[str] = []
    with (Path(root) / "corpus.jsonl").open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if limit is not None and n >= limit:
                break
            if not line.strip():
                continue
            row = json.loads(line)
            title = (row.get("title") or "").strip()
            body = (row.get("text") or "").strip()
            passages.extend(split_passages(f"{title}. {body}" if title else body, size))
    return passages
