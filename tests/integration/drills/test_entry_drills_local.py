"""The drills through the global entry on the local runtime: three model servers, a router per
cloud in front of each (locality), HAProxy in front of the routers; real processes killed.

Bounded: 100 requests/s for about fifteen seconds per drill, loopback only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.drills.local_entry import LocalEntryFleet, local_entry_fleet
from orchestrator.drills.runner import DrillSpec, DrillTiming, run_drill
from orchestrator.local.runtime import LocalRuntime
from orchestrator.model.bundle import Bundle

pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=1)]  # timing on a shared 2-core machine

TIMING = DrillTiming(baseline_s=2.0, outage_s=3.0, tail_s=1.0)


@pytest.fixture
def entry_fleet(local_runtime: LocalRuntime, tmp_path: Path) -> Iterator[LocalEntryFleet]:
    with local_entry_fleet(local_runtime, tmp_path / "entry") as fleet:
        yield fleet


def drill(fleet: LocalEntryFleet, bundle: Bundle, tmp_path: Path, scenario: str, cloud: str) -> dict[str, Any]:
    spec = DrillSpec(scenario=scenario, cloud=cloud, rate=100, timing=TIMING, runs_dir=tmp_path / "runs")
    result = run_drill(fleet, spec, bundle=bundle)
    for name in ("report.json", "timeline.png", "timeline.html", "events.json"):
        assert (Path(result["run_dir"]) / name).stat().st_size > 0, name
    return result


def test_each_router_is_served_by_its_own_cloud_through_the_entry(entry_fleet: LocalEntryFleet) -> None:
    with httpx.Client(timeout=5) as client:
        pairs = set()
        for _ in range(30):
            resp = client.post(f"{entry_fleet.entry_url()}/v1/predict", json={"instances": [[0.0] * 64]})
            assert resp.status_code == 200
            pairs.add((resp.headers["x-mco-router"], resp.headers["x-mco-cloud"]))
    assert pairs == {(f"router-{c}", c) for c in ("aws", "gcp", "azure")}


def test_region_loss_through_the_entry_costs_no_client_error_and_fails_back(
        entry_fleet: LocalEntryFleet, digits_bundle: Bundle, tmp_path: Path) -> None:
    result = drill(entry_fleet, digits_bundle, tmp_path, "region-loss", "aws")
    assert result["passed"], result["missed"]
    assert result["client_errors"] == 0 and result["requests"] > 500
    assert result["rto_seconds"] is not None and result["rto_seconds"] <= 5.0
    assert result["failback_seconds"] is not None
    doc = json.loads((Path(result["run_dir"]) / "report.json").read_text())
    fault = next(m for m in doc["markers"] if m["kind"] == "fault")
    assert "router of aws" in fault["detail"]["action"] and "model server" in fault["detail"]["action"]
    # the events come from the routers that stayed, each naming itself
    events = json.loads((Path(result["run_dir"]) / "events.json").read_text())
    assert {e.get("router") for e in events if e.get("kind") == "health_down"} >= {"router-gcp", "router-azure"}


def test_router_crash_through_the_entry_costs_no_client_error(
        entry_fleet: LocalEntryFleet, digits_bundle: Bundle, tmp_path: Path) -> None:
    result = drill(entry_fleet, digits_bundle, tmp_path, "router-crash", "gcp")
    assert result["passed"], result["missed"]
    assert result["client_errors"] == 0 and result["requests"] > 800
    served = result["measures"]["served_by"]
    assert served.get("gcp", 0) > 0 and served.get("aws", 0) > 0 and served.get("azure", 0) > 0
