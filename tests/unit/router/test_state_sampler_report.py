"""The router's state, its sampler and the reports built from them, without a server."""

from __future__ import annotations

import math
import subprocess
import sys

from orchestrator.config import RouterConfig, RouterTargetConfig
from orchestrator.router.accounting import CostModel, StatsSnapshot
from orchestrator.router.admin import check_token
from orchestrator.router.report import series_report, status_report
from orchestrator.router.sampler import OVERALL, SeriesPoint
from orchestrator.router.state import Router


def _router(policy: str = "failover") -> Router:
    return Router(RouterConfig(policy=policy, slo_p95_ms=50, targets=[
        RouterTargetConfig(name="aws", url="http://127.0.0.1:9001", priority=0, pricing_key="aws/us-east-1"),
        RouterTargetConfig(name="gcp", url="http://127.0.0.1:9002", priority=1)]), token="s3cret")


def test_snapshots_and_series_points_are_named_records() -> None:
    router = _router()
    aws = router.balancer.targets["aws"]
    for _ in range(20):
        aws.stats.observe(0.004, 100)
        router.overall.observe(0.005, 100)
    aws.stats.error("connect", 0.001)
    snap = aws.stats.snapshot()
    assert isinstance(snap, StatsSnapshot) and (snap.requests, snap.bytes_out, snap.errors) == (21, 2000, 1)
    router.sampler.sample()
    assert aws.window is not None and 3.5 < (aws.window["p50_ms"] or 0) < 4.5
    router.sampler.sample()  # within one step: updates the window, adds no point
    assert aws.window["p50_ms"] is None  # nothing was answered since the first sample
    points = router.sampler.series["aws"]
    assert len(points) == 1 and isinstance(points[0], SeriesPoint)
    assert 3.5 < points[0].p50_ms < 4.5 and points[0].healthy == 1.0
    assert set(router.sampler.series) == {"aws", "gcp", OVERALL}
    assert math.isnan(router.sampler.series["gcp"][0].cost_per_hour)  # gcp has no pricing key


def test_series_report_keeps_its_columns_and_turns_nan_into_null() -> None:
    router = _router()
    router.sampler.sample()
    doc = series_report(router.sampler)
    assert doc["columns"] == ["t", "rps", "p50_ms", "p95_ms", "p99_ms", "errors_per_s", "cost_per_hour",
                              "cost_per_1k_requests", "healthy"]
    assert doc["step_s"] == 2.0
    row = doc["targets"]["gcp"][0]
    assert row[doc["columns"].index("p50_ms")] is None and row[doc["columns"].index("healthy")] == 1.0


def test_status_report_is_what_the_admin_api_answers() -> None:
    router = _router()
    router.balancer.targets["aws"].stats.observe(0.002, 10)
    router.client_errors["all_failed"] += 1
    doc = status_report(router)
    assert doc == router.status() | {"uptime_s": doc["uptime_s"]}
    assert doc["policy"] == "failover" and doc["active_target"] == "aws" and not doc["all_down"]
    assert [t["name"] for t in doc["targets"]] == ["aws", "gcp"]
    assert doc["targets"][0]["requests"] == 1 and doc["overall"]["client_errors"]["all_failed"] == 1
    assert doc["overall"]["cost_per_hour"] is None  # gcp's cost is unknown, so the total is too


def test_the_sampler_refreshes_policies_that_rank_by_measured_latency() -> None:
    router = _router("cost")
    aws, gcp = router.balancer.targets["aws"], router.balancer.targets["gcp"]
    aws.cost, gcp.cost = CostModel(0.1, 0.09), CostModel(0.5, 0.09)
    router.balancer.refresh_policy()
    assert router.balancer.candidates()[0] is aws  # cheapest
    for _ in range(50):
        aws.stats.observe(0.2, 10)  # well over the 50 ms SLO
    router.sampler.sample()
    assert aws.recent_p95_s is not None and aws.recent_p95_s > 0.05
    assert router.balancer.candidates()[0] is gcp


def test_admin_checks_the_bearer_token() -> None:
    assert check_token(b"s3cret", b"Bearer s3cret")
    assert not check_token(b"s3cret", b"Bearer wrong")
    assert not check_token(b"s3cret", b"s3cret") and not check_token(b"s3cret", None)
    assert not check_token(None, b"Bearer ")  # a router without a token refuses every admin call


def test_admin_and_metrics_do_not_import_the_data_plane() -> None:
    code = ("import sys, orchestrator.router.admin, orchestrator.router.metrics, orchestrator.router.report;"
            "assert 'orchestrator.router.app' not in sys.modules, 'admin imports app'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
