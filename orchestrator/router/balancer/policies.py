"""Routing policies: given the healthy targets (priority order), the order to try them.

* ``failover`` (default): priority order; the next cloud only gets traffic when the
  ones before it are unhealthy or a try failed. Equal priorities share by weight.
* ``weighted``: one target drawn by weight, then the rest by priority.
* ``latency``: power of two choices on an EWMA of each target's latency.
* ``cost``: the cheapest healthy target whose recent p95 is within the SLO; targets
  over the SLO come after, fastest first.

``order`` runs on every request, so it returns cached tuples where it can; ``refresh``
recomputes caches when health or recent latency changes.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from orchestrator.router.balancer import TargetState

__all__ = ["POLICIES", "Policy", "make_policy"]


class Policy(Protocol):
    def order(self, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]: ...

    def refresh(self, healthy: tuple[TargetState, ...]) -> None: ...


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


class Failover:
    def __init__(self) -> None:
        self._rng = random.Random()
        self._top: tuple[TargetState, ...] = ()

    def refresh(self, healthy: tuple[TargetState, ...]) -> None:
        self._top = tuple(t for t in healthy if t.cfg.priority == healthy[0].cfg.priority) if healthy else ()

    def order(self, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]:
        if len(self._top) <= 1:
            return healthy
        first = _weighted_pick(self._top, self._rng)
        return (first,) + tuple(t for t in healthy if t is not first)


class Weighted:
    def __init__(self) -> None:
        self._rng = random.Random()

    def refresh(self, healthy: tuple[TargetState, ...]) -> None:
        pass

    def order(self, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]:
        if len(healthy) <= 1:
            return healthy
        first = _weighted_pick(healthy, self._rng)
        return (first,) + tuple(t for t in healthy if t is not first)


class LeastLatency:
    """Power of two choices: draw two healthy targets, send to the lower EWMA."""

    def __init__(self) -> None:
        self._rng = random.Random()

    def refresh(self, healthy: tuple[TargetState, ...]) -> None:
        pass

    def order(self, healthy: tuple[TargetState, ...]) -> tuple[TargetState, ...]:
        n = len(healthy)
        if n <= 1:
            return healthy
        a, b = self._rng.sample(healthy, 2)
        first = a if a.stats.ewma_s <= b.stats.ewma_s else b
        return (first,) + tuple(t for t in healthy if t is not first)


class CheapestWithinSlo:
    def __init__(self, slo_p95_s: float) -> None:
        self.slo_p95_s = slo_p95_s
        self._order: tuple[TargetState, ...] = ()

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


POLICIES = ("failover", "weighted", "latency", "cost")


def make_policy(name: str, *, slo_p95_s: float) -> Policy:
    if name == "failover":
        return Failover()
    if name == "weighted":
        return Weighted()
    if name == "latency":
        return LeastLatency()
    if name == "cost":
        return CheapestWithinSlo(slo_p95_s)
    from orchestrator.errors import ConfigError

    raise ConfigError(f"unknown routing policy '{name}'", hint=f"use one of: {', '.join(POLICIES)}")
