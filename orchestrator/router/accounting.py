"""Per-target accounting: counters, a latency histogram, an EWMA, and cost.

The hot path only increments integers (``observe``/``error``); percentiles, rates and
costs are computed when someone asks (``/admin/status``, ``/metrics``, the sampler).
The histogram has fixed log-spaced buckets (about 5 % wide from 50 µs to 120 s), so
recording is one ``bisect`` and a list increment, and any window's percentiles are the
difference of two snapshots.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["BOUNDS_S", "ERROR_KINDS", "CostModel", "StatsSnapshot", "TargetStats", "as_ms", "percentile"]

_FACTOR = 1.05
BOUNDS_S: tuple[float, ...] = tuple(50e-6 * _FACTOR**i for i in range(int(math.log(120 / 50e-6, _FACTOR)) + 2))
ERROR_KINDS = ("connect", "timeout", "reset", "http_5xx")


def percentile(counts: list[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) in seconds of a histogram's ``counts``; None when empty."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank and n:
            # geometric middle of the bucket: the error is at most half a bucket (~2.5 %)
            upper = BOUNDS_S[i] if i < len(BOUNDS_S) else BOUNDS_S[-1]
            lower = BOUNDS_S[i - 1] if i > 0 else upper / _FACTOR
            return math.sqrt(lower * upper)
    return BOUNDS_S[-1]


def as_ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds for reports, to the microsecond; None stays None (no data)."""
    return None if seconds is None else round(seconds * 1000, 3)


@dataclass
class CostModel:
    """What a target costs: its replicas per hour plus egress per GB sent."""

    compute_per_hour: float | None  # None: no pricing key, cost unknown
    egress_per_gb: float | None
    # a cross-cloud target's requests leave the router's own cloud at that cloud's price
    request_egress_per_gb: float | None = None

    def egress_usd(self, bytes_out: int, bytes_in: int) -> float | None:
        """What the bytes exchanged with this target cost so far: answers at the target's egress
        price, requests at the router's own (cross-cloud only)."""
        if self.egress_per_gb is None:
            return None
        return bytes_out / 1e9 * self.egress_per_gb + bytes_in / 1e9 * (self.request_egress_per_gb or 0.0)

    @classmethod
    def for_target(cls, pricing_key: str | None, *, vcpu: float, memory_gb: float, replicas: int) -> CostModel:
        if not pricing_key:
            return cls(None, None)
        from orchestrator.catalog import hourly_compute_cost, price

        return cls(hourly_compute_cost(pricing_key, vcpu=vcpu, memory_gb=memory_gb, replicas=replicas),
                   price(pricing_key).egress_gb)

    def per_hour(self, bytes_per_s: float) -> float | None:
        if self.compute_per_hour is None or self.egress_per_gb is None:
            return None
        return self.compute_per_hour + bytes_per_s * 3600 / 1e9 * self.egress_per_gb

    def per_1k_requests(self, rps: float, bytes_per_s: float) -> float | None:
        hourly = self.per_hour(bytes_per_s)
        if hourly is None or rps <= 0:
            return None
        return hourly / (rps * 3600) * 1000


class StatsSnapshot(NamedTuple):
    """A target's counters at one moment; the difference of two is a window."""

    at: float           # time.monotonic()
    requests: int
    bytes_out: int
    counts: list[int]   # the latency histogram (a copy)
    errors: int         # failed tries of every kind


@dataclass
class TargetStats:
    requests: int = 0                  # tries sent to this target that got an answer or failed
    responses_4xx: int = 0
    retries: int = 0                   # tries that were retries of a failure elsewhere
    hedges: int = 0
    bytes_out: int = 0                 # response bytes sent back to clients (egress)
    bytes_in: int = 0                  # request bytes sent to this target (egress of a cross-cloud router)
    ewma_s: float = 0.0
    latency_sum_s: float = 0.0         # of the answered tries: the histogram's _sum, for rate(sum)/rate(count)
    counts: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_S) + 1))
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    started: float = field(default_factory=time.monotonic)

    def observe(self, seconds: float, nbytes: int) -> None:
        self.requests += 1
        self.bytes_out += nbytes
        self.latency_sum_s += seconds
        self.counts[bisect_left(BOUNDS_S, seconds)] += 1
        self.ewma_s = seconds if self.ewma_s == 0.0 else self.ewma_s + 0.2 * (seconds - self.ewma_s)

    def error(self, kind: str, seconds: float) -> None:
        self.requests += 1
        self.errors[kind] += 1
        # failures count in the EWMA at their cost, so the latency policy shies away
        self.ewma_s = seconds if self.ewma_s == 0.0 else self.ewma_s + 0.2 * (seconds - self.ewma_s)

    def snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(time.monotonic(), self.requests, self.bytes_out, list(self.counts),
                             sum(self.errors.values()))
