"""What an experiment is: variants that override parts of the answer path, and the rules they obey.

Values here are checked when they are made, so a store, a CLI or an API that builds them cannot
hold an experiment that would fail at assignment time.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cairn.errors import InputError

STATUSES = ("draft", "running", "paused", "stopped")
PROFILES = ("fast", "default", "quality")
OVERRIDES = ("template", "profile", "tier")
ALL_SCOPE = "*"
MIN_VARIANTS, MAX_VARIANTS = 2, 10

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VARIANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_TIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Which status each command moves an experiment to, from which statuses. ``stopped`` is final: a
# result that was read must not change under the reader, so a new experiment is made instead.
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "start": (("draft", "paused"), "running"),
    "pause": (("running",), "paused"),
    "stop": (("draft", "running", "paused"), "stopped"),
}


def check_name(name: str, what: str = "experiment") -> str:
    pattern = _NAME if what == "experiment" else _VARIANT
    if not isinstance(name, str) or not pattern.match(name):
        limit = 64 if what == "experiment" else 32
        raise InputError(
            f"invalid {what} name {name!r}",
            hint=f"letters, digits and '_.-', starting with a letter or digit, at most {limit} characters",
        )
    return name


def check_scope(scope: str) -> str:
    if scope != ALL_SCOPE and not _NAME.match(scope):
        raise InputError(f"invalid scope {scope!r}", hint="a knowledge base name, or '*' for every request")
    return scope


def check_rollout(percent: float) -> float:
    if not 0.0 <= percent <= 100.0:
        raise InputError(f"the rollout must be between 0 and 100 percent, not {percent}")
    return round(float(percent), 2)


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm. ``None`` overrides keep what the request would have had without the experiment."""

    name: str
    weight: float = 1.0
    template: str | None = None  # a prompt template version, e.g. "concise-v1"
    profile: str | None = None  # a retrieval profile: fast, default, quality
    tier: str | None = None  # a configured generator tier

    def __post_init__(self) -> None:
        check_name(self.name, "variant")
        if not (self.weight > 0 and self.weight < float("inf")):
            raise InputError(f"variant {self.name!r}: the weight must be a positive number, not {self.weight}")
        if self.profile is not None and self.profile not in PROFILES:
            raise InputError(
                f"variant {self.name!r}: unknown retrieval profile {self.profile!r}",
                hint=f"one of {', '.join(PROFILES)}",
            )
        if self.tier is not None and not _TIER.match(self.tier):
            raise InputError(f"variant {self.name!r}: invalid tier name {self.tier!r}")

    @property
    def overrides(self) -> dict[str, str]:
        return {k: v for k in OVERRIDES if (v := getattr(self, k)) is not None}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, **{k: getattr(self, k) for k in OVERRIDES}}


def parse_variant(spec: str) -> Variant:
    """``NAME`` or ``NAME:key=value,...`` with keys ``template``, ``profile``, ``tier`` and ``weight``.

    ``control`` is a variant with no overrides: what users get without the experiment.
    """
    name, _, rest = spec.strip().partition(":")
    values: dict[str, str] = {}
    for item in (p.strip() for p in rest.split(",")) if rest.strip() else ():
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value or key not in (*OVERRIDES, "weight"):
            raise InputError(
                f"cannot read {item!r} in the variant {spec!r}",
                hint="NAME:template=VERSION,profile=fast|default|quality,tier=NAME,weight=N",
            )
        if key in values:
            raise InputError(f"{key!r} is given twice in the variant {spec!r}")
        values[key] = value
    try:
        weight = float(values.pop("weight", "1"))
    except ValueError:
        raise InputError(f"the weight in the variant {spec!r} is not a number") from None
    return Variant(name=name.strip(), weight=weight, **values)


@dataclass(frozen=True, slots=True)
class Assignment:
    """The variant a request was given; ``label`` (``experiment:variant``) is what the audit trail records."""

    experiment: str
    variant: Variant
    control: bool

    @property
    def label(self) -> str:
        return f"{self.experiment}:{self.variant.name}"


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    variants: tuple[Variant, ...]
    salt: str = ""
    scope: str = ALL_SCOPE
    status: str = "draft"
    rollout: float = 0.0
    groups: tuple[str, ...] = ()
    description: str = ""
    id: int | None = None
    created_by: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    updated_at: datetime | None = None
    changes: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        check_name(self.name)
        check_scope(self.scope)
        if self.status not in STATUSES:
            raise InputError(f"unknown experiment status {self.status!r}", hint=f"one of {', '.join(STATUSES)}")
        object.__setattr__(self, "rollout", check_rollout(self.rollout))
        object.__setattr__(self, "salt", self.salt or self.name)
        if not 1 <= len(self.salt) <= 128:
            raise InputError("the salt must be 1 to 128 characters")
        if not MIN_VARIANTS <= len(self.variants) <= MAX_VARIANTS:
            raise InputError(
                f"an experiment needs {MIN_VARIANTS} to {MAX_VARIANTS} variants (the first is the control),"
                f" not {len(self.variants)}"
            )
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise InputError(f"variant names must be unique: {', '.join(names)}")
        object.__setattr__(self, "groups", tuple(sorted({g.strip() for g in self.groups if g.strip()})))

    @property
    def control(self) -> Variant:
        return self.variants[0]

    @property
    def dimensions(self) -> frozenset[str]:
        """What the variants change: a request that pins one of these itself stays out of the experiment."""
        return frozenset(k for v in self.variants for k in v.overrides)

    def label(self, variant: str) -> str:
        return f"{self.name}:{variant}"

    def labels(self) -> dict[str, str]:
        return {self.label(v.name): v.name for v in self.variants}

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise InputError(
            f"experiment {self.name!r} has no variant {name!r}", hint=", ".join(v.name for v in self.variants)
        )

    def transition(self, command: str) -> str:
        """The status ``command`` leads to; an error names the statuses it is allowed from."""
        sources, target = TRANSITIONS[command]
        if self.status not in sources:
            raise InputError(
                f"cannot {command} experiment {self.name!r}: it is {self.status}",
                hint=f"{command} applies to {' or '.join(sources)} experiments",
            )
        return target

    def with_templates(self, resolve: Mapping[str, str] | None) -> Experiment:
        """The same experiment with template names pinned to versions (``{name or version: version}``)."""
        if not resolve:
            return self
        variants = tuple(
            replace(v, template=resolve[v.template]) if v.template is not None else v for v in self.variants
        )
        return replace(self, variants=variants)

    def check_against(self, *, templates: Collection[str], tiers: Collection[str] | None) -> None:
        """Refuse overrides the running system could not apply: unknown templates or tiers."""
        for v in self.variants:
            if v.template is not None and v.template not in templates:
                raise InputError(
                    f"variant {v.name!r}: unknown prompt template {v.template!r}",
                    hint=f"known: {', '.join(sorted(templates))}",
                )
            if v.tier is not None and tiers is not None and v.tier not in tiers:
                raise InputError(
                    f"variant {v.name!r}: no generator tier {v.tier!r} is configured",
                    hint=f"configured: {', '.join(sorted(tiers)) or 'none'}",
                )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "scope": self.scope,
            "rollout": self.rollout,
            "groups": list(self.groups),
            "salt": self.salt,
            "control": self.control.name,
            "variants": [v.to_json() for v in self.variants],
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "stopped_at": _iso(self.stopped_at),
            "updated_at": _iso(self.updated_at),
            **({"changes": list(self.changes)} if self.changes else {}),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
