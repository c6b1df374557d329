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


def test_drill_list_names_silent_bad_model() -> None:
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "drill", "list", "--output", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "silent-bad-model" in proc.stdout
