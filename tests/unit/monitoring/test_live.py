"""Drift (PSI), the card's baseline, and the verdicts of analysis rules: the pure parts."""

from __future__ import annotations

import math

import pytest

from orchestrator.monitoring.live import Baseline, LiveRow, live_metrics, psi
from orchestrator.monitoring.rules import check_rules


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift() -> None:
    assert psi([10, 20, 70], [1, 2, 7]) == pytest.approx(0.0)
    small, large = psi([50, 50], [55, 45]), psi([50, 50], [90, 10])
    assert small is not None and large is not None and 0 < small < 0.1 < 0.2 < large
    # by hand: (0.9-0.5)*ln(0.9/0.5) + (0.1-0.5)*ln(0.1/0.5)
    assert large == pytest.approx(0.4 * math.log(1.8) + (-0.4) * math.log(0.2))
    assert psi([0, 0], [1, 2]) is None and psi([1, 2], [0, 0]) is None
    assert psi([1, 0], [0, 1]) is not None  # an empty bin counts as a tiny share: finite


def test_a_card_without_holdout_predictions_uses_the_confusion_matrix_columns() -> None:
    card = {"classes": [0, 1], "evaluation": {"report": {"confusion_matrix": {"matrix": [[8, 2], [1, 9]]}}}}
    base = Baseline.from_card(card)
    assert base.class_counts == [9.0, 11.0] and base.top_proba_counts is None


def _card() -> dict:
    return {"classes": [0, 1], "evaluation": {"holdout_predictions": {
        "n": 100, "class_counts": {"0": 50, "1": 50},
        "top_proba_edges": [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0000001],
        "top_proba_counts": [0, 0, 0, 0, 0, 0, 0, 10, 90]}}}


def test_live_metrics_count_errors_and_sampled_answers_and_flag_drift() -> None:
    rows = [LiveRow(0.0, 200, 0.002, 0, [0.999, 0.001], 0) for _ in range(18)]
    rows += [LiveRow(0.0, 503, 0.01, None, None, None) for _ in range(2)]
    live = live_metrics(rows, _card(), drift_threshold=0.2, skipped_ok=80)
    assert live["requests"] == 100 and live["errors"] == 2 and live["metrics"]["error_rate"] == pytest.approx(0.02)
    assert live["class_distribution"] == {"0": 1.0, "1": 0.0}
    assert "class_drift_psi" in live["drift"] and live["metrics"]["class_drift_psi"] > 0.2
    assert live["feedback"] == 18 and live["metrics"]["live_accuracy"] == 1.0


def test_a_rule_without_enough_samples_is_inconclusive_not_passed() -> None:
    live = {"requests": 10, "feedback": 3, "metrics": {"error_rate": 0.0, "live_macro_f1": 0.1}}
    checks = {c.metric: c for c in check_rules(["error_rate<0.01", "live_macro_f1>=0.9"], live, min_samples=5)}
    assert checks["error_rate"].verdict == "passed"
    assert checks["live_macro_f1"].verdict == "inconclusive" and checks["live_macro_f1"].samples == 3
    checks = {c.metric: c for c in check_rules(["live_macro_f1>=0.9"], {**live, "feedback": 5}, min_samples=5)}
    assert checks["live_macro_f1"].verdict == "failed" and checks["live_macro_f1"].value == 0.1
    missing = check_rules(["p95_ms<50"], {"requests": 100, "metrics": {}}, min_samples=5)[0]
    assert missing.verdict == "inconclusive" and missing.value is None


def _group(cloud: str, release: str, zeros: int, ones: int) -> dict:
    rows = [LiveRow(0.0, 200, 0.002, 0, [0.97, 0.03], None) for _ in range(zeros)]
    rows += [LiveRow(0.0, 200, 0.002, 1, [0.03, 0.97], None) for _ in range(ones)]
    return {"cloud": cloud, "release": release, **live_metrics(rows, _card(), drift_threshold=0.2)}


def test_peer_drift_compares_a_release_with_the_other_clouds_previous_one_in_the_same_window() -> None:
    from orchestrator.monitoring.live import peer_drift

    # The window's traffic leans to class 1 (so both releases drift from the holdout alike);
    # the new release on aws answers class 0 where the old one on gcp and azure does not.
    groups = [_group("aws", "r2", 60, 40), _group("gcp", "r1", 20, 80), _group("azure", "r1", 25, 75)]
    peer_drift(groups, drift_threshold=0.2)
    aws, gcp, azure = groups
    assert {(p["cloud"], p["release"]) for p in aws["peers"]} == {("gcp", "r1"), ("azure", "r1")}
    assert aws["peer_requests"] == 200
    assert aws["metrics"]["peer_class_drift_psi"] == pytest.approx(psi([45, 155], [60, 40]))
    assert aws["metrics"]["peer_class_drift_psi"] > 0.2 and "peer_class_drift_psi" in aws["drift"]
    # same release on the same probabilities: no shift in confidence against the peers
    assert aws["metrics"]["peer_proba_drift_psi"] == pytest.approx(0.0)
    # azure serves the same release as gcp: not a peer of it
    assert [p["cloud"] for p in gcp["peers"]] == [p["cloud"] for p in azure["peers"]] == ["aws"]
    # every cloud on one release: nothing to compare with
    alone = [_group("aws", "r2", 50, 50), _group("gcp", "r2", 50, 50)]
    peer_drift(alone)
    assert alone[0]["peers"] == [] and alone[0]["metrics"]["peer_class_drift_psi"] is None


def test_a_peer_rule_fails_on_a_shift_and_does_not_apply_without_a_peer() -> None:
    from orchestrator.monitoring.live import peer_drift

    groups = [_group("aws", "r2", 60, 40), _group("gcp", "r1", 20, 80)]
    peer_drift(groups)
    (check,) = check_rules(["peer_class_drift_psi<0.2"], groups[0], min_samples=50)
    assert check.verdict == "failed" and check.samples == 100
    few = [_group("aws", "r2", 60, 40), _group("gcp", "r1", 5, 10)]
    peer_drift(few)
    assert check_rules(["peer_class_drift_psi<0.2"], few[0], min_samples=50)[0].verdict == "inconclusive"
    alone = [_group("aws", "r2", 60, 40)]
    peer_drift(alone)
    assert check_rules(["peer_class_drift_psi<0.2"], alone[0], min_samples=50)[0].verdict == "not_applicable"
