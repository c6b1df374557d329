"""Drill measures and objectives, computed from synthetic client records and router events."""

from __future__ import annotations

import pytest

from orchestrator.drills.objectives import (
    Objectives,
    check_objectives,
    failback_time,
    first_return,
    measure,
    recovery_time,
)
from orchestrator.errors import ConfigError
from orchestrator.testing.traffic import RequestRecord

FAULT = 100.0
REPAIR = 105.0


def steady(start: float, end: float, cloud: str, *, rate: int = 100, latency: float = 0.002) -> list[RequestRecord]:
    n = int((end - start) * rate)
    return [RequestRecord(start + i / rate, latency, 200, cloud) for i in range(n)]


def outage_records() -> list[RequestRecord]:
    """aws serves, is killed at FAULT; gcp takes over after 0.3 s of errors; aws is back at 106."""
    recs = steady(97.0, FAULT, "aws")
    recs += [RequestRecord(FAULT + i / 100, 0.001, 0, None, "connect refused") for i in range(30)]
    recs += steady(FAULT + 0.3, 106.0, "gcp")
    recs += steady(106.0, 108.0, "aws")
    return recs


def test_recovery_time_ends_with_the_last_failed_request() -> None:
    rto = recovery_time(outage_records(), fault=FAULT, until=REPAIR, faulted="aws", slow_s=1.0)
    assert rto == pytest.approx(0.29 + 0.001, abs=1e-6)


def test_recovery_time_without_damage_is_the_first_answer_from_elsewhere() -> None:
    recs = steady(97.0, FAULT, "aws") + steady(FAULT, 106.0, "gcp", latency=0.004)
    assert recovery_time(recs, fault=FAULT, until=REPAIR, faulted="aws", slow_s=1.0) == pytest.approx(0.004)


def test_slow_answers_and_answers_from_the_broken_cloud_are_not_recovered() -> None:
    recs = steady(97.0, FAULT + 0.5, "aws")  # still answered by aws after the fault mark
    recs += [RequestRecord(FAULT + 0.6, 2.5, 200, "gcp")]  # slower than the 1 s threshold
    recs += steady(FAULT + 0.7, 106.0, "gcp")
    rto = recovery_time(recs, fault=FAULT, until=REPAIR, faulted="aws", slow_s=1.0)
    assert rto == pytest.approx(0.6 + 2.5)


def test_no_recovery_before_the_repair_is_none() -> None:
    recs = steady(97.0, FAULT, "aws") + [RequestRecord(FAULT + i / 10, 0.0, 0, None, "x") for i in range(50)]
    assert recovery_time(recs, fault=FAULT, until=REPAIR, faulted="aws", slow_s=1.0) is None


def test_failback_is_the_first_answer_from_the_repaired_cloud() -> None:
    assert failback_time(outage_records(), [], fault=FAULT, repair=REPAIR, faulted="aws", start=97.0) == \
        pytest.approx(1.002)


def test_failback_of_a_cloud_without_traffic_comes_from_the_router_readmission() -> None:
    recs = steady(97.0, 108.0, "gcp")
    events = [{"ts": 103.0, "kind": "health_up", "target": "aws"},  # before the repair: ignored
              {"ts": 107.5, "kind": "readmission", "target": "aws"},
              {"ts": 106.0, "kind": "health_up", "target": "azure"}]
    assert failback_time(recs, events, fault=FAULT, repair=REPAIR, faulted="aws", start=97.0) == pytest.approx(2.5)
    assert failback_time(recs, [], fault=FAULT, repair=REPAIR, faulted="aws", start=97.0) is None


def test_measure_counts_errors_by_kind_and_answers_by_cloud() -> None:
    events = [{"ts": FAULT + 0.05, "kind": "ejection", "target": "aws"}]
    m = measure(outage_records(), events, start=97.0, fault=FAULT, repair=REPAIR, end=108.0, faulted="aws",
                objectives=Objectives())
    assert m.client_errors == 30 and m.errors_by_kind == {"connect refused": 30}
    assert m.served_by["aws"] == 500 and m.served_by["gcp"] == 570
    assert m.detection_seconds == pytest.approx(0.05)
    assert m.share_after_fault == {"gcp": 1.0} and m.traffic_moved is True
    assert m.latency_ms["p50"] == pytest.approx(2.0)


def test_self_healing_counts_the_restarted_cloud_as_recovered() -> None:
    recs = steady(97.0, FAULT, "aws") + steady(FAULT, FAULT + 1, "gcp") + steady(FAULT + 1, 104, "aws")
    m = measure(recs, [], start=97.0, fault=FAULT, repair=FAULT, end=104.0, faulted="aws",
                objectives=Objectives(), self_healing=True)
    assert m.rto_seconds == pytest.approx(0.002)
    assert m.failback_seconds == pytest.approx(1.002)


def test_checks_name_every_missed_objective() -> None:
    m = measure(outage_records(), [], start=97.0, fault=FAULT, repair=REPAIR, end=108.0, faulted="aws",
                objectives=Objectives())
    checks = check_objectives(m, Objectives(max_rto_s=0.001, max_errors=0, max_failback_s=30))
    by_name = {c.objective: c for c in checks}
    assert not by_name["rto"].passed and "0.291 s" in by_name["rto"].message
    assert not by_name["client_errors"].passed and "30 client errors" in by_name["client_errors"].message
    assert by_name["failback"].passed
    relaxed = check_objectives(m, Objectives(max_rto_s=1, max_errors=30, max_failback_s=2))
    assert all(c.passed for c in relaxed)


def test_never_recovering_misses_rto() -> None:
    m = measure(steady(97.0, FAULT, "aws"), [], start=97.0, fault=FAULT, repair=REPAIR, end=108.0, faulted="aws",
                objectives=Objectives())
    (check,) = check_objectives(m, Objectives(max_rto_s=10))
    assert check.passed is False and "never recovered" in check.message


def test_traffic_move_expectations() -> None:
    recs = steady(97.0, FAULT, "aws") + steady(FAULT, 110.0, "aws", latency=0.08)  # stays on the slow cloud
    m = measure(recs, [], start=97.0, fault=FAULT, repair=108.0, end=110.0, faulted="aws", objectives=Objectives())
    assert m.traffic_moved is False
    assert check_objectives(m, Objectives(expect_traffic_moves=False))[0].passed
    assert not check_objectives(m, Objectives(expect_traffic_moves=True))[0].passed


def test_overrides_skip_flags_not_given_and_validate() -> None:
    base = Objectives(max_rto_s=2, max_errors=0, max_failback_s=15)
    assert base.override(max_rto_s=None, max_errors=3) == Objectives(max_rto_s=2, max_errors=3, max_failback_s=15)
    with pytest.raises(ConfigError, match="rto"):
        base.override(max_rto_s=0)
    with pytest.raises(ConfigError, match="negative"):
        base.override(max_errors=-1)


def test_answers_between_the_fault_mark_and_the_kill_are_not_a_failback() -> None:
    recs = steady(97.0, FAULT + 0.02, "aws") + steady(FAULT + 0.02, FAULT + 2, "gcp") + steady(FAULT + 2, 104, "aws")
    assert first_return(recs, "aws", fault=FAULT, repair=FAULT) == pytest.approx(FAULT + 2 + 0.002)
    assert first_return(steady(97.0, 104.0, "aws"), "aws", fault=FAULT, repair=FAULT) is None  # never left


def test_errors_before_the_fault_are_called_out() -> None:
    recs = [RequestRecord(98.0, 0.6, 502, None, "HTTP 502")] + outage_records()
    m = measure(recs, [], start=97.0, fault=FAULT, repair=REPAIR, end=108.0, faulted="aws", objectives=Objectives())
    assert m.errors_before_fault == 1 and m.client_errors == 31
    (check,) = check_objectives(m, Objectives(max_errors=0))
    assert "1 of them before the fault" in check.message


def test_error_samples_keep_the_first_answer_of_each_kind() -> None:
    recs = steady(97.0, FAULT, "aws")
    recs += [RequestRecord(FAULT + i / 100, 0.002, 403, "gcp", "HTTP 403", None,
                           f"server=proxy-{i} body='forbidden'") for i in range(3)]
    recs += [RequestRecord(FAULT + 1, 0.0, 0, None, "connect refused")]
    m = measure(recs, [], start=97.0, fault=FAULT, repair=None, end=FAULT + 2, faulted="gcp",
                objectives=Objectives(max_errors=0), recovery=False)
    assert m.errors_by_kind == {"HTTP 403": 3, "connect refused": 1}
    assert m.error_samples["HTTP 403"] == {"sent": FAULT, "cloud": "gcp", "detail": "server=proxy-0 body='forbidden'"}
    assert m.error_samples["connect refused"]["detail"] is None
    assert not check_objectives(m, Objectives(max_errors=0))[0].passed


def test_settled_needs_recent_good_answers_and_a_client_that_is_still_sending() -> None:
    from orchestrator.drills.objectives import settled
    from orchestrator.testing.traffic import RequestRecord

    now = 100.0
    good = [RequestRecord(sent=now - 0.9 + i * 0.1, latency=0.005, status=200, cloud="gcp") for i in range(6)]
    assert settled(good, now=now, window_s=1.0, slow_s=1.0)
    stalled = [RequestRecord(sent=now - 0.8, latency=1.4, status=200, cloud="gcp")]
    assert not settled(good + stalled, now=now, window_s=1.0, slow_s=1.0)  # a slow answer in the window
    failed = [RequestRecord(sent=now - 0.5, latency=0.01, status=502, cloud=None, error="HTTP 502")]
    assert not settled(good + failed, now=now, window_s=1.0, slow_s=1.0)
    # nothing sent lately (the client itself stalled): not settled, however good the old answers
    assert not settled(good, now=now + 2.0, window_s=1.0, slow_s=1.0)
    assert not settled(good[:3], now=now, window_s=1.0, slow_s=1.0)  # too few to tell


def test_behind_the_entry_one_stray_answer_is_not_a_failback() -> None:
    # aws's router is away; one request another router retried there comes back from aws at 105.5,
    # and aws's share returns only at 107 (its router back in the entry)
    recs = steady(97.0, FAULT, "aws") + steady(FAULT, 108.0, "gcp")
    recs.append(RequestRecord(105.5, 0.002, 200, "aws"))
    recs += steady(107.0, 108.0, "aws", rate=33)
    assert first_return(recs, "aws", fault=FAULT, repair=REPAIR) == pytest.approx(105.502)
    assert first_return(recs, "aws", fault=FAULT, repair=REPAIR, answers=20) == \
        pytest.approx(107.0 + 18 / 33 + 0.002)
    assert failback_time(recs, [], fault=FAULT, repair=REPAIR, faulted="aws", start=97.0, answers=20) == \
        pytest.approx(2.0 + 18 / 33 + 0.002)
    assert first_return(recs[:-33], "aws", fault=FAULT, repair=REPAIR, answers=20) is None
    with pytest.raises(ConfigError):
        Objectives(failback_answers=0)
    assert get_region_objectives().failback_answers == 20


def get_region_objectives() -> Objectives:
    from orchestrator.drills.scenarios import get_scenario

    return get_scenario("region-loss").objectives("kind", "locality")
