"""Every drill scenario against the three local kind clusters: real nodes stopped, real pods killed.

Bounded: 100 requests/s through the router on loopback; each drill waits at most a few
minutes for Kubernetes to bring a cluster back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.drills.runner import DrillSpec, DrillTiming, run_drill

# Timing on a shared 2-core machine: one rerun separates load noise from a real failure.
pytestmark = [pytest.mark.docker, pytest.mark.cluster, pytest.mark.slow, pytest.mark.flaky(reruns=1)]

TIMING = DrillTiming(baseline_s=4.0, outage_s=6.0, tail_s=2.0)


def drill(fleet: Any, bundle: Any, tmp_path: Path, scenario: str, **kw: Any) -> dict[str, Any]:
    # The router as `mco drill run --config mco.local.yaml` runs it: with the stand-ins' timeouts.
    spec = DrillSpec(scenario=scenario, rate=100, timing=TIMING, runs_dir=tmp_path / "runs", router=fleet.cfg.router,
                     **kw)
    result = run_drill(fleet, spec, bundle=bundle)
    for name in ("report.json", "timeline.png", "timeline.html"):
        assert (Path(result["run_dir"]) / name).stat().st_size > 0
    return result


def test_cloud_outage_docker_stop_of_a_node(kind_drill_fleet: Any, digits_bundle: Any, tmp_path: Path) -> None:
    result = drill(kind_drill_fleet, digits_bundle, tmp_path, "cloud-outage", cloud="aws")
    assert result["passed"], result["missed"]
    assert result["client_errors"] == 0
    assert "docker stop mco-aws-control-plane" in json.dumps(
        json.loads((Path(result["run_dir"]) / "report.json").read_text())["markers"])
    assert result["measures"]["served_by"].get("gcp", 0) > 0


def test_pod_crash(kind_drill_fleet: Any, digits_bundle: Any, tmp_path: Path) -> None:
    result = drill(kind_drill_fleet, digits_bundle, tmp_path, "pod-crash", cloud="aws")
    assert result["passed"], result["missed"]
    assert result["client_errors"] == 0


@pytest.mark.parametrize(("policy", "moves"), [("latency", True), ("failover", False)])
def test_latency(kind_drill_fleet: Any, digits_bundle: Any, tmp_path: Path, policy: str, moves: bool) -> None:
    result = drill(kind_drill_fleet, digits_bundle, tmp_path, "latency", policy=policy)
    assert result["passed"], result["missed"]
    assert result["measures"]["traffic_moved"] is moves


def test_bad_release(kind_drill_fleet: Any, digits_bundle: Any, tmp_path: Path) -> None:
    result = drill(kind_drill_fleet, digits_bundle, tmp_path, "bad-release")
    assert result["passed"], result["missed"]
    assert all(r["status"] == "rolled_back" for r in result["facts"]["rollout"].values())


def test_storage_outage(kind_drill_fleet: Any, digits_bundle: Any, tmp_path: Path) -> None:
    result = drill(kind_drill_fleet, digits_bundle, tmp_path, "storage-outage", cloud="azure")
    # While aws and gcp roll out, their old pods drain (preStop) and clients see no error.
    assert result["passed"], (result["missed"], result["measures"]["error_samples"])
    assert "push failed" in result["facts"]["rollout"]["azure"]["reason"]


def test_cli_drill_on_kind_prints_the_summary(drill_config: tuple[Path, Any], kind_drill_fleet: Any,
                                              tmp_path: Path) -> None:
    path, _ctx = drill_config
    proc = subprocess.run([str(Path(sys.executable).with_name("mco")), "drill", "run", "cloud-outage", "--cloud",
                           "gcp", "--config", str(path), "--runtime", "kind", "--rate", "100", "--runs-dir",
                           str(tmp_path / "runs"), "--output", "json"],
                          capture_output=True, text=True, timeout=900, env={**os.environ})
    out = json.loads(proc.stdout)
    assert {"scenario", "passed", "rto_seconds", "client_errors", "requests", "failback_seconds", "report"} <= set(out)
    assert proc.returncode == 0 and out["passed"], proc.stderr
    assert out["runtime"] == "kind"


def test_demo_on_kind(drill_config: tuple[Path, Any], kind_drill_fleet: Any, tmp_path: Path) -> None:
    from orchestrator.local.registries import RegistryStandIn

    shared, ctx = drill_config
    # The demo runs `mco local up`, which writes the registries it starts into the config it is
    # given: a copy, so the other drills (in any order) never see registries stopped below.
    path = tmp_path / "mco.yaml"
    shutil.copyfile(shared, path)
    registries = RegistryStandIn()
    registries_were_up = all(row["state"] == "running" for row in registries.status(ctx))
    started = time.monotonic()
    try:
        proc = subprocess.run([str(Path(sys.executable).with_name("mco")), "demo", "--runtime", "kind", "--config",
                               str(path), "--runs-dir", str(tmp_path / "runs"), "--output", "json"],
                              capture_output=True, text=True, timeout=1200)
    finally:
        if not registries_were_up:  # the demo runs `mco local up`, which starts them
            registries.down(ctx)
    out = json.loads(proc.stdout)
    assert proc.returncode == 0 and out["passed"], proc.stderr + proc.stdout
    assert out["runtime"] == "kind" and out["client_errors"] == 0
    assert Path(out["files"]["png"]).is_file() and Path(out["files"]["html"]).is_file()
    assert time.monotonic() - started < 900
