"""Routing policies register themselves: config, balancer and exporters all read the registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.config import RouterConfig, RouterTargetConfig, parse_config
from orchestrator.errors import ConfigError
from orchestrator.router.accounting import CostModel
from orchestrator.router.balancer import Balancer, TargetState, policies
from orchestrator.router.balancer.policies import (
    EnvoyPlan,
    HAProxyPlan,
    NotExpressible,
    Policy,
    make_policy,
    policy_names,
    register_policy,
)
from orchestrator.router.events import EventLog
from orchestrator.router.export import render


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Policies registered by a test are forgotten after it."""
    monkeypatch.setattr(policies, "_REGISTRY", dict(policies._REGISTRY))
    yield


def _define_last_resort_first() -> type[Policy]:
    @register_policy
    class LastResortFirst(Policy):
        """Lowest priority first: a policy no other file knows about."""

        name = "last-resort-first"
        summary = "reverse priority order"
        haproxy = NotExpressible("HAProxy only falls back to backup servers, never prefers them")
        envoy = EnvoyPlan(lb_policy="ROUND_ROBIN", levels="by_rank")

        @classmethod
        def static_rank(cls, target: RouterTargetConfig) -> tuple[float, ...]:
            return (-target.priority,)

        def order(self, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]:
            return tuple(reversed(healthy))

    return LastResortFirst


def _targets() -> list[RouterTargetConfig]:
    return [RouterTargetConfig(name=n, url=f"http://127.0.0.1:{9001 + i}", priority=i)
            for i, n in enumerate(("aws", "gcp", "azure"))]


def test_the_builtin_policies_are_registered_with_what_exporters_need() -> None:
    assert policy_names() == ("failover", "weighted", "latency", "cost", "locality")
    for name in policy_names():
        cls = policies.policy_class(name)
        assert isinstance(cls.haproxy, HAProxyPlan) and isinstance(cls.envoy, EnvoyPlan)
    assert policies.policy_class("cost").needs_cost and policies.policy_class("cost").needs_latency
    assert policies.policy_class("latency").needs_latency and not policies.policy_class("failover").needs_latency


def test_unknown_policy_in_config_names_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"router": {"policy": "random"}})
    text = str(err.value)
    assert "router.policy" in text and "unknown router policy 'random'" in text
    assert "failover, weighted, latency, cost" in text
    with pytest.raises(ConfigError, match="use one of: failover, weighted, latency, cost"):
        make_policy("random", slo_p95_s=0.05)


def test_a_policy_registered_here_works_in_config_balancer_and_envoy_export(registry: None) -> None:
    _define_last_resort_first()
    assert "last-resort-first" in policy_names()
    cfg = parse_config({"router": {"policy": "last-resort-first",
                                   "targets": [t.model_dump(mode="json") for t in _targets()]}})
    assert cfg.router.policy == "last-resort-first"
    states = [TargetState(cfg=t, index=i, cost=CostModel(None, None)) for i, t in enumerate(cfg.router.targets)]
    balancer = Balancer(states, cfg.router.policy, EventLog(), slo_p95_s=0.05)
    assert [t.name for t in balancer.candidates()] == ["azure", "gcp", "aws"]
    balancer.sink("active").set_status("azure", False)
    assert [t.name for t in balancer.candidates()] == ["gcp", "aws"]
    envoy = render(cfg.router, "envoy")
    # by_rank in the policy's static order: azure is the preferred level 0
    assert envoy.index("priority: 0") < envoy.index("hostname: azure") < envoy.index("priority: 1")


def test_an_exporter_refuses_a_policy_it_cannot_express_in_words(registry: None) -> None:
    _define_last_resort_first()
    cfg = RouterConfig(policy="last-resort-first", targets=_targets())
    with pytest.raises(ConfigError) as err:
        render(cfg, "haproxy")
    assert "'last-resort-first' routing policy cannot be expressed in haproxy" in err.value.message
    assert "never prefers them" in err.value.message
    assert err.value.hint is not None and "failover, weighted, latency, cost" in err.value.hint


def test_registration_needs_a_name_and_the_export_plans(registry: None) -> None:
    with pytest.raises(TypeError, match="`name`"):
        register_policy(type("Nameless", (Policy,), {}))
    with pytest.raises(TypeError, match="`envoy`"):
        register_policy(type("Half", (Policy,), {"name": "half", "summary": "s", "haproxy": NotExpressible("x")}))
    with pytest.raises(ValueError, match="already registered"):
        register_policy(type("Again", (Policy,), {"name": "cost", "summary": "s", "haproxy": NotExpressible("x"),
                                                  "envoy": NotExpressible("x")}))
