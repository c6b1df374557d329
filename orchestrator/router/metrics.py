"""``/metrics``: Prometheus text rendered from the router's own counters on each scrape.

Nothing here runs per request; the collector reads the accounting state when scraped.
The latency histogram carries the real sum of the answered tries (``rate(_sum)/rate(_count)``
is the mean). Percentiles since start are plain gauges labelled ``percentile`` ("50", "95",
"99"): a ``quantile`` label is reserved for summaries, and ``promtool check metrics`` refuses it
on a gauge.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from orchestrator.router.accounting import BOUNDS_S, percentile

if TYPE_CHECKING:
    from orchestrator.router.state import Router

__all__ = ["render_metrics"]

_EXPORT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _Collector:
    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[object]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        requests = CounterMetricFamily("mco_router_target_requests", "Tries sent to each target", labels=["target"])
        errors = CounterMetricFamily("mco_router_target_errors", "Failed tries by kind", labels=["target", "kind"])
        retries = CounterMetricFamily("mco_router_target_retries", "Tries that retried a failure", labels=["target"])
        latency = HistogramMetricFamily("mco_router_target_latency_seconds", "Latency of answered tries",
                                        labels=["target"])
        healthy = GaugeMetricFamily("mco_router_target_healthy", "1 when routable", labels=["target"])
        quantiles = GaugeMetricFamily("mco_router_target_latency_percentile_seconds",
                                      "Latency percentiles of answered tries since start", labels=["target", "percentile"])
        cost_h = GaugeMetricFamily("mco_router_target_cost_per_hour", "Cost per hour (USD)", labels=["target"])
        cost_k = GaugeMetricFamily("mco_router_target_cost_per_1k_requests", "Cost per 1,000 requests (USD)",
                                   labels=["target"])
        for t in self.router.balancer.by_priority:
            s = t.stats
            requests.add_metric([t.name], s.requests)
            retries.add_metric([t.name], s.retries)
            for kind, n in s.errors.items():
                errors.add_metric([t.name, kind], n)
            buckets, cum, i = [], 0, 0
            for edge in _EXPORT_BUCKETS:
                while i < len(BOUNDS_S) and BOUNDS_S[i] <= edge:
                    cum += s.counts[i]
                    i += 1
                buckets.append((repr(edge), cum))
            total = sum(s.counts)
            buckets.append(("+Inf", total))
            latency.add_metric([t.name], buckets, sum_value=s.latency_sum_s)
            healthy.add_metric([t.name], 1.0 if t.healthy else 0.0)
            for q in (0.5, 0.95, 0.99):
                v = percentile(s.counts, q)
                if v is not None:
                    quantiles.add_metric([t.name, f"{q * 100:g}"], v)
            ch = t.cost.per_hour(t.recent_bytes_per_s)
            if ch is not None:
                cost_h.add_metric([t.name], ch)
            ck = t.cost.per_1k_requests(t.recent_rps, t.recent_bytes_per_s)
            if ck is not None:
                cost_k.add_metric([t.name], ck)
        yield from (requests, errors, retries, latency, healthy, quantiles, cost_h, cost_k)
        yield from _live_gauges(self.router)
        events = CounterMetricFamily("mco_router_events", "Events logged", labels=[])
        events.add_metric([], len(self.router.events))
        yield events


def _live_gauges(router: Router) -> Iterator[object]:
    """The last live-metrics snapshot (feedback.py refreshes it beside the hot path)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    kept = router.kept
    if kept is None:
        return
    live = GaugeMetricFamily("mco_router_live", "Live metrics per cloud and release over the window",
                             labels=["cloud", "release", "metric"])
    drifting = GaugeMetricFamily("mco_router_drift_over_threshold", "1 while PSI drift is over its threshold",
                                 labels=["cloud", "release", "metric"])
    for g in (kept.snapshot_cache or {}).get("groups", []):
        for name, value in g["metrics"].items():
            if value is not None and not name.startswith("live_class_"):
                live.add_metric([g["cloud"], g["release"], name], float(value))
        for name in ("class_drift_psi", "proba_drift_psi"):
            drifting.add_metric([g["cloud"], g["release"], name], 1.0 if name in g.get("drift", []) else 0.0)
    dropped = CounterMetricFamily("mco_router_kept_dropped", "Kept predictions dropped at the bound", labels=[])
    dropped.add_metric([], kept.dropped)
    size = GaugeMetricFamily("mco_router_kept_predictions", "Predictions kept for feedback", labels=[])
    size.add_metric([], len(kept.items))
    yield from (live, drifting, dropped, size)


def render_metrics(router: Router) -> tuple[bytes, str]:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(router))  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST
