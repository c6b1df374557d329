"""The silent-bad-model drill on the local runtime: a model that serves but is wrong, deployed
in waves under labelled traffic, stops at the first cloud."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.drills.fleet import LocalFleet
from orchestrator.drills.runner import DrillSpec, DrillTiming, run_drill
from orchestrator.model.bundle import Bundle

pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=1)]


@pytest.mark.timeout(400)
def test_silent_bad_model_stops_at_the_first_wave_and_names_the_metric(local_fleet: LocalFleet,
                                                                       digits_bundle: Bundle, tmp_path: Path) -> None:
    spec = DrillSpec(scenario="silent-bad-model", rate=40, timing=DrillTiming(baseline_s=2.0, tail_s=1.0),
                     runs_dir=tmp_path / "runs")
    result = run_drill(local_fleet, spec, bundle=digits_bundle)
    assert result["passed"], result["missed"]
    checks = {c["objective"]: c for c in result["checks"]}
    for name in ("waves_stop_at_first_cloud", "first_cloud_rolled_back", "others_never_served_it",
                 "bad_answers_within_first_step", "abort_names_the_metric"):
        assert checks[name]["passed"], checks[name]
    waves = result["facts"]["waves"]
    assert waves["abort"]["check"]["metric"] == "live_macro_f1" and waves["abort"]["check"]["value"] < 0.3
    assert len(waves["never_touched"]) == 2
    assert result["facts"]["bad_model_card_macro_f1"] > 0.9  # its own evaluation hid the bug
    assert result["client_errors"] == 0
    doc = json.loads((Path(result["run_dir"]) / "report.json").read_text())
    assert "rollback" in [m["kind"] for m in doc["markers"]]
    assert_report_shows_where_it_stopped(result)


def assert_report_shows_where_it_stopped(result: dict) -> None:
    """The report (JSON, HTML, PNG) says at which wave and step the rollout stopped and why."""
    waves = result["facts"]["waves"]
    stopped = result["rollout"]["stopped_at"]
    first = waves["plan"]["waves"][0]
    assert stopped["wave"] == 1 and stopped["clouds"] == first and stopped["metric"] == "live_macro_f1"
    assert stopped["step"] == waves["abort"]["step"] and stopped["value"] == waves["abort"]["check"]["value"]
    assert result["rollout"]["never_touched"] == waves["never_touched"]
    assert result["rollout"]["waves"][0]["steps"][-1]["verdict"] == "failed"
    run_dir = Path(result["run_dir"])
    page = (run_dir / "timeline.html").read_text()
    assert "Rollout in waves" in page and f"stopped at wave 1 ({', '.join(first)}, {stopped['step']} % step)" in page
    assert "live_macro_f1 is" in page
    doc = json.loads((run_dir / "report.json").read_text())
    assert doc["rollout"] == result["rollout"]
    steps = [m for m in doc["markers"] if m["kind"].endswith("% step")]
    assert steps and steps[0]["target"] == ", ".join(first)
    assert (run_dir / "timeline.png").stat().st_size > 10_000


def test_drill_list_names_silent_bad_model() -> None:
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "drill", "list", "--output", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "silent-bad-model" in proc.stdout
