"""The balancer: which targets are healthy, in what order to try them.

A target is healthy when every health source (active checks, passive outlier
detection) says it is up. Sources report transitions through ``sink(source)``, whose
only method is ``set_status(target, up)``. The balancer then recomputes the ordered
list of candidates once, so the hot path only reads a tuple, and records ``failover``
/ ``failback`` when the preferred healthy target changes, and ``all_down`` /
``recovered`` when the last one goes or the first one returns.

When every target is down the router is in *panic*: it tries all targets anyway in
priority order (health data may be stale, and an answer beats a certain error), and if
every try fails the client gets a 503 naming what was tried.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.router.accounting import CostModel, TargetStats
from orchestrator.router.balancer.policies import Policy, make_policy
from orchestrator.router.events import EventLog

if TYPE_CHECKING:
    from orchestrator.config import RouterTargetConfig

__all__ = ["Balancer", "TargetState"]

SOURCES = ("active", "passive")


@dataclass(eq=False)
class TargetState:
    cfg: RouterTargetConfig
    index: int
    cost: CostModel
    stats: TargetStats = field(default_factory=TargetStats)
    up: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(SOURCES, True))
    healthy: bool = True
    local: bool = False  # in the router's own cloud (router.cloud): the locality policy prefers it
    # recent window figures, refreshed by the sampler beside the hot path
    recent_p95_s: float | None = None
    recent_rps: float = 0.0
    recent_bytes_per_s: float = 0.0
    window: dict[str, float | None] | None = None

    @property
    def name(self) -> str:
        return self.cfg.name


class _Sink:
    __slots__ = ("_balancer", "_source")

    def __init__(self, balancer: Balancer, source: str) -> None:
        self._balancer, self._source = balancer, source

    def set_status(self, target: str, up: bool) -> None:
        self._balancer._set(target, self._source, up)


class Balancer:
    def __init__(self, targets: list[TargetState], policy: str, events: EventLog, *, slo_p95_s: float,
                 spill: str = "priority") -> None:
        self.events = events
        self.slo_p95_s = slo_p95_s
        self._lock = threading.Lock()
        self.policy: Policy = make_policy(policy, slo_p95_s=slo_p95_s, spill=spill)
        self.targets: dict[str, TargetState] = {}
        self.by_priority: tuple[TargetState, ...] = ()
        self.healthy: tuple[TargetState, ...] = ()
        self.preferred: TargetState | None = None
        self.all_down = False
        # called after every change of the candidates (health, targets, a policy refresh): a data
        # plane in another process learns of it at once (router/rust.py)
        self.on_change: Callable[[], None] | None = None
        self.replace_targets(targets)

    def sink(self, source: str) -> _Sink:
        assert source in SOURCES
        return _Sink(self, source)

    def replace_targets(self, targets: list[TargetState]) -> None:
        with self._lock:
            self.targets = {t.name: t for t in targets}
            self.by_priority = tuple(sorted(targets, key=lambda t: (t.cfg.priority, t.index)))
            self._recompute(announce=False)

    def _set(self, name: str, source: str, up: bool) -> None:
        with self._lock:
            target = self.targets.get(name)
            if target is None or target.up[source] == up:
                return
            target.up[source] = up
            healthy = all(target.up.values())
            if healthy != target.healthy:
                target.healthy = healthy
                self._recompute(announce=True)

    def _recompute(self, *, announce: bool) -> None:
        self.healthy = tuple(t for t in self.by_priority if t.healthy)
        preferred = self.healthy[0] if self.healthy else None
        if announce:
            before = self.preferred
            if preferred is None and not self.all_down:
                self.events.emit("all_down", None, last=before.name if before else None)
            elif preferred is not None and self.all_down:
                self.events.emit("recovered", preferred.name)
            if before is not None and preferred is not None and before is not preferred:
                back = (preferred.cfg.priority, preferred.index) < (before.cfg.priority, before.index)
                self.events.emit("failback" if back else "failover", preferred.name,
                                 **{"from": before.name, "to": preferred.name})
        else:
            self.preferred = None
        self.all_down = preferred is None and bool(self.by_priority)
        # While everything is down, remember who was preferred so the return is a failback or failover.
        if preferred is not None:
            self.preferred = preferred
        self.policy.refresh(self.healthy)
        if self.on_change is not None:
            self.on_change()

    def candidates(self) -> tuple[TargetState, ...]:
        """Targets to try for one request, best first. Panic (all down): every target by priority."""
        healthy = self.healthy
        if not healthy:
            return self.by_priority
        return self.policy.order(healthy)

    def refresh_policy(self) -> None:
        """Called by the sampler after the recent latency figures changed."""
        self.policy.refresh(self.healthy)
        if self.on_change is not None:
            self.on_change()
