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
    waves = out["waves"]  # after cloud-outage: a silently bad model stopped at its first wave
    assert waves["passed"] and waves["client_errors"] == 0, waves["missed"]
    assert waves["rollout"]["stopped_at"]["wave"] == 1 and waves["rollout"]["stopped_at"]["metric"] == "live_macro_f1"
    assert Path(waves["files"]["html"]).is_file()
    assert time.monotonic() - started < 900


@pytest.mark.timeout(900)
def test_silent_bad_model_on_kind_stops_at_the_first_wave(drill_config: tuple[Path, Any], kind_drill_fleet: Any,
                                                          digits_bundle: Any, tmp_path: Path) -> None:
    """`mco drill run silent-bad-model --runtime kind`: the permuted-label model goes out with
    `mco deploy --strategy waves` on the clusters; the first wave's cloud rolls back by itself,
    the others are never touched, and the report says where the rollout stopped and why."""
    from tests.integration.drills.test_silent_bad_model import assert_report_shows_where_it_stopped

    path, _ctx = drill_config
    started = time.monotonic()
    # --bundle: the release the fixture deployed, so the drill's own deploy of it is a no-op
    proc = subprocess.run([str(Path(sys.executable).with_name("mco")), "drill", "run", "silent-bad-model",
                           "--config", str(path), "--runtime", "kind", "--rate", "60", "--bundle",
                           str(digits_bundle.path), "--runs-dir", str(tmp_path / "runs"), "--output", "json"],
                          capture_output=True, text=True, timeout=840, env={**os.environ})
    out = json.loads(proc.stdout)
    assert proc.returncode == 0 and out["passed"], (out.get("missed"), proc.stderr[-3000:])
    assert out["runtime"] == "kind" and out["client_errors"] == 0
    stopped = out["rollout"]["stopped_at"]  # --output json says where and why
    assert stopped["wave"] == 1 and stopped["metric"] == "live_macro_f1" and stopped["value"] < 0.3
    assert "live_macro_f1 is" in stopped["reason"] and len(out["rollout"]["never_touched"]) == 2
    report = json.loads((Path(out["run_dir"]) / "report.json").read_text())
    assert_report_shows_where_it_stopped(report)
    # the history holds the stopped release: its first cloud rolled back, the others never touched
    history = json.loads(subprocess.run([str(Path(sys.executable).with_name("mco")), "history", "--config",
                                         str(path), "--output", "json"], capture_output=True, text=True,
                                        timeout=120).stdout)["releases"]
    latest = history[0]
    assert latest["status"] == "rolled_back" and latest["waves"]["abort"]["wave"] == 1
    first = stopped["clouds"][0]
    assert latest["clouds"][first]["status"] == "rolled_back" and latest["clouds"][first]["reason"] == "AnalysisFailed"
    assert {latest["clouds"][c]["status"] for c in out["rollout"]["never_touched"]} == {"skipped"}
    after = report["facts"]["serving_after"]
    assert after == report["facts"]["serving_before"] and set(after.values()) == {digits_bundle.digest}
    assert not list(path.parent.glob(".*waves-drill*"))  # the drill's config copy is gone
    print(f"silent-bad-model on kind: {time.monotonic() - started:.0f} s")
