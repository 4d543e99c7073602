"""What drift is measured on: the audited interactions and the feedback of a time window.

Only the fields the signals use are read, and the database extracts them from each record's JSON
(the top retrieval score, the grounding verdict), so a window of many thousands of interactions
travels as a few columns. Both windows and their feedback are read in one read-only snapshot.

Which records count for what:

- every ``ask``, ``search`` and ``chat`` record contributes its question (input drift);
- every record that retrieved passages contributes its top score: the highest ``cosine`` (the
  calibrated relevance the refusal gate uses) when the record has one, else the highest fused
  ``score`` (records written before the cosine was audited);
- ``ask`` and ``chat`` records that ran the pipeline are the *answers*: refused or not (a question
  a guard blocked ran nothing and is left out: the guard metrics count those), their length in
  words when answered, and their grounding verdict when one was checked;
- feedback counts per answer of the window, its latest vote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cairn.ops.drift.windows import Window

if TYPE_CHECKING:
    import psycopg

    from cairn.index.db import Database
    from cairn.types import Principal

_MARKER = re.compile(r"\[\d+\]")

_RECORDS = """
SELECT kind,
       record ->> 'question',
       coalesce((record ->> 'refused')::boolean, false),
       record ->> 'answer',
       record -> 'grounding' ->> 'verdict',
       record -> 'grounding' ->> 'supported_ratio',
       (SELECT max((r ->> 'cosine')::float8) FROM jsonb_array_elements(retrieved) r),
       (SELECT max((r ->> 'score')::float8) FROM jsonb_array_elements(retrieved) r),
       coalesce(record -> 'timings_ms', '{}'::jsonb) <> '{}'::jsonb
  FROM audit_log,
       LATERAL (SELECT CASE WHEN jsonb_typeof(record -> 'retrieved') = 'array'
                            THEN record -> 'retrieved' ELSE '[]'::jsonb END AS retrieved) lineage
 WHERE kind IN ('ask', 'search', 'chat') AND at >= %s AND at < %s
 ORDER BY id
"""

# The latest vote on each answer of the window (a user may change their mind).
_VOTES = """
SELECT latest.vote, count(*)
  FROM (SELECT DISTINCT ON (f.audit_id) f.vote
          FROM feedback f JOIN audit_log a ON a.id = f.audit_id
         WHERE a.kind IN ('ask', 'chat') AND a.at >= %s AND a.at < %s AND f.vote IS NOT NULL
         ORDER BY f.audit_id, f.id DESC) latest
 GROUP BY latest.vote
"""


@dataclass(slots=True)
class WindowData:
    """The samples of one window, ready for the statistics."""

    window: Window
    records: int = 0
    questions: list[str] = field(default_factory=list)
    top_scores: list[float] = field(default_factory=list)
    top_cosines: list[float | None] = field(default_factory=list)  # parallel to top_fused
    top_fused: list[float] = field(default_factory=list)
    answers: int = 0
    refused: int = 0
    answer_words: list[int] = field(default_factory=list)
    grounding_checked: int = 0
    grounding_failed: int = 0
    supported_ratios: list[float] = field(default_factory=list)
    votes_up: int = 0
    votes_down: int = 0

    @property
    def votes(self) -> int:
        return self.votes_up + self.votes_down

    def add(self, row: tuple[Any, ...]) -> None:
        kind, question, refused, answer, verdict, ratio, cosine, fused, ran = row
        self.records += 1
        if question and question.strip():
            self.questions.append(question)
        if fused is not None:
            self.top_cosines.append(None if cosine is None else float(cosine))
            self.top_fused.append(float(fused))
        if kind == "search" or not ran:
            return
        self.answers += 1
        if refused:
            self.refused += 1
        else:
            self.answer_words.append(len(_MARKER.sub(" ", answer or "").split()))
        if verdict is not None:
            self.grounding_checked += 1
            if verdict != "grounded":
                self.grounding_failed += 1
            if ratio is not None:
                self.supported_ratios.append(float(ratio))


def top_score_field(*windows: WindowData) -> str:
    """``cosine`` when every retrieval of every window has one, else ``score``: never a mix of the two."""
    has_any = any(w.top_fused for w in windows)
    if has_any and all(c is not None for w in windows for c in w.top_cosines):
        return "cosine"
    return "score"


def choose_top_scores(*windows: WindowData) -> str:
    """Fill each window's ``top_scores`` from the one field all of them have; returns its name."""
    name = top_score_field(*windows)
    for window in windows:
        if name == "cosine":
            window.top_scores = [float(c) for c in window.top_cosines if c is not None]
        else:
            window.top_scores = list(window.top_fused)
    return name


def _read(conn: psycopg.Connection, window: Window) -> WindowData:
    data = WindowData(window)
    with conn.cursor(name=f"cairn_drift_{id(data)}") as cur:
        cur.itersize = 2000
        cur.execute(_RECORDS, (window.start, window.end))
        for row in cur:
            data.add(row)
    for vote, count in conn.execute(_VOTES, (window.start, window.end)).fetchall():
        if vote == 1:
            data.votes_up = int(count)
        elif vote == -1:
            data.votes_down = int(count)
    return data


def load_windows(db: Database, principal: Principal, *windows: Window) -> list[WindowData]:
    """Each window's samples, read in one snapshot; the caller has checked that ``principal`` is an admin.

    Row-level security applies again here: for anyone but an administrator the trail reads as empty.
    """
    with db.connection(principal) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        loaded = [_read(conn, w) for w in windows]
    choose_top_scores(*loaded)
    return loaded


__all__ = ["WindowData", "choose_top_scores", "load_windows", "top_score_field"]
