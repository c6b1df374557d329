"""Drill objectives, and the measures they are checked against.

Every measure is computed from what clients saw (the traffic generator's records); the
router's event log only adds markers (when it noticed, when it moved traffic). Times are
unix seconds on this machine's clock, the same clock the router stamps its events with.

* **RTO** (recovery time): from the fault until traffic is fully served elsewhere, i.e. the
  end of the last request in the outage that failed, was slower than ``slow_request_s``, or
  was still answered by the broken cloud; if there was no such request, the end of the
  first request served elsewhere. Never recovering before the repair means no RTO (missed).
* **client errors**: requests that got no 2xx answer (refused, reset, timeout, 4xx, 5xx).
* **failback**: from the repair until the repaired cloud answers clients again; when that
  cloud carried no traffic before the fault either, until the router readmits it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.testing.traffic import RequestRecord

__all__ = ["SETTLE_ANSWERS", "Check", "Measures", "Objectives", "check_objectives", "first_return", "measure", "settled"]

READMIT_KINDS = ("readmission", "health_up", "failback", "recovered")
SETTLE_ANSWERS = 5  # requests that must have been answered well before a drill stops its traffic


@dataclass(frozen=True)
class Objectives:
    """What a drill must achieve. ``None`` means "not checked" for this scenario."""

    max_rto_s: float | None = None
    max_errors: int | None = None
    max_failback_s: float | None = None
    slow_request_s: float = 1.0
    # latency scenario: whether traffic must leave the slow cloud (True) or stay (False)
    expect_traffic_moves: bool | None = None
    max_slow_share: float = 0.2  # "moved" means the slow cloud answers at most this share afterwards
    # failback: the repaired cloud answered this many clients again (1: its first answer). Behind
    # the global entry one stray answer (a retry another router sent there) is not the cloud back.
    failback_answers: int = 1

    def __post_init__(self) -> None:
        for name in ("max_rto_s", "max_failback_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"objective {name.removesuffix('_s').replace('_', '-')} must be positive, not {value}",
                                  hint="give a time in seconds, e.g. --max-rto 2")
        if self.max_errors is not None and self.max_errors < 0:
            raise ConfigError("the client error budget cannot be negative", hint="e.g. --max-errors 0")
        if self.failback_answers < 1:
            raise ConfigError("failback needs at least one answer from the repaired cloud", hint="e.g. 1 or 20")
        if self.slow_request_s <= 0:
            raise ConfigError("the slow-request threshold must be positive", hint="e.g. 1 second")

    def override(self, **values: Any) -> Objectives:
        """A copy with the given values, skipping the ones that are None (flags not given)."""
        data = asdict(self)
        data.update({k: v for k, v in values.items() if v is not None})
        return Objectives(**data)


@dataclass
class Measures:
    requests: int = 0
    client_errors: int = 0
    errors_before_fault: int = 0  # the deployment was already failing: not the fault's doing
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    error_samples: dict[str, dict[str, Any]] = field(default_factory=dict)
    slow_requests: int = 0
    rto_seconds: float | None = None
    failback_seconds: float | None = None
    detection_seconds: float | None = None  # fault -> the router's first ejection / health_down
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    served_by: dict[str, int] = field(default_factory=dict)
    share_after_fault: dict[str, float] = field(default_factory=dict)
    traffic_moved: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    objective: str
    limit: Any
    value: Any
    passed: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def _bad(rec: RequestRecord, faulted: str | None, slow_s: float) -> bool:
    return (not rec.ok) or rec.latency > slow_s or (faulted is not None and rec.cloud == faulted)


def recovery_time(records: Sequence[RequestRecord], *, fault: float, until: float, faulted: str | None,
                  slow_s: float) -> float | None:
    """RTO as defined in the module docstring, or None when traffic never recovered."""
    # Requests in flight at the fault count too: a reset at the moment of the kill is damage.
    affected = [r for r in records if r.done >= fault and r.sent < until]
    bad = [r for r in affected if _bad(r, faulted, slow_s) and not (r.sent < fault and r.ok and r.latency <= slow_s)]
    last_bad_end = max((r.done for r in bad), default=None)
    after = last_bad_end if last_bad_end is not None else fault
    good = [r for r in affected if r.sent >= fault and r.done >= after and not _bad(r, faulted, slow_s)]
    if not good:
        return None
    if last_bad_end is not None:
        return max(0.0, last_bad_end - fault)
    return max(0.0, min(r.done for r in good) - fault)


def settled(records: Sequence[RequestRecord], *, now: float, window_s: float, slow_s: float,
            least: int = SETTLE_ANSWERS) -> bool:
    """True when at least ``least`` requests were sent in the last ``window_s`` and all of them
    were answered well (2xx, no slower than ``slow_s``).

    The drill keeps its traffic on until this holds (for a bounded time) before it stops:
    stopping in the middle of a stall would leave the stalled requests with nothing after
    them, and a hiccup that ended a moment later would read as "never recovered". A client
    that sent nothing lately (its own process stalled) is not settled either.
    """
    recent = [r for r in records if r.sent >= now - window_s]
    return len(recent) >= least and all(r.ok and r.latency <= slow_s for r in recent)


def first_return(records: Sequence[RequestRecord], cloud: str, *, fault: float, repair: float,
                 answers: int = 1) -> float | None:
    """When ``cloud`` had answered ``answers`` clients again after the fault (the end of the
    last of those requests), or None.

    The broken cloud may still answer a few requests between the fault mark and the moment
    the fault bites (a kill takes milliseconds): a return only counts after traffic had left.
    """
    left = [r.sent for r in records if r.sent >= fault and (not r.ok or r.cloud != cloud)]
    if not left:
        return None
    since = max(repair, min(left))
    back = sorted(r.done for r in records if r.sent >= since and r.ok and r.cloud == cloud)
    return back[answers - 1] if len(back) >= answers else None


def failback_time(records: Sequence[RequestRecord], events: Iterable[dict[str, Any]], *, fault: float,
                  repair: float, faulted: str, start: float, answers: int = 1) -> float | None:
    baseline = [r for r in records if start <= r.sent < fault and r.ok]
    carried_before = any(r.cloud == faulted for r in baseline)
    if carried_before:
        back = first_return(records, faulted, fault=fault, repair=repair, answers=answers)
        return (back - repair) if back is not None else None
    marks = [float(e["ts"]) for e in events if e.get("target") == faulted and e.get("kind") in READMIT_KINDS
             and float(e["ts"]) >= repair]
    return (min(marks) - repair) if marks else None


def measure(records: Sequence[RequestRecord], events: Sequence[dict[str, Any]], *, start: float, fault: float | None,
            repair: float | None, end: float, faulted: str | None, objectives: Objectives,
            recovery: bool = True, self_healing: bool = False) -> Measures:
    """Everything a drill reports. ``recovery``: the scenario takes a cloud away, so RTO,
    detection and failback apply. ``self_healing``: the platform restarts what broke at once
    (pod-crash), so answers from the broken cloud after the fault are recovery, not damage,
    and the recovery window runs to the end of the traffic."""
    m = Measures()
    m.requests = len(records)
    for rec in records:
        if not rec.ok:
            kind = rec.error or f"HTTP {rec.status}"
            m.errors_by_kind[kind] = m.errors_by_kind.get(kind, 0) + 1
            if kind not in m.error_samples:  # the first answer of each kind says who gave it
                m.error_samples[kind] = {"sent": round(rec.sent, 3), "cloud": rec.cloud, "detail": rec.detail}
        if rec.cloud:
            m.served_by[rec.cloud] = m.served_by.get(rec.cloud, 0) + 1
    m.client_errors = sum(m.errors_by_kind.values())
    ok_latencies = [r.latency for r in records if r.ok]
    m.slow_requests = sum(1 for r in records if r.latency > objectives.slow_request_s)
    m.latency_ms = {
        "p50": _ms(_percentile(ok_latencies, 50)), "p95": _ms(_percentile(ok_latencies, 95)),
        "p99": _ms(_percentile(ok_latencies, 99)), "max": _ms(max(ok_latencies, default=None)),
        "mean": _ms(statistics.fmean(ok_latencies) if ok_latencies else None),
    }
    if fault is not None:
        m.errors_before_fault = sum(1 for r in records if not r.ok and r.done < fault)
    if fault is None or not recovery:
        return m
    until = end if self_healing or repair is None else repair
    m.rto_seconds = _round(recovery_time(records, fault=fault, until=until, faulted=None if self_healing else faulted,
                                         slow_s=objectives.slow_request_s))
    if faulted is not None:
        marks = [float(e["ts"]) for e in events if e.get("target") == faulted
                 and e.get("kind") in ("ejection", "health_down") and float(e["ts"]) >= fault]
        m.detection_seconds = _round(min(marks) - fault) if marks else None
        # Share of answers per cloud once the router had a moment to react (latency scenario).
        settle = fault + min(2.0, max(0.0, ((repair or end) - fault) / 3))
        until = repair if repair is not None and repair > fault else end
        window = [r for r in records if settle <= r.sent < until and r.ok and r.cloud]
        if window:
            for cloud in sorted({r.cloud for r in window if r.cloud}):
                m.share_after_fault[cloud] = round(sum(1 for r in window if r.cloud == cloud) / len(window), 4)
            before = [r for r in records if start <= r.sent < fault and r.ok and r.cloud]
            share_before = (sum(1 for r in before if r.cloud == faulted) / len(before)) if before else 0.0
            share_after = m.share_after_fault.get(faulted, 0.0)
            m.traffic_moved = share_after <= objectives.max_slow_share and share_after < share_before
        if repair is not None:
            m.failback_seconds = _round(failback_time(records, events, fault=fault, repair=repair,
                                                      faulted=faulted, start=start,
                                                      answers=objectives.failback_answers))
    return m


def check_objectives(m: Measures, objectives: Objectives) -> list[Check]:
    checks: list[Check] = []
    if objectives.max_rto_s is not None:
        ok = m.rto_seconds is not None and m.rto_seconds <= objectives.max_rto_s
        value = "never recovered" if m.rto_seconds is None else f"{m.rto_seconds:.3f} s"
        checks.append(Check("rto", objectives.max_rto_s, m.rto_seconds, ok,
                            f"recovery time {value} (objective <= {objectives.max_rto_s:g} s)"))
    if objectives.max_errors is not None:
        ok = m.client_errors <= objectives.max_errors
        before = (f", {m.errors_before_fault} of them before the fault: the deployment was already failing"
                  if m.errors_before_fault else "")
        checks.append(Check("client_errors", objectives.max_errors, m.client_errors, ok,
                            f"{m.client_errors} client errors (budget {objectives.max_errors}){before}"))
    if objectives.max_failback_s is not None:
        ok = m.failback_seconds is not None and m.failback_seconds <= objectives.max_failback_s
        value = "no failback" if m.failback_seconds is None else f"{m.failback_seconds:.3f} s"
        checks.append(Check("failback", objectives.max_failback_s, m.failback_seconds, ok,
                            f"failback {value} after the repair (objective <= {objectives.max_failback_s:g} s)"))
    if objectives.expect_traffic_moves is not None:
        ok = m.traffic_moved is not None and m.traffic_moved == objectives.expect_traffic_moves
        want = "moves off" if objectives.expect_traffic_moves else "stays on"
        checks.append(Check("traffic_moves", objectives.expect_traffic_moves, m.traffic_moved, ok,
                            f"traffic {want} the slow cloud (share after the fault: {m.share_after_fault})"))
    return checks


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
