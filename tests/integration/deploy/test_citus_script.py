"""deploy/citus/distribute.sql against cairn's real schema, on plain PostgreSQL (no Citus here).

Citus' functions are replaced by stubs that check their arguments (the table exists, the distribution
column exists, the function exists) and record each call. The script then runs for real, so every
statement that is not a Citus call (the key and foreign-key changes, the dropped triggers) is executed
by PostgreSQL. What is checked afterwards are Citus' documented rules, on the catalog:

- every table of the schema is in exactly one class (distributed, reference, local) and the script
  distributes exactly the tables its header says;
- every unique index of a distributed table includes the distribution column, and every foreign key
  between distributed tables includes it on both sides (colocation); reference tables reference only
  reference tables; coordinator tables reference no distributed table;
- the functions the shards need (policies, triggers) are distributed;
- cairn still ingests, searches, replaces and deletes documents and passes ``index check`` on the
  altered constraints.

This is not a test of Citus itself, which cannot be installed here (docs/deployment.md says so).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from cairn.assistant import Cairn
from cairn.index.check import check_index
from cairn.types import SYSTEM

SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "citus" / "distribute.sql"

STUBS = """
CREATE SCHEMA citus_stub;
CREATE TABLE citus_stub.calls (kind text, name text, col text, colocate_with text);
CREATE FUNCTION citus_stub.create_reference_table(table_name regclass) RETURNS void LANGUAGE sql
AS $$ INSERT INTO citus_stub.calls VALUES ('reference', table_name::text, NULL, NULL) $$;
CREATE FUNCTION citus_stub.create_distributed_table(
    table_name regclass, distribution_column text, distribution_type text DEFAULT 'hash',
    colocate_with text DEFAULT 'default', shard_count int DEFAULT NULL) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = table_name AND attname = distribution_column
                   AND NOT attisdropped) THEN
        RAISE EXCEPTION 'column % of % does not exist', distribution_column, table_name;
    END IF;
    IF colocate_with <> 'default' AND to_regclass(colocate_with) IS NULL THEN
        RAISE EXCEPTION 'colocate_with % is not a table', colocate_with;
    END IF;
    INSERT INTO citus_stub.calls VALUES ('distributed', table_name::text, distribution_column, colocate_with);
END $$;
CREATE FUNCTION citus_stub.create_distributed_function(
    function_name regprocedure, distribution_arg_name text DEFAULT NULL, colocate_with text DEFAULT 'default')
RETURNS void LANGUAGE sql AS $$ INSERT INTO citus_stub.calls VALUES ('function', function_name::text, NULL, NULL) $$;
"""


def _header(script: str, kind: str) -> set[str]:
    match = re.search(rf"^-- {kind}: (.+)$", script, re.MULTILINE)
    assert match, f"the script's header has no '-- {kind}:' line"
    return {name.strip() for name in match[1].split(",")}


def _distribute(url: str) -> dict[str, set[tuple[str, str | None, str | None]]]:
    script = SCRIPT.read_text(encoding="utf-8")
    runnable = "\n".join(line for line in script.splitlines() if not line.startswith("\\"))  # psql commands
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(STUBS)
        conn.execute("SET search_path = citus_stub, public")
        conn.execute(runnable)
        calls: dict[str, set[tuple[str, str | None, str | None]]] = {}
        for kind, name, col, colocate in conn.execute("SELECT * FROM citus_stub.calls"):
            calls.setdefault(kind, set()).add((name, col, colocate))
        conn.execute("DROP SCHEMA citus_stub CASCADE")
    return calls


@pytest.fixture
def distributed(
    make_cairn: Callable[..., Cairn], database_url: str
) -> dict[str, set[tuple[str, str | None, str | None]]]:
    cairn = make_cairn()
    cairn.db.warm_up()  # every migration applied
    cairn.close()
    return _distribute(database_url)


def test_every_table_is_classified_and_the_header_matches_the_calls(
    distributed: dict[str, set[tuple[str, str | None, str | None]]], database_url: str
) -> None:
    script = SCRIPT.read_text(encoding="utf-8")
    dist, ref, local = (_header(script, k) for k in ("distributed", "reference", "local"))
    with psycopg.connect(database_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert not (dist & ref or dist & local or ref & local)
    assert dist | ref | local == tables, (
        f"unclassified: {tables - dist - ref - local}; gone: {dist | ref | local - tables}"
    )
    assert {name for name, _, _ in distributed["distributed"]} == dist
    assert {name for name, _, _ in distributed["reference"]} == ref
    assert {col for _, col, _ in distributed["distributed"]} == {"kb_id"}
    # One colocation group: every table is colocated with documents.
    assert {c for name, _, c in distributed["distributed"] if name != "documents"} == {"documents"}


def test_keys_and_foreign_keys_follow_citus_rules(
    distributed: dict[str, set[tuple[str, str | None, str | None]]], database_url: str
) -> None:
    column = {name: col for name, col, _ in distributed["distributed"]}
    reference = {name for name, _, _ in distributed["reference"]}
    with psycopg.connect(database_url) as conn:
        unique = conn.execute(
            "SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text,"
            " ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = i.indrelid"
            "       AND a.attnum = ANY(i.indkey::int2[]))"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " WHERE i.indisunique AND c.relnamespace = 'public'::regnamespace"
        ).fetchall()
        fks = conn.execute(
            "SELECT conrelid::regclass::text, confrelid::regclass::text, conname,"
            " ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = conrelid AND attnum = ANY(conkey)),"
            " ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = confrelid AND attnum = ANY(confkey)),"
            " array_position(conkey, (SELECT attnum FROM pg_attribute WHERE attrelid = conrelid"
            "                          AND attname = 'kb_id')),"
            " array_position(confkey, (SELECT attnum FROM pg_attribute WHERE attrelid = confrelid"
            "                           AND attname = 'kb_id'))"
            " FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
        ).fetchall()
    for table, index, columns in unique:
        if table in column:
            assert column[table] in columns, f"{index} on {table} does not include {column[table]}"
    for table, target, name, _, _, pos, target_pos in fks:
        if table in column:
            if target in reference:
                continue
            assert target in column, f"{name}: {table} references the coordinator table {target}"
            assert pos is not None and pos == target_pos, f"{name} does not pair {table}.kb_id with {target}.kb_id"
        elif table in reference:
            assert target in reference, f"{name}: reference table {table} references {target}"
        else:
            assert target not in column, f"{name}: coordinator table {table} references sharded {target}"


def test_what_the_shards_call_is_distributed(
    distributed: dict[str, set[tuple[str, str | None, str | None]]], database_url: str
) -> None:
    functions = {name.split("(")[0] for name, _, _ in distributed["function"]}
    sharded = {name for name, _, _ in distributed["distributed"] | distributed["reference"]}
    with psycopg.connect(database_url) as conn:
        triggers = conn.execute(
            "SELECT tgrelid::regclass::text, tgname, tgfoid::regproc::text FROM pg_trigger WHERE NOT tgisinternal"
        ).fetchall()
        policies = conn.execute(
            "SELECT tablename, coalesce(qual, '') || ' ' || coalesce(with_check, '') FROM pg_policies"
        ).fetchall()
    for table, name, function in triggers:
        if table in sharded:
            assert function in functions, f"trigger {name} on {table} calls {function}, which the workers lack"
    for table, text in policies:
        if table in sharded:
            called = set(re.findall(r"\b(cairn_[a-z_]+)\(", text))
            assert called <= functions, f"policies of {table} call {called - functions}, which the workers lack"


def test_cairn_works_on_the_altered_constraints(
    distributed: dict[str, set[tuple[str, str | None, str | None]]],
    make_cairn: Callable[..., Cairn],
    tmp_path: Path,
) -> None:
    cairn = make_cairn(graph_extractor="heuristic:")
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"p{i}.txt").write_text(
            f"Acme Travel Policy {i}. Employees of Acme book flights through Globex Travel. " * 20, encoding="utf-8"
        )
    for kb in ("one", "two"):
        assert cairn.ingestor.sync_folder(folder, kb).count("added") == 6
    (folder / "p0.txt").write_text("Acme replaced Globex with Initech for all travel bookings.", encoding="utf-8")
    (folder / "p1.txt").unlink()
    report = cairn.ingestor.sync_folder(folder, "one")
    assert (report.count("updated"), report.count("deleted")) == (1, 1)
    hits = cairn.search("Initech travel bookings", ["one"], principal=SYSTEM).hits
    assert hits and hits[0].source.endswith("p0.txt")
    cairn.store.drop_kb("two")
    result = check_index(cairn.db)
    assert result.ok, result.problems
    assert result.documents == 5
