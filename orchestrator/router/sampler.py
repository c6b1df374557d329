"""The sampler: recent windows and time series per target, computed beside the hot path.

Every ``STEP_S / 2`` it snapshots each target's counters (and the overall ones, what
clients saw). The difference with a snapshot about ``WINDOW_S`` older gives the recent
rate, bytes per second and latency percentiles: they go into the target's state, where
hedging and the policies that rank by measured data read them (those policies are
refreshed after each sample). Every ``STEP_S`` a ``SeriesPoint`` is appended to the
target's series, which ``GET /admin/series`` serves and ``mco router report`` draws.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, NamedTuple

from orchestrator.router.accounting import StatsSnapshot, TargetStats, as_ms, percentile

if TYPE_CHECKING:
    from orchestrator.router.balancer import Balancer, TargetState

__all__ = ["OVERALL", "POINTS", "STEP_S", "WINDOW_S", "Sampler", "SeriesPoint"]

STEP_S = 2.0
POINTS = 1800  # one hour
WINDOW_S = 10.0
OVERALL = "__overall__"  # the series of what clients saw, retries included

_NAN = float("nan")


class SeriesPoint(NamedTuple):
    """One point of a target's series; NaN where there is no data (no traffic, no pricing key)."""

    t: float  # unix seconds
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors_per_s: float
    cost_per_hour: float
    cost_per_1k_requests: float
    healthy: float  # 1.0 or 0.0


class _Window(NamedTuple):
    rps: float
    bytes_per_s: float
    errors_per_s: float
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None


class Sampler:
    def __init__(self, balancer: Balancer, overall: TargetStats) -> None:
        self.balancer = balancer
        self.overall = overall
        self.series: dict[str, list[SeriesPoint]] = {}
        self._history: dict[str, list[StatsSnapshot]] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(STEP_S / 2)
            try:
                self.sample()
            except Exception:  # never let accounting kill the router
                pass

    def sample(self) -> None:
        now = time.time()
        for target in list(self.balancer.targets.values()):
            self._sample(now, target.name, target.stats, target)
        self._sample(now, OVERALL, self.overall, None)
        for name in [n for n in self._history if n != OVERALL and n not in self.balancer.targets]:
            self._history.pop(name, None)
        policy = self.balancer.policy
        if policy.needs_latency or policy.needs_cost:
            self.balancer.refresh_policy()

    def _window(self, name: str, stats: TargetStats) -> _Window:
        """The figures since the oldest snapshot at most ``WINDOW_S`` old (since start for the first one)."""
        snap = stats.snapshot()
        hist = self._history.setdefault(name, [])
        hist.append(snap)
        while len(hist) > 2 and snap.at - hist[1].at >= WINDOW_S:
            hist.pop(0)
        first = hist[0]
        if len(hist) == 1:
            p50, p95, p99 = (percentile(snap.counts, q) for q in (0.5, 0.95, 0.99))
            return _Window(0.0, 0.0, 0.0, p50, p95, p99)
        span = max(snap.at - first.at, 1e-9)
        counts = [a - b for a, b in zip(snap.counts, first.counts)]
        p50, p95, p99 = (percentile(counts, q) for q in (0.5, 0.95, 0.99))
        return _Window((snap.requests - first.requests) / span, (snap.bytes_out - first.bytes_out) / span,
                       (snap.errors - first.errors) / span, p50, p95, p99)

    def _sample(self, now: float, name: str, stats: TargetStats, target: TargetState | None) -> None:
        w = self._window(name, stats)
        if target is not None:
            target.recent_rps, target.recent_bytes_per_s, target.recent_p95_s = w.rps, w.bytes_per_s, w.p95_s
            target.window = {"rps": round(w.rps, 2), "p50_ms": as_ms(w.p50_s), "p95_ms": as_ms(w.p95_s),
                             "p99_ms": as_ms(w.p99_s)}
        series = self.series.setdefault(name, [])
        if series and now - series[-1].t < STEP_S * 0.99:
            return
        cost_h = target.cost.per_hour(w.bytes_per_s) if target is not None else None
        cost_k = target.cost.per_1k_requests(w.rps, w.bytes_per_s) if target is not None else None
        series.append(SeriesPoint(
            t=now, rps=w.rps, p50_ms=as_ms(w.p50_s) or _NAN, p95_ms=as_ms(w.p95_s) or _NAN,
            p99_ms=as_ms(w.p99_s) or _NAN, errors_per_s=w.errors_per_s,
            cost_per_hour=_NAN if cost_h is None else cost_h, cost_per_1k_requests=_NAN if cost_k is None else cost_k,
            healthy=1.0 if target is None or target.healthy else 0.0))
        if len(series) > POINTS:
            del series[0]
