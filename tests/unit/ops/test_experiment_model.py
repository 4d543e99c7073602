"""Experiment definitions: variant specs, validation and the status machine."""

from __future__ import annotations

import pytest

from cairn.errors import InputError
from cairn.ops.experiments import Experiment, Variant, parse_variant

TWO = (Variant("control"), Variant("fast", profile="fast"))


def test_variant_specs() -> None:
    assert parse_variant("control") == Variant("control")
    assert parse_variant("b:template=concise,profile=quality,tier=premium,weight=3") == Variant(
        "b", weight=3.0, template="concise", profile="quality", tier="premium"
    )
    assert parse_variant(" b : profile = fast ").overrides == {"profile": "fast"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("b:colour=red", "cannot read"),
        ("b:profile", "cannot read"),
        ("b:profile=", "cannot read"),
        ("b:profile=slow", "unknown retrieval profile"),
        ("b:weight=0", "positive"),
        ("b:weight=x", "not a number"),
        ("b:weight=inf", "positive"),
        ("b:profile=fast,profile=quality", "twice"),
        ("a:b:c", "cannot read"),
        ("has space", "invalid variant name"),
        (":profile=fast", "invalid variant name"),
        ("b:tier=Bad Tier", "invalid tier"),
    ],
)
def test_bad_variant_specs_are_refused_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_variant(spec)


def test_an_experiment_needs_a_control_and_distinct_variants() -> None:
    with pytest.raises(InputError, match="2 to 10 variants"):
        Experiment(name="x", variants=(Variant("control"),))
    with pytest.raises(InputError, match="unique"):
        Experiment(name="x", variants=(Variant("a"), Variant("a", profile="fast")))
    with pytest.raises(InputError, match="invalid experiment name"):
        Experiment(name="no:colons", variants=TWO)
    with pytest.raises(InputError, match="scope"):
        Experiment(name="x", variants=TWO, scope="two words")
    with pytest.raises(InputError, match="between 0 and 100"):
        Experiment(name="x", variants=TWO, rollout=101)
    experiment = Experiment(name="x", variants=TWO, groups=(" pilot ", "hr", "pilot", ""), rollout=12.345)
    assert experiment.control.name == "control" and experiment.salt == "x"
    assert experiment.groups == ("hr", "pilot") and experiment.rollout == 12.35
    assert experiment.dimensions == {"profile"}
    assert experiment.labels() == {"x:control": "control", "x:fast": "fast"}


def test_status_machine() -> None:
    draft = Experiment(name="x", variants=TWO)
    assert draft.transition("start") == "running"
    assert draft.transition("stop") == "stopped"
    with pytest.raises(InputError, match="cannot pause experiment 'x': it is draft"):
        draft.transition("pause")
    running = Experiment(name="x", variants=TWO, status="running")
    assert running.transition("pause") == "paused"
    with pytest.raises(InputError, match="it is running"):
        running.transition("start")
    paused = Experiment(name="x", variants=TWO, status="paused")
    assert paused.transition("start") == "running"
    stopped = Experiment(name="x", variants=TWO, status="stopped")
    for command in ("start", "pause", "stop"):
        with pytest.raises(InputError):
            stopped.transition(command)


def test_overrides_are_checked_against_what_is_installed() -> None:
    experiment = Experiment(name="x", variants=(Variant("control"), Variant("b", template="terse", tier="premium")))
    with pytest.raises(InputError, match="unknown prompt template 'terse'"):
        experiment.check_against(templates={"grounded", "concise"}, tiers=None)
    with pytest.raises(InputError, match="no generator tier 'premium'"):
        experiment.check_against(templates={"terse"}, tiers={"local"})
    experiment.check_against(templates={"terse"}, tiers={"local", "premium"})
    pinned = experiment.with_templates({"terse": "terse-v2"})
    assert pinned.variant("b").template == "terse-v2" and pinned.variant("control").template is None
