from __future__ import annotations

import asyncio

import pytest

from orchestrator.config import RouterOutlierConfig, RouterTargetConfig
from orchestrator.errors import ConfigError
from orchestrator.router.accounting import CostModel
from orchestrator.router.balancer import Balancer, TargetState
from orchestrator.router.balancer.policies import make_policy
from orchestrator.router.events import EventLog
from orchestrator.router.health.passive import OutlierDetector


def states(*specs: tuple[str, int], **kw) -> list[TargetState]:
    out = []
    for i, (name, prio) in enumerate(specs):
        cfg = RouterTargetConfig(name=name, url=f"http://127.0.0.1:{9000 + i}", priority=prio, **kw)
        out.append(TargetState(cfg=cfg, index=i, cost=CostModel(None, None)))
    return out


def kinds(log: EventLog) -> list[tuple[str, str | None]]:
    return [(e.kind, e.target) for e in log.since(0)]


def test_health_needs_every_source_and_only_transitions_make_events():
    log = EventLog()
    bal = Balancer(states(("aws", 0), ("gcp", 1), ("azure", 2)), "failover", log, slo_p95_s=0.05)
    active, passive = bal.sink("active"), bal.sink("passive")
    assert [t.name for t in bal.candidates()] == ["aws", "gcp", "azure"]
    passive.set_status("aws", False)
    active.set_status("aws", False)    # already unhealthy: no new event
    passive.set_status("aws", False)   # repeated report: nothing
    assert [t.name for t in bal.candidates()] == ["gcp", "azure"]
    passive.set_status("aws", True)    # active still says down
    assert bal.candidates()[0].name == "gcp"
    active.set_status("aws", True)
    assert bal.candidates()[0].name == "aws"
    assert kinds(log) == [("failover", "gcp"), ("failback", "aws")]
    assert log.since(0)[0].detail == {"from": "aws", "to": "gcp"}


def test_every_target_down_is_panic_in_priority_order_and_logged():
    log = EventLog()
    bal = Balancer(states(("aws", 0), ("gcp", 1)), "failover", log, slo_p95_s=0.05)
    sink = bal.sink("active")
    sink.set_status("aws", False)
    sink.set_status("gcp", False)
    assert bal.all_down
    assert [t.name for t in bal.candidates()] == ["aws", "gcp"]  # panic: try them all anyway
    sink.set_status("gcp", True)
    assert not bal.all_down
    assert kinds(log) == [("failover", "gcp"), ("all_down", None), ("recovered", "gcp")]


def test_outlier_ejections_grow_are_capped_and_readmit():
    async def scenario() -> tuple[EventLog, Balancer]:
        log = EventLog()
        bal = Balancer(states(("aws", 0), ("gcp", 1), ("azure", 2)), "failover", log, slo_p95_s=0.05)
        det = OutlierDetector(RouterOutlierConfig(consecutive_local_failures=3, consecutive_5xx=2,
                                                  base_ejection_s=0.1, max_ejection_s=0.25,
                                                  max_ejection_percent=34), bal.sink("passive"), log)
        det.update(["aws", "gcp", "azure"])
        det.failure("aws", "connect")
        det.failure("aws", "reset")
        det.success("aws")                 # a success resets the run
        det.failure("aws", "timeout")
        det.failure("aws", "http_5xx")     # 5xx are counted apart from local-origin failures
        assert not log.since(0)
        det.failure("aws", "connect")
        det.failure("aws", "connect")
        assert det.state("aws").ejected_until and not bal.targets["aws"].healthy
        det.failure("gcp", "http_5xx")
        det.failure("gcp", "http_5xx")     # cap: 34 % of 3 targets = one ejection at a time
        assert bal.targets["gcp"].healthy
        await asyncio.sleep(0.15)           # first ejection: 0.1 s
        assert bal.targets["aws"].healthy
        for _ in range(3):
            det.failure("aws", "reset")
        await asyncio.sleep(0.22)           # second: 0.2 s
        assert bal.targets["aws"].healthy
        for _ in range(3):
            det.failure("aws", "reset")     # third: 0.3 s capped at 0.25 s
        await asyncio.sleep(0.3)
        det.stop()
        return log, bal

    log, _ = asyncio.run(scenario())
    ejections = [e for e in log.since(0) if e.kind == "ejection"]
    assert [e.detail["duration_s"] for e in ejections] == [0.1, 0.2, 0.25]
    assert all(e.target == "aws" for e in ejections)
    assert "local-origin" in ejections[0].detail["reason"]
    assert [e.kind for e in log.since(0) if e.kind == "readmission"] == ["readmission"] * 3


def test_policies_order_the_healthy_targets():
    ts = states(("aws", 0), ("gcp", 0), ("azure", 1))
    healthy = tuple(ts)
    failover = make_policy("failover", slo_p95_s=0.05)
    failover.refresh(healthy)
    firsts = {failover.order(healthy)[0].name for _ in range(200)}
    assert firsts == {"aws", "gcp"}  # equal priority shares; azure only on spill
    ts[0].stats.ewma_s, ts[1].stats.ewma_s, ts[2].stats.ewma_s = 0.010, 0.050, 0.001
    latency = make_policy("latency", slo_p95_s=0.05)
    counts = {"aws": 0, "gcp": 0, "azure": 0}
    for _ in range(3000):
        counts[latency.order(healthy)[0].name] += 1
    assert counts["gcp"] == 0 and counts["azure"] > counts["aws"]
    cost = make_policy("cost", slo_p95_s=0.05)
    ts[0].cost, ts[1].cost, ts[2].cost = CostModel(0.3, 0.09), CostModel(0.1, 0.12), CostModel(0.2, 0.08)
    cost.refresh(healthy)
    assert [t.name for t in cost.order(healthy)] == ["gcp", "azure", "aws"]
    ts[1].recent_p95_s = 0.2  # over the SLO: goes last
    cost.refresh(healthy)
    assert [t.name for t in cost.order(healthy)] == ["azure", "aws", "gcp"]
    with pytest.raises(ConfigError):
        make_policy("random", slo_p95_s=0.05)


def test_weighted_policy_draws_by_weight():
    ts = states(("aws", 0), ("gcp", 1))
    ts[0].cfg = ts[0].cfg.model_copy(update={"weight": 3})
    pol = make_policy("weighted", slo_p95_s=0.05)
    firsts = [pol.order(tuple(ts))[0].name for _ in range(4000)]
    assert 0.7 < firsts.count("aws") / 4000 < 0.8


@pytest.mark.parametrize("policy", ["weighted", "failover"])
def test_a_drained_target_is_never_drawn_and_comes_last_for_retries(policy: str):
    """Weight 0 (a waves deploy drained the cloud): never the first choice, never second for a
    hedge or a first retry; only the last resort when every other target failed."""
    ts = states(("aws", 0), ("gcp", 0), ("azure", 0))  # equal priorities: failover shares by weight too
    ts[0].cfg = ts[0].cfg.model_copy(update={"weight": 0})
    pol = make_policy(policy, slo_p95_s=0.05)
    pol.refresh(tuple(ts))
    orders = [[t.name for t in pol.order(tuple(ts))] for _ in range(500)]
    assert all(o[-1] == "aws" for o in orders)
    assert {o[0] for o in orders} == {"gcp", "azure"}


def test_5xx_alone_never_ejects_a_target_whose_active_checks_pass():
    async def scenario() -> tuple[EventLog, Balancer]:
        log = EventLog()
        bal = Balancer(states(("aws", 0), ("gcp", 1)), "failover", log, slo_p95_s=0.05)
        det = OutlierDetector(RouterOutlierConfig(consecutive_local_failures=3, consecutive_5xx=2,
                                                  base_ejection_s=0.1, max_ejection_percent=100),
                              bal.sink("passive"), log)
        det.update(["aws", "gcp"])
        failing = {"aws": False, "gcp": False}
        det.confirm_5xx = failing.__getitem__
        for _ in range(10):
            det.failure("aws", "http_5xx")  # a query of death: the checks still pass
        assert bal.targets["aws"].healthy and not log.since(0)
        failing["aws"] = True               # the checks agree now: the next 5xx ejects
        det.failure("aws", "http_5xx")
        assert not bal.targets["aws"].healthy
        for _ in range(3):
            det.failure("gcp", "timeout")   # local-origin failures need no agreement
        assert not bal.targets["gcp"].healthy
        det.stop()
        return log, bal

    log, _ = asyncio.run(scenario())
    reasons = [e.detail["reason"] for e in log.since(0) if e.kind == "ejection"]
    assert reasons == ["11 consecutive upstream 5xx, and its health checks fail",
                       "3 consecutive local-origin failures (last: timeout)"]
