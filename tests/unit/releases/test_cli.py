"""The deploy commands' answers that need no cluster: refusals, empty history, render output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def _mco(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def _config(tmp_path: Path, **extra: Any) -> Path:
    cfg = {"project": {"name": "t", "state_dir": "state"},
           "clouds": {"aws": {"provider": "aws", "cluster": {"context": "kind-mco-aws", "kind_cluster": "mco-aws",
                                                             "node_port": 30080, "endpoint": "http://127.0.0.1:9"}},
                      "gcp": {"provider": "gcp"}}, **extra}
    path = tmp_path / "mco.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_model_failing_the_gate_is_refused_before_anything_happens(tmp_path: Path, digits_bundle: Any) -> None:
    cfg = _config(tmp_path, gate={"require": ["macro_f1>=0.999"]})
    proc = _mco("deploy", str(digits_bundle.path), "--config", str(cfg), "-o", "json", cwd=tmp_path)
    assert proc.returncode == 1
    err = json.loads(proc.stdout)
    assert err["kind"] == "GateError" and "macro_f1 is 0.9" in err["error"] and "--force" in err["hint"]
    assert not (tmp_path / "state" / "releases.db").exists()


def test_require_on_the_command_line_adds_to_the_config(tmp_path: Path, digits_bundle: Any) -> None:
    cfg = _config(tmp_path)
    proc = _mco("deploy", str(digits_bundle.path), "--require", "accuracy>=1.01", "--config", str(cfg), "-o", "json",
                cwd=tmp_path)
    assert json.loads(proc.stdout)["kind"] == "GateError"


def test_clouds_without_a_cluster_are_named(tmp_path: Path, digits_bundle: Any) -> None:
    cfg = _config(tmp_path)
    proc = _mco("deploy", str(digits_bundle.path), "--clouds", "gcp", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 2 and "cloud 'gcp' has no cluster configured" in proc.stderr
    proc = _mco("deploy", str(digits_bundle.path), "--clouds", "azure", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 2 and "configured clouds: aws, gcp" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_rollback_without_history_says_deploy_first(tmp_path: Path) -> None:
    proc = _mco("rollback", "--config", str(_config(tmp_path)), "-o", "json", cwd=tmp_path)
    assert proc.returncode == 1 and json.loads(proc.stdout)["kind"] == "ReleaseError"
    assert "deploy first" in json.loads(proc.stdout)["hint"]


def test_history_starts_empty(tmp_path: Path) -> None:
    proc = _mco("history", "--config", str(_config(tmp_path)), "-o", "json", cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"service": "t", "state": {"backend": "sqlite"}, "releases": []}


def test_render_prints_yaml_objects_for_the_cloud(tmp_path: Path, digits_bundle: Any) -> None:
    cfg = _config(tmp_path)
    proc = _mco("render", "--cloud", "aws", "--model", str(digits_bundle.path), "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    objs = list(yaml.safe_load_all(proc.stdout))
    assert objs[0]["kind"] == "Namespace" and objs[-1]["kind"] == "Deployment"
    svc = next(o for o in objs if o["kind"] == "Service")
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["nodePort"] == 30080  # kind overlay
    assert objs[-1]["metadata"]["annotations"]["mco.dev/model-digest"] == digits_bundle.digest
    assert "placeholder" in proc.stderr
    proc = _mco("render", "--cloud", "gcp", "--config", str(cfg), "-o", "json", cwd=tmp_path)
    data = json.loads(proc.stdout)
    assert data["overlay"] == "gcp" and len(data["objects"]) == 7
