"""KindFleet's view of a config: which clouds, in which order, priced how (no clusters needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import parse_config
from orchestrator.drills.kind_fleet import KindFleet
from orchestrator.errors import CapabilityError, ConfigError


def cluster(name: str, port: int, kind: bool = True) -> dict:
    section = {"context": f"kind-mco-{name}", "endpoint": f"http://127.0.0.1:{port}"}
    if kind:
        section["kind_cluster"] = f"mco-{name}"
    return section


def test_targets_follow_priority_then_config_order_with_catalog_prices() -> None:
    cfg = parse_config({"clouds": {
        "aws": {"provider": "aws", "cluster": cluster("aws", 31001), "priority": 1},
        "gcp": {"provider": "gcp", "cluster": cluster("gcp", 31002), "priority": 0, "pricing_key": "gcp/europe-west1"},
        "azure": {"provider": "azure", "cluster": cluster("azure", 31003), "priority": 1},
        "spare": {"provider": "aws"},  # no cluster: not part of the fleet
    }})
    fleet = KindFleet(cfg, Path("mco.yaml"))
    assert fleet.clouds == ("aws", "gcp", "azure")
    targets = fleet.targets()
    assert [(t.cloud, t.priority) for t in targets] == [("gcp", 0), ("aws", 1), ("azure", 2)]
    assert {t.cloud: t.pricing_key for t in targets} == {"gcp": "gcp/europe-west1", "aws": "aws/us-east-1",
                                                         "azure": "azure/eastus"}
    assert targets[0].url == "http://127.0.0.1:31002"


def test_a_fleet_needs_two_reachable_clusters() -> None:
    cfg = parse_config({"clouds": {"aws": {"provider": "aws", "cluster": cluster("aws", 31001)}}})
    with pytest.raises(ConfigError, match="fewer than two clusters"):
        KindFleet(cfg, Path("mco.yaml"))


def test_latency_faults_need_a_kind_node() -> None:
    cfg = parse_config({"clouds": {
        "aws": {"provider": "aws", "cluster": cluster("aws", 31001, kind=False)},
        "gcp": {"provider": "gcp", "cluster": cluster("gcp", 31002)},
    }})
    fleet = KindFleet(cfg, Path("mco.yaml"))
    with pytest.raises(CapabilityError, match="not a kind cluster"):
        fleet.slow("aws")
    with pytest.raises(ConfigError, match="has no cluster"):
        fleet.outage("azure")


def test_the_drills_through_the_entry_need_routers_in_the_clusters() -> None:
    clouds = {c: {"provider": c, "cluster": cluster(c, 31001 + i), "router_urls": [f"http://127.0.0.1:{31011 + i}"]}
              for i, c in enumerate(("aws", "gcp"))}
    fleet = KindFleet(parse_config({"clouds": clouds}), Path("mco.yaml"))
    with pytest.raises(ConfigError) as caught:
        fleet.entry_routers()
    assert "in_cluster" in (caught.value.hint or "")
