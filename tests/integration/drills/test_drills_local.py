"""Every drill scenario on the embedded local runtime: real servers, a real router, real faults.

Bounded: 100 requests/s for about ten seconds per drill, loopback only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.drills.fleet import LocalFleet
from orchestrator.drills.runner import DrillSpec, DrillTiming, run_drill
from orchestrator.model.bundle import Bundle

# Timing on a shared 2-core machine: one rerun separates load noise from a real failure.
pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=1)]

TIMING = DrillTiming(baseline_s=2.0, outage_s=3.0, tail_s=1.0)


def drill(fleet: LocalFleet, bundle: Bundle, tmp_path: Path, scenario: str, **kw: object) -> dict:
    spec = DrillSpec(scenario=scenario, rate=100, timing=TIMING, runs_dir=tmp_path / "runs", **kw)  # type: ignore[arg-type]
    return run_drill(fleet, spec, bundle=bundle)


def assert_report_files(result: dict) -> None:
    run_dir = Path(result["run_dir"])
    assert run_dir.parent.name == "runs" and run_dir.name.endswith("-" + result["scenario"])
    for name in ("report.json", "timeline.png", "timeline.html", "requests.csv", "events.json"):
        assert (run_dir / name).stat().st_size > 0, name
    doc = json.loads((run_dir / "report.json").read_text())
    assert doc["passed"] == result["passed"] and doc["series"]["t"]


def test_cloud_outage_fails_over_with_zero_client_errors_and_fails_back(
        local_fleet: LocalFleet, digits_bundle: Bundle, tmp_path: Path) -> None:
    result = drill(local_fleet, digits_bundle, tmp_path, "cloud-outage", cloud="aws")
    assert result["passed"], result["missed"]
    assert result["client_errors"] == 0 and result["requests"] > 550
    assert 0 <= result["rto_seconds"] <= 2.0
    assert result["failback_seconds"] is not None and result["failback_seconds"] <= 15
    kinds = [m["kind"] for m in json.loads((Path(result["run_dir"]) / "report.json").read_text())["markers"]]
    for kind in ("fault", "repair", "failback"):
        assert kind in kinds, kinds
    assert any(k in kinds for k in ("ejection", "health_down"))
    assert kinds.index("fault") < kinds.index("repair") < len(kinds) - 1 - kinds[::-1].index("failback")
    served = result["measures"]["served_by"]
    assert served["aws"] > 0 and served["gcp"] > 0  # traffic really moved, and came back
    share = result["measures"]["share_after_fault"]
    assert "aws" not in share and share["gcp"] >= 0.9  # the next cloud by priority took the traffic
    rows = {r["name"]: r for r in result["clouds"]}
    assert set(rows) == {"aws", "gcp", "azure"} and rows["aws"]["cost_per_hour"] > 0
    assert_report_files(result)


def test_an_impossible_objective_fails_and_is_named(local_fleet: LocalFleet, digits_bundle: Bundle,
                                                    tmp_path: Path) -> None:
    result = drill(local_fleet, digits_bundle, tmp_path, "cloud-outage", cloud="gcp",
                   objectives={"max_rto_s": 0.001, "max_failback_s": 60})
    assert result["passed"] is False
    missed = [c["objective"] for c in result["checks"] if not c["passed"]]
    assert missed[0] == "rto" and "failback" not in missed
    assert result["missed"][0].startswith("rto: recovery time") and "0.001 s" in result["missed"][0]
    assert_report_files(result)


def test_pod_crash_rides_through(local_fleet: LocalFleet, digits_bundle: Bundle, tmp_path: Path) -> None:
    result = drill(local_fleet, digits_bundle, tmp_path, "pod-crash")
    assert result["cloud"] == "aws"  # the busiest cloud under the failover policy
    assert result["passed"], result["missed"]
    assert result["client_errors"] == 0 and result["failback_seconds"] is not None


@pytest.mark.parametrize(("policy", "moves"), [("latency", True), ("failover", False)])
def test_latency_moves_traffic_only_under_latency_aware_policies(
        local_fleet: LocalFleet, digits_bundle: Bundle, tmp_path: Path, policy: str, moves: bool) -> None:
    result = drill(local_fleet, digits_bundle, tmp_path, "latency", policy=policy)
    assert result["passed"], result["missed"]
    assert result["measures"]["traffic_moved"] is moves
    slow_cloud_share = result["measures"]["share_after_fault"].get(result["cloud"], 0.0)
    assert (slow_cloud_share <= 0.2) if moves else (slow_cloud_share > 0.8)


def test_bad_release_rolls_back_and_no_client_sees_it(local_fleet: LocalFleet, digits_bundle: Bundle,
                                                      tmp_path: Path) -> None:
    result = drill(local_fleet, digits_bundle, tmp_path, "bad-release")
    assert result["passed"], result["missed"]
    checks = {c["objective"]: c for c in result["checks"]}
    assert checks["rolled_back"]["passed"] and checks["bad_release_seen"]["value"] == 0
    assert all(r["rolled_back"] and not r["ok"] for r in result["facts"]["rollout"].values())
    assert set(result["facts"]["serving_after"].values()) == {digits_bundle.digest}


def test_storage_outage_deploys_elsewhere_and_names_the_failed_cloud(
        local_fleet: LocalFleet, digits_bundle: Bundle, tmp_path: Path) -> None:
    result = drill(local_fleet, digits_bundle, tmp_path, "storage-outage", cloud="gcp")
    assert result["passed"], result["missed"]
    facts = result["facts"]
    assert facts["serving_after"]["gcp"] == digits_bundle.digest
    assert facts["serving_after"]["aws"] == facts["serving_after"]["azure"] == facts["new_digest"]
    assert "artifact store of gcp" in facts["rollout"]["gcp"]["reason"]
    assert facts["half_written"] == [] and result["client_errors"] == 0


def _mco(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mco")
    env = {**os.environ, "COLUMNS": "150"}
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_cli_drill_with_impossible_rto_exits_1_naming_it(digits_bundle: Bundle, tmp_path: Path) -> None:
    proc = _mco("drill", "run", "cloud-outage", "--cloud", "aws", "--runtime", "local", "--max-rto", "0.001",
                "--bundle", str(digits_bundle.path), "--baseline", "2", "--outage", "3", "--output", "json",
                cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert {"scenario", "passed", "rto_seconds", "client_errors", "requests", "failback_seconds", "report"} <= set(out)
    assert out["passed"] is False and out["scenario"] == "cloud-outage"
    assert "rto" in proc.stderr and "0.001" in proc.stderr
    assert (tmp_path / out["report"]).is_file()
    assert not list((tmp_path / ".mco").rglob("*.pid"))  # every model server was stopped


def test_cli_rejects_unknown_scenario_and_policy(tmp_path: Path) -> None:
    proc = _mco("drill", "run", "meteor-strike", "--runtime", "local", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "unknown drill scenario 'meteor-strike'" in proc.stderr
    assert "cloud-outage" in proc.stderr and "Traceback" not in proc.stderr
    proc = _mco("drill", "run", "latency", "--runtime", "local", "--policy", "random", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "unknown router policy" in proc.stderr


def test_demo_local_passes_in_under_a_minute(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = _mco("demo", "--runtime", "local", "--output", "json", cwd=tmp_path, timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = json.loads(proc.stdout)
    assert out["passed"] is True and out["runtime"] == "local" and out["client_errors"] == 0
    assert [s["step"].split(" ")[0] for s in out["steps"]] == ["train", "evaluate", "bring", "start", "deploy"]
    # the waves release: stopped at the first wave, the failing metric named, no client error
    waves = out["waves"]
    assert waves["passed"] is True and waves["client_errors"] == 0, waves["missed"]
    stopped = waves["rollout"]["stopped_at"]
    assert stopped["wave"] == 1 and stopped["metric"] == "live_macro_f1" and "live_macro_f1 is" in stopped["reason"]
    assert len(waves["rollout"]["never_touched"]) == 2 and (tmp_path / waves["report"]).is_file()
    assert {r["name"] for r in out["clouds"]} == {"aws", "gcp", "azure"}
    assert all(r["cost_per_hour"] for r in out["clouds"])
    assert (tmp_path / out["report"]).is_file()
    assert elapsed < 60, elapsed
