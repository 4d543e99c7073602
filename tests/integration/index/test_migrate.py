"""Migrations from an empty database: applied once, in order, also when processes race."""

from __future__ import annotations

import threading

import psycopg

from cairn.index.migrate import available, migrate


def test_from_empty_then_idempotent(database_url: str) -> None:
    names = [f"m{m.number:03d}_{m.name}" for m in available()]
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert migrate(conn) == names
        assert migrate(conn) == []
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"documents", "chunks", "postings", "kb_stats", "knowledge_bases", "cairn_migrations"} <= tables


def test_concurrent_starters_apply_each_migration_once(database_url: str) -> None:
    applied: list[list[str]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                applied.append(migrate(conn))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(len(a) for a in applied) == [0, 0, 0, len(available())]
