"""The experiment report's figures on hand-made observations (the database path is in tests/integration)."""

from __future__ import annotations

import pytest

from cairn.ops.experiments import Experiment, Variant
from cairn.ops.experiments.report import Observation, build_report

scipy_stats = pytest.importorskip("scipy.stats")

EXPERIMENT = Experiment(
    name="tone",
    variants=(Variant("control"), Variant("concise", template="concise-v1")),
    status="running",
    rollout=50.0,
)


def _observations(variant: str, n: int, *, feedback: int, up: int, down: int, refused: int, failed: int, judged: int,
                  latency: float, users: int) -> list[Observation]:  # fmt: skip
    out = []
    for i in range(n):
        vote = 1 if i < up else -1 if i < up + down else None
        out.append(
            Observation(
                variant=variant,
                user_id=i % users,
                refused=i >= n - refused,
                latency_ms=latency + (i % 10) * 10.0,
                feedback=i < feedback,
                vote=vote,
                grounded=None if i >= judged else i >= failed,
                supported_ratio=None if i >= judged else (0.5 if i < failed else 1.0),
            )
        )
    return out


def _report(**kwargs: object) -> dict[str, object]:
    control = _observations(
        "control", 200, feedback=40, up=20, down=10, refused=20, failed=10, judged=150, latency=900.0, users=100
    )
    concise = _observations(
        "concise", 200, feedback=70, up=45, down=5, refused=45, failed=30, judged=150, latency=700.0, users=100
    )
    return build_report(EXPERIMENT, control + concise, **kwargs)  # type: ignore[arg-type]


def test_per_variant_figures() -> None:
    report = _report()
    control, concise = report["variants"]  # type: ignore[misc]
    assert report["answers"] == 400 and report["control"] == "control"
    assert (control["n"], control["users"], concise["users"]) == (200, 100, 100)
    assert control["feedback_rate"]["rate"] == 0.2 and concise["feedback_rate"]["rate"] == 0.35
    assert (concise["upvote_rate"]["successes"], concise["upvote_rate"]["n"]) == (45, 50)
    assert (control["refusal_rate"]["successes"], concise["refusal_rate"]["successes"]) == (20, 45)
    assert (concise["grounding_failure_rate"]["successes"], concise["grounding_failure_rate"]["n"]) == (30, 150)
    assert concise["supported_ratio"] == {"n": 150, "mean": round((30 * 0.5 + 120) / 150, 4)}
    assert control["latency_ms"]["p50"] == 945.0 and concise["latency_ms"]["p50"] == 745.0
    low, high = control["feedback_rate"]["ci"]
    assert low < 0.2 < high
    assert "vs_control" not in control["feedback_rate"]


def test_tests_against_the_control_match_scipy() -> None:
    concise = _report()["variants"][1]  # type: ignore[index]
    versus = concise["refusal_rate"]["vs_control"]
    reference = scipy_stats.chi2_contingency([[45, 155], [20, 180]], correction=False).pvalue
    assert versus["p"] == pytest.approx(reference, rel=1e-3) and versus["verdict"] == "significant"
    assert versus["difference"] == round(45 / 200 - 20 / 200, 4)
    latency = concise["latency_ms"]["vs_control"]
    control_ms = [900.0 + (i % 10) * 10.0 for i in range(200)]
    concise_ms = [700.0 + (i % 10) * 10.0 for i in range(200)]
    reference = scipy_stats.mannwhitneyu(concise_ms, control_ms, method="asymptotic").pvalue
    assert latency["p"] == pytest.approx(reference, rel=1e-3) and latency["p"] > 0
    assert latency["difference_p50"] == -200.0 and latency["verdict"] == "significant"


def test_below_the_minimum_sample_no_test_is_run() -> None:
    concise = _report(min_samples=60)["variants"][1]  # type: ignore[index]
    assert concise["upvote_rate"]["vs_control"] == {"note": "not enough data (n=50 vs 30, need 60)"}
    assert "p" in concise["refusal_rate"]["vs_control"], "n=200 on both sides is enough"


def test_bonferroni_over_the_comparisons() -> None:
    three = Experiment(
        name="tone",
        variants=(Variant("control"), Variant("concise", template="concise-v1"), Variant("fast", profile="fast")),
        status="running",
    )
    report = build_report(three, [], alpha=0.05)
    assert report["alpha_per_comparison"] == 0.025
    assert all(v["n"] == 0 and v["feedback_rate"]["rate"] is None for v in report["variants"])
    assert report["sample_ratio_p"] is None, "no users: nothing to check the split on"


def test_sample_ratio_mismatch_is_flagged() -> None:
    items = [Observation("control", i, False, 100.0, False, None, None, None) for i in range(600)]
    items += [Observation("concise", 1000 + i, False, 100.0, False, None, None, None) for i in range(400)]
    report = build_report(EXPERIMENT, items)
    assert report["sample_ratio_mismatch"] is True and report["sample_ratio_p"] < 0.001
    balanced = build_report(EXPERIMENT, items[:400] + items[600:])
    assert balanced["sample_ratio_mismatch"] is False
