"""The locality policy, cross-cloud egress, the router's own probes, and refused plain-HTTP targets."""

from __future__ import annotations

import json

import pytest

from orchestrator.config import RouterConfig, RouterTargetConfig, parse_config
from orchestrator.errors import ConfigError
from orchestrator.router.report import status_report
from orchestrator.router.state import Router

PRICES = {"aws": "aws/us-east-1", "gcp": "gcp/us-central1", "azure": "azure/eastus"}


def _router(cloud: str | None = "aws", spill: str = "priority", priorities: dict[str, int] | None = None) -> Router:
    prio = priorities or {"gcp": 0, "azure": 1, "aws": 2}  # locality must beat priority
    targets = [RouterTargetConfig(name=n, url=f"http://127.0.0.1:{9001 + i}", priority=prio[n], pricing_key=k)
               for i, (n, k) in enumerate(PRICES.items())]
    return Router(RouterConfig(policy="locality", cloud=cloud, spill=spill, name="r-aws-1", targets=targets))


def _order(router: Router) -> list[str]:
    return [t.name for t in router.balancer.candidates()]


def test_locality_serves_from_the_own_cloud_then_spills_in_priority_order() -> None:
    router = _router()
    assert _order(router) == ["aws", "gcp", "azure"]
    sink = router.balancer.sink("active")
    sink.set_status("aws", False)
    assert _order(router) == ["gcp", "azure"]
    sink.set_status("gcp", False)
    assert _order(router) == ["azure"]
    sink.set_status("aws", True)
    assert _order(router)[0] == "aws"


def test_locality_spills_by_cost_or_latency_when_asked() -> None:
    by_cost = _router(spill="cost", priorities={"aws": 0, "gcp": 1, "azure": 2})
    by_cost.balancer.sink("active").set_status("aws", False)
    # azure/eastus is cheaper per vCPU-hour than gcp/us-central1 in the catalog
    assert _order(by_cost) == ["azure", "gcp"]

    by_latency = _router(spill="latency", priorities={"aws": 0, "gcp": 1, "azure": 2})
    by_latency.balancer.targets["gcp"].stats.observe(0.050, 10)
    by_latency.balancer.targets["azure"].stats.observe(0.005, 10)
    by_latency.balancer.sink("active").set_status("aws", False)
    by_latency.sampler.sample()  # the sampler refreshes policies that rank by measured data
    assert _order(by_latency) == ["azure", "gcp"]


def test_a_router_without_a_cloud_ranks_every_target_as_remote() -> None:
    router = _router(cloud=None)
    assert _order(router) == ["gcp", "azure", "aws"]  # plain priority


def test_cross_cloud_bytes_count_egress_at_the_source_clouds_price() -> None:
    router = _router()
    aws, gcp = router.balancer.targets["aws"], router.balancer.targets["gcp"]
    for t in (aws, gcp):
        t.stats.bytes_in += 1_000_000_000   # requests sent (1 GB)
        t.stats.observe(0.01, 2_000_000_000)  # answers received (2 GB)
    rows = {r["name"]: r for r in status_report(router)["targets"]}
    assert rows["aws"]["local"] and rows["aws"]["egress_usd"] == 0.0 and rows["aws"]["egress_gb"] == 2.0
    # gcp's answers leave gcp (0.12/GB), the requests leave aws (0.09/GB)
    assert rows["gcp"]["egress_usd"] == pytest.approx(2 * 0.12 + 1 * 0.09)
    assert rows["gcp"]["egress_gb"] == 3.0 and not rows["gcp"]["local"]


def test_readyz_means_i_can_route_somewhere_and_readyz_local_means_my_cloud_can() -> None:
    router = _router()
    sink = router.balancer.sink("active")

    def probe(path: str) -> tuple[int, dict]:
        status, _headers, body = router.probe(path)
        return status, json.loads(body)

    assert probe("/readyz")[0] == 200 and probe("/readyz/local")[0] == 200
    sink.set_status("aws", False)  # the router is up, its own model is down
    status, body = probe("/readyz/local")
    assert status == 503 and "cloud" in body["error"] and body["router"] == "r-aws-1"
    assert probe("/readyz") == (200, probe("/readyz")[1]) and probe("/readyz")[1]["healthy_targets"] == ["gcp", "azure"]
    sink.set_status("gcp", False)
    sink.set_status("azure", False)
    status, headers, _ = router.probe("/readyz")
    assert status == 503 and (b"retry-after", b"1") in headers
    assert router.probe("/healthz")[0] == 200  # alive, just not ready


@pytest.mark.parametrize("url", ["http://10.0.0.5:8080", "http://model.mco.svc:8080", "http://example.com"])
def test_a_plain_http_remote_target_is_refused_unless_allowed(url: str) -> None:
    doc = {"router": {"targets": [{"name": "gcp", "url": url}]}}
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert "allow_insecure_http" in str(err.value) and "router.targets" in str(err.value)
    doc["router"]["targets"][0]["allow_insecure_http"] = True
    assert parse_config(doc).router.targets[0].url == url


@pytest.mark.parametrize("url", ["http://127.0.0.1:9001", "http://localhost:9001", "http://[::1]:9001",
                                 "https://gcp.example.com"])
def test_loopback_and_https_targets_need_nothing(url: str) -> None:
    assert parse_config({"router": {"targets": [{"name": "gcp", "url": url}]}}).router.targets[0].url == url
