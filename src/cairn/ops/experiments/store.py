"""Experiments in PostgreSQL: administrators manage them, every answer reads the running one.

Management is checked twice like everything else in cairn: :func:`require_admin` here, and the
row-level security policies of ``m007_experiments.sql`` in the database. Every change is kept in
``experiment_changes`` (who, when, what), shown by ``cairn experiments show``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from cairn.answer.templates import versions
from cairn.errors import Forbidden, InputError, NotFound
from cairn.ops.audit import require_admin
from cairn.ops.experiments.assign import assign
from cairn.ops.experiments.model import ALL_SCOPE, Assignment, Experiment, Variant, check_name, check_rollout
from cairn.ops.experiments.report import build_report, observations
from cairn.types import Principal

if TYPE_CHECKING:
    from cairn.index.db import Database

_COLUMNS = (
    "e.id, e.name, e.description, e.salt, e.scope, e.status, e.rollout::float8, e.groups, e.created_by,"
    " e.created_at, e.started_at, e.stopped_at, e.updated_at,"
    " (SELECT json_agg(json_build_array(v.name, v.weight, v.template, v.profile, v.tier) ORDER BY v.position)"
    " FROM experiment_variants v WHERE v.experiment_id = e.id)"
)


def _experiment(row: Sequence[Any], changes: Sequence[dict[str, Any]] = ()) -> Experiment:
    variants = tuple(
        Variant(name=v[0], weight=float(v[1]), template=v[2], profile=v[3], tier=v[4]) for v in row[13] or ()
    )
    return Experiment(
        id=int(row[0]),
        name=row[1],
        description=row[2],
        salt=row[3],
        scope=row[4],
        status=row[5],
        rollout=float(row[6]),
        groups=tuple(row[7]),
        created_by=row[8],
        created_at=row[9],
        started_at=row[10],
        stopped_at=row[11],
        updated_at=row[12],
        variants=variants,
        changes=tuple(changes),
    )


def scopes_of(kbs: Sequence[str]) -> list[str]:
    """The scopes whose experiments may apply to a request, most specific first.

    A request on exactly one knowledge base is matched by that base's experiment, else by a ``*``
    one; a request on several (or on ``*``) only by a ``*`` experiment.
    """
    if len(kbs) == 1 and kbs[0] != ALL_SCOPE:
        return [kbs[0], ALL_SCOPE]
    return [ALL_SCOPE]


class ExperimentStore:
    """``tiers``: the generator tiers a variant may name (None: not checked); ``min_samples`` and
    ``alpha``: the report's defaults."""

    def __init__(
        self,
        db: Database,
        *,
        tiers: Collection[str] | None = None,
        min_samples: int = 30,
        alpha: float = 0.05,
    ) -> None:
        self.db = db
        self.tiers = tiers
        self.min_samples = min_samples
        self.alpha = alpha

    # -- management (administrators) -------------------------------------------------------------
    def create(self, principal: Principal, experiment: Experiment) -> Experiment:
        """Store a draft; template names are pinned to their current version."""
        require_admin(principal, "managing experiments")
        if experiment.status != "draft":
            raise InputError("an experiment is created as a draft; start it with `cairn experiments start`")
        known = versions()
        experiment.check_against(templates=known, tiers=self.tiers)
        experiment = experiment.with_templates(known)
        with self.db.connection(principal) as conn, conn.transaction():
            try:
                row = conn.execute(
                    "INSERT INTO experiments (name, description, salt, scope, rollout, groups, created_by)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (
                        experiment.name,
                        experiment.description,
                        experiment.salt,
                        experiment.scope,
                        experiment.rollout,
                        list(experiment.groups),
                        principal.name,
                    ),
                ).fetchone()
            except psycopg.errors.UniqueViolation:
                raise InputError(
                    f"experiment {experiment.name!r} already exists",
                    hint="names are never reused: the audit trail refers to variants by name",
                ) from None
            except psycopg.errors.InsufficientPrivilege:
                raise Forbidden("managing experiments is for administrators") from None
            assert row is not None
            experiment_id = int(row[0])
            for position, v in enumerate(experiment.variants):
                conn.execute(
                    "INSERT INTO experiment_variants (experiment_id, name, position, weight, template, profile, tier)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (experiment_id, v.name, position, v.weight, v.template, v.profile, v.tier),
                )
            _log(conn, experiment_id, principal, "create", {"experiment": experiment.to_json()})
        return self.get(principal, experiment.name)

    def get(self, principal: Principal, name: str) -> Experiment:
        require_admin(principal, "managing experiments")
        check_name(name)
        with self.db.connection(principal) as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM experiments e WHERE e.name = %s", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no experiment {name!r}", hint="see `cairn experiments list`")
            changes = conn.execute(
                "SELECT at, principal, action, detail FROM experiment_changes WHERE experiment_id = %s ORDER BY id",
                (row[0],),
            ).fetchall()
        return _experiment(
            row, [{"at": c[0].isoformat(), "by": c[1], "action": c[2], **_brief(c[2], c[3])} for c in changes]
        )

    def list(self, principal: Principal, *, status: str | None = None) -> list[Experiment]:
        require_admin(principal, "managing experiments")
        where, params = ("WHERE e.status = %s", (status,)) if status else ("", ())
        with self.db.connection(principal) as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM experiments e {where} ORDER BY e.id", params).fetchall()
        return [_experiment(r) for r in rows]

    def transition(self, principal: Principal, name: str, command: str) -> Experiment:
        """``start`` (draft or paused), ``pause`` (running) or ``stop`` (any but stopped; final)."""
        require_admin(principal, "managing experiments")
        with self.db.connection(principal) as conn, conn.transaction():
            current = self._locked(conn, name)
            target = current.transition(command)
            if target == "running" and current.rollout == 0:
                raise InputError(
                    f"experiment {name!r} has a rollout of 0%: nobody would be in it",
                    hint=f"cairn experiments rollout {name} PERCENT",
                )
            try:
                conn.execute(
                    "UPDATE experiments SET status = %s, updated_at = now(),"
                    " started_at = CASE WHEN %s = 'running' THEN coalesce(started_at, now()) ELSE started_at END,"
                    " stopped_at = CASE WHEN %s = 'stopped' THEN now() ELSE stopped_at END"
                    " WHERE id = %s",
                    (target, target, target, current.id),
                )
            except psycopg.errors.UniqueViolation:
                raise InputError(
                    f"another experiment already runs on scope {current.scope!r}",
                    hint="pause or stop it first: at most one experiment runs per scope",
                ) from None
            _log(conn, current.id, principal, command, {"from": current.status, "to": target})
        return self.get(principal, name)

    def set_rollout(
        self, principal: Principal, name: str, percent: float, *, groups: Sequence[str] | None = None
    ) -> Experiment:
        """Change who is in: the percentage and, when given, the pilot groups (empty: everyone).

        Growing the rollout keeps everyone who is in, with their variant; shrinking it takes the
        users of the highest buckets out (they get the default again).
        """
        require_admin(principal, "managing experiments")
        percent = check_rollout(percent)
        with self.db.connection(principal) as conn, conn.transaction():
            current = self._locked(conn, name)
            if current.status == "stopped":
                raise InputError(f"experiment {name!r} is stopped", hint="create a new experiment instead")
            new_groups = current.groups if groups is None else tuple(sorted({g.strip() for g in groups if g.strip()}))
            conn.execute(
                "UPDATE experiments SET rollout = %s, groups = %s, updated_at = now() WHERE id = %s",
                (percent, list(new_groups), current.id),
            )
            detail: dict[str, Any] = {"from": current.rollout, "to": percent}
            if new_groups != current.groups:
                detail |= {"groups_from": list(current.groups), "groups_to": list(new_groups)}
            _log(conn, current.id, principal, "rollout", detail)
        return self.get(principal, name)

    def delete(self, principal: Principal, name: str) -> None:
        """Drafts only: an experiment that ran is referred to by the audit trail and stays."""
        require_admin(principal, "managing experiments")
        with self.db.connection(principal) as conn, conn.transaction():
            current = self._locked(conn, name)
            if current.status != "draft":
                raise InputError(
                    f"experiment {name!r} is {current.status}: only drafts can be deleted",
                    hint=f"cairn experiments stop {name}",
                )
            conn.execute("DELETE FROM experiments WHERE id = %s", (current.id,))

    def report(
        self, principal: Principal, name: str, *, min_samples: int | None = None, alpha: float | None = None
    ) -> dict[str, Any]:
        """The variants compared on the audit trail and feedback (see :mod:`cairn.ops.experiments.report`)."""
        experiment = self.get(principal, name)
        return build_report(
            experiment,
            observations(self.db, principal, experiment),
            min_samples=self.min_samples if min_samples is None else min_samples,
            alpha=self.alpha if alpha is None else alpha,
        )

    def _locked(self, conn: psycopg.Connection, name: str) -> Experiment:
        check_name(name)
        row = conn.execute(f"SELECT {_COLUMNS} FROM experiments e WHERE e.name = %s FOR UPDATE", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no experiment {name!r}", hint="see `cairn experiments list`")
        return _experiment(row)

    # -- the answer path (any identified caller) ---------------------------------------------------
    def running_for(self, principal: Principal, kbs: Sequence[str]) -> Experiment | None:
        """The running experiment that governs a request on ``kbs`` (the most specific scope wins)."""
        scopes = scopes_of(kbs)
        with self.db.connection(principal) as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM experiments e WHERE e.status = 'running' AND e.scope = ANY(%s)"
                " ORDER BY e.scope = '*' LIMIT 1",
                (scopes,),
            ).fetchone()
        return None if row is None else _experiment(row)

    def assign(self, principal: Principal, kbs: Sequence[str], *, pinned: Collection[str] = ()) -> Assignment | None:
        """The caller's variant for this request, or None (the default, not counted).

        ``pinned``: what the request chose itself (``profile``, ``tier``). When the governing
        experiment varies one of those, the request stays out of it for every variant alike, so that
        no variant's sample is filtered differently from another's.
        """
        if principal.user_id is None or principal.is_system:
            return None
        experiment = self.running_for(principal, kbs)
        if experiment is None or experiment.dimensions & set(pinned):
            return None
        return assign(experiment, principal)


def _log(conn: psycopg.Connection, experiment_id: int | None, principal: Principal, action: str, detail: Any) -> None:
    conn.execute(
        "INSERT INTO experiment_changes (experiment_id, principal, action, detail) VALUES (%s, %s, %s, %s::jsonb)",
        (experiment_id, principal.name, action, json.dumps(detail)),
    )


def _brief(action: str, detail: dict[str, Any]) -> dict[str, Any]:
    """A change as ``show`` lists it: the creation's full definition is the experiment itself."""
    return {} if action == "create" else dict(detail)


__all__ = ["ExperimentStore", "scopes_of"]
