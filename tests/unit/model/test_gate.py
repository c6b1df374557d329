from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.errors import ConfigError
from orchestrator.model.gate import check_gate, parse_requirement

MCO = [sys.executable, "-m", "orchestrator.cli.main"]


def test_parse_requirements():
    req = parse_requirement(" macro_f1 >= 0.95 ")
    assert (req.metric, req.op, req.threshold) == ("macro_f1", ">=", 0.95)
    assert parse_requirement("log_loss<1e-1").threshold == pytest.approx(0.1)
    for bad in ("macro_f1", "macro_f1 => 0.9", ">=0.9", "macro_f1>=high"):
        with pytest.raises(ConfigError):
            parse_requirement(bad)


def test_gate_names_the_failing_metric(digits_bundle):
    report = digits_bundle.card["evaluation"]["report"]
    f1 = report["macro"]["f1"]
    result = check_gate(report, [parse_requirement(f"macro_f1>={f1 + 0.001}"), parse_requirement("accuracy>=0.5")])
    assert not result.passed
    assert [c["metric"] for c in result.failures] == ["macro_f1"]
    assert "macro_f1" in result.summary() and f"{f1:.4f}" in result.summary()
    assert check_gate(report, [parse_requirement(f"macro_f1>={f1 - 0.001}")]).passed


def test_unknown_metric_is_a_config_error(digits_bundle):
    with pytest.raises(ConfigError, match="not in the evaluation report"):
        check_gate(digits_bundle.card["evaluation"]["report"], [parse_requirement("macro_f2>=0.5")])


def test_gate_cli_exit_codes(digits_bundle):
    f1 = digits_bundle.card["evaluation"]["report"]["macro"]["f1"]
    fail = subprocess.run([*MCO, "model", "gate", str(digits_bundle.path), "--require", f"macro_f1>={f1 + 0.01}"],
                          capture_output=True, text=True)
    assert fail.returncode == 1
    assert "macro_f1" in fail.stdout and "FAIL" in fail.stdout
    ok = subprocess.run([*MCO, "model", "gate", str(digits_bundle.path), "--require", "macro_f1>=0.9",
                         "--require", "min_class_recall>=0.8", "--output", "json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert '"passed": true' in ok.stdout


def test_gate_reads_requirements_from_config(digits_bundle, tmp_path):
    cfg = tmp_path / "mco.yaml"
    cfg.write_text('gate:\n  require: ["macro_f1>=0.999"]\n')
    proc = subprocess.run([*MCO, "model", "gate", str(digits_bundle.path), "--config", str(cfg)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "macro_f1" in proc.stdout
    cfg.write_text('gate:\n  require: ["macro_f1 is great"]\n')
    proc = subprocess.run([*MCO, "model", "gate", str(digits_bundle.path), "--config", str(cfg)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "cannot read gate requirement" in proc.stderr and "Traceback" not in proc.stderr
