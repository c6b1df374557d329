"""Routing policies: given the healthy targets (priority order), the order to try them.

* ``failover`` (default): priority order; the next cloud only gets traffic when the
  ones before it are unhealthy or a try failed. Equal priorities share by weight.
* ``weighted``: one target drawn by weight, then the rest by priority.
* ``latency``: power of two choices on an EWMA of each target's latency.
* ``cost``: the cheapest healthy target whose recent p95 is within the SLO; targets
  over the SLO come after, fastest first.

A policy is one class registered with ``@register_policy``. The class declares its
name, the data it ranks by (``needs_latency``, ``needs_cost``), and how each exporter
expresses it (``haproxy``, ``envoy``: a plan, or ``NotExpressible`` with the reason).
Everything else finds policies here: ``router.policy`` in mco.yaml is checked against
``policy_names()``, the balancer builds one with ``make_policy``, the exporters read
the plans, and the sampler refreshes the policies that rank by measured data. Adding
a policy is adding a class to this module (and its tests).

``order`` runs on every request, so it returns cached tuples where it can; ``refresh``
recomputes caches when health or recent latency changes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.config import RouterTargetConfig
    from orchestrator.router.balancer import TargetState

__all__ = [
    "EnvoyPlan",
    "HAProxyPlan",
    "NotExpressible",
    "Policy",
    "export_plan",
    "make_policy",
    "policy_class",
    "policy_names",
    "register_policy",
]


# -- how a proxy with a static config expresses a policy -----------------------------
@dataclass(frozen=True)
class HAProxyPlan:
    balance: str  # the backend's `balance` algorithm
    # which servers are `backup`: none; every one below the top priority; all but the first in static order
    backups: Literal["none", "lower_priorities", "all_but_first"] = "none"
    weights: bool = False  # write each server's `weight`
    approximation: str | None = None  # what HAProxy does instead of the router, said in the file's header


@dataclass(frozen=True)
class EnvoyPlan:
    lb_policy: str  # the cluster's `lb_policy`
    # endpoint priority levels: all at 0; one level per distinct priority; one level per target in static order
    levels: Literal["one", "by_priority", "by_rank"] = "one"
    approximation: str | None = None  # what Envoy does instead of the router, said in the file's header


@dataclass(frozen=True)
class NotExpressible:
    reason: str  # why the proxy cannot do it, in words for the user


# -- the policies --------------------------------------------------------------------
class Policy:
    """One routing policy. Subclasses set the class attributes and implement ``order``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    needs_latency: ClassVar[bool] = False  # ranks by measured latency: traffic moves off a slow cloud
    needs_cost: ClassVar[bool] = False     # ranks by price (targets' pricing_key)
    haproxy: ClassVar[HAProxyPlan | NotExpressible]
    envoy: ClassVar[EnvoyPlan | NotExpressible]

    def __init__(self, *, slo_p95_s: float, spill: str = "priority") -> None:
        self.slo_p95_s = slo_p95_s
        self.spill = spill  # the locality policy's order for the other clouds
        self._rng = random.Random()

    @classmethod
    def static_rank(cls, target: RouterTargetConfig) -> tuple[float, ...]:
        """Sort key of the order an exported (static) config writes the targets in."""
        return (target.priority,)

    def refresh(self, healthy: tuple[TargetState, ...]) -> None:
        """Recompute caches after a health change (and, for policies that rank by measured data, a sample)."""

    def order(self, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]:
        raise NotImplementedError

    def dataplane_plan(self, healthy: tuple[TargetState, ...]) -> Plan:
        """``order`` for a data plane in another process (router/rust.py): ``(pick, among, order)``.
        ``pick`` is "first" (``order`` as it is), "weighted" (the first drawn by weight among
        ``among``, then the rest of ``order``) or "p2c" (the lower latency EWMA of two drawn
        from ``among``). By default: this policy's order, fixed until the next refresh."""
        return "first", (), self.order(healthy)


Plan = tuple[Literal["first", "weighted", "p2c"], tuple["TargetState", ...], tuple["TargetState", ...]]
_REGISTRY: dict[str, type[Policy]] = {}
P = TypeVar("P", bound=type[Policy])


def register_policy(cls: P) -> P:
    """Class decorator: make a policy known by its ``name`` to the config, the balancer and the exporters."""
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} must set a class attribute `name` to be registered as a routing policy")
    for attr in ("summary", "haproxy", "envoy"):
        if not hasattr(cls, attr):
            raise TypeError(f"routing policy '{name}' must declare `{attr}`")
    known = _REGISTRY.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"routing policy '{name}' is already registered by {known.__module__}.{known.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def policy_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def policy_class(name: str) -> type[Policy]:
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown router policy '{name}'", hint=f"use one of: {', '.join(_REGISTRY)}")
    return cls


def make_policy(name: str, *, slo_p95_s: float, spill: str = "priority") -> Policy:
    return policy_class(name)(slo_p95_s=slo_p95_s, spill=spill)


def _weighted_pick(group: tuple[TargetState, ...], rng: random.Random) -> TargetState:
    total = sum(t.cfg.weight for t in group)
    if total <= 0:
        return group[0]
    x = rng.random() * total
    for t in group:
        x -= t.cfg.weight
        if x < 0:
            return t
    return group[-1]


def _first_then_rest(first: TargetState, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]:
    return (first,) + tuple(t for t in healthy if t is not first)


def _drawn_then_rest(first: TargetState, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]:
    """The drawn target, the others by priority, and drained ones (weight 0) last: a cloud a
    waves deploy has drained gets a retry only when every other target has failed it."""
    rest = tuple(t for t in healthy if t is not first)
    if any(t.cfg.weight <= 0 for t in rest):
        rest = tuple(t for t in rest if t.cfg.weight > 0) + tuple(t for t in rest if t.cfg.weight <= 0)
    return (first,) + rest


@register_policy
class Failover(Policy):
    name = "failover"
    summary = "priority order; equal priorities share by weight"
    haproxy = HAProxyPlan(balance="first", backups="lower_priorities")
    envoy = EnvoyPlan(lb_policy="ROUND_ROBIN", levels="by_priority")

    def __init__(self, *, slo_p95_s: float, spill: str = "priority") -> None:
        super().__init__(slo_p95_s=slo_p95_s, spill=spill)
        self._top: tuple[TargetState, ...] = ()

    def refresh(self, healthy: tuple[TargetState, ...]) -> None:
        self._top = tuple(t for t in healthy if t.cfg.priority == healthy[0].cfg.priority) if healthy else ()

    def order(self, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]:
        if len(self._top) <= 1:
            return healthy
        return _drawn_then_rest(_weighted_pick(self._top, self._rng), healthy)

    def dataplane_plan(self, healthy: tuple[TargetState, ...]) -> Plan:
        return ("weighted", self._top, healthy) if len(self._top) > 1 else ("first", (), healthy)


@register_policy
class Weighted(Policy):
    name = "weighted"
    summary = "one target drawn by weight, then the rest by priority"
    haproxy = HAProxyPlan(balance="roundrobin", weights=True)
    envoy = EnvoyPlan(lb_policy="ROUND_ROBIN")

    def order(self, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]:
        if len(healthy) <= 1:
            return healthy
        return _drawn_then_rest(_weighted_pick(healthy, self._rng), healthy)

    def dataplane_plan(self, healthy: tuple[TargetState, ...]) -> Plan:
        return "weighted", healthy, healthy


@register_policy
class LeastLatency(Policy):
    """Power of two choices: draw two healthy targets, send to the lower EWMA."""

    name = "latency"
    summary = "power of two choices on each target's latency EWMA"
    needs_latency = True
    haproxy = HAProxyPlan(balance="leastconn", approximation="EWMA latency balancing is rendered as leastconn")
    envoy = EnvoyPlan(lb_policy="LEAST_REQUEST",
                      approximation="EWMA power-of-two latency balancing is rendered as LEAST_REQUEST")

    def order(self, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]:
        if len(healthy) <= 1:
            return healthy
        a, b = self._rng.sample(healthy, 2)
        return _first_then_rest(a if a.stats.ewma_s <= b.stats.ewma_s else b, healthy)

    def dataplane_plan(self, healthy: tuple[TargetState, ...]) -> Plan:
        return "p2c", healthy, healthy  # on the data plane's own EWMA of each target


def _compute_price(target: RouterTargetConfig) -> float:
    from orchestrator.router.accounting import CostModel

    hourly = CostModel.for_target(target.pricing_key, vcpu=target.vcpu, memory_gb=target.memory_gb,
                                  replicas=target.replicas).compute_per_hour
    return float("inf") if hourly is None else hourly


@register_policy
class CheapestWithinSlo(Policy):
    name = "cost"
    summary = "the cheapest healthy target whose recent p95 is within the SLO"
    needs_latency = True
    needs_cost = True
    haproxy = HAProxyPlan(balance="first", backups="all_but_first",
                          approximation="cost-within-SLO routing is rendered as a static cheapest-first order")
    envoy = EnvoyPlan(lb_policy="ROUND_ROBIN", levels="by_rank",
                      approximation="cost-within-SLO routing is rendered as a static cheapest-first priority order")

    def __init__(self, *, slo_p95_s: float, spill: str = "priority") -> None:
        super().__init__(slo_p95_s=slo_p95_s, spill=spill)
        self._order: tuple[TargetState, ...] = ()

    @classmethod
    def static_rank(cls, target: RouterTargetConfig) -> tuple[float, ...]:
        return (_compute_price(target), target.priority)

    def refresh(self, healthy: tuple[TargetState, ...]) -> None:
        def price(t: TargetState) -> float:
            hourly = t.cost.compute_per_hour
            return float("inf") if hourly is None else hourly

        within = [t for t in healthy if t.recent_p95_s is None or t.recent_p95_s <= self.slo_p95_s]
        over = [t for t in healthy if t not in within]
        within.sort(key=lambda t: (price(t), t.cost.egress_per_gb or 0.0, t.cfg.priority, t.index))
        over.sort(key=lambda t: t.recent_p95_s or 0.0)
        self._order = tuple(within + over)

    def order(self, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]:
        # the cache is rebuilt on every health change, so it holds exactly the healthy set
        return self._order or healthy


@register_policy
class Locality(Policy):
    """The router's own cloud first (``router.cloud``; targets whose ``cloud``, or name, is it),
    equal ones sharing by weight; the others only when no local target is healthy, in
    ``router.spill`` order: priority, cost (compute price, then egress) or latency (EWMA)."""

    name = "locality"
    summary = "the router's own cloud while it is healthy; spill to the others by priority, cost or latency"
    needs_latency = True  # spill by latency re-ranks on each sample
    needs_cost = True
    haproxy = HAProxyPlan(balance="first", backups="lower_priorities",
                          approximation="locality is rendered as priority order: give the own cloud priority 0")
    envoy = EnvoyPlan(lb_policy="ROUND_ROBIN", levels="by_priority",
                      approximation="locality is rendered as priority levels: give the own cloud priority 0")

    def __init__(self, *, slo_p95_s: float, spill: str = "priority") -> None:
        super().__init__(slo_p95_s=slo_p95_s, spill=spill)
        self._local: tuple[TargetState, ...] = ()
        self._order: tuple[TargetState, ...] = ()

    def _spill_key(self, t: TargetState) -> tuple[float, ...]:
        if self.spill == "cost":
            hourly = t.cost.compute_per_hour
            return (float("inf") if hourly is None else hourly, t.cost.egress_per_gb or 0.0, t.cfg.priority, t.index)
        if self.spill == "latency":
            return (t.stats.ewma_s if t.stats.ewma_s else float("inf"), t.cfg.priority, t.index)
        return (t.cfg.priority, t.index)

    def refresh(self, healthy: tuple[TargetState, ...]) -> None:
        self._local = tuple(t for t in healthy if t.local)
        remote = sorted((t for t in healthy if not t.local), key=self._spill_key)
        self._order = self._local + tuple(remote)

    def order(self, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]:
        if len(self._local) > 1:
            return _first_then_rest(_weighted_pick(self._local, self._rng), self._order)
        return self._order or healthy

    def dataplane_plan(self, healthy: tuple[TargetState, ...]) -> Plan:
        if len(self._local) > 1:
            return "weighted", self._local, self._order
        return "first", (), self._order or healthy


PlanT = TypeVar("PlanT", HAProxyPlan, EnvoyPlan)


def export_plan(name: str, proxy: Literal["haproxy", "envoy"], plan_type: type[PlanT]) -> PlanT:
    """The plan ``proxy`` uses for policy ``name``; a ConfigError in words when it cannot express it."""
    plan = getattr(policy_class(name), proxy)
    if isinstance(plan, plan_type):
        return plan
    reason = plan.reason if isinstance(plan, NotExpressible) else f"it declares no {proxy} plan"
    can = [n for n, c in _REGISTRY.items() if isinstance(getattr(c, proxy), plan_type)]
    raise ConfigError(f"the '{name}' routing policy cannot be expressed in {proxy}: {reason}",
                      hint=f"export with a policy {proxy} can express ({', '.join(can) or 'none'}), "
                           f"or run the mco router for '{name}'")
