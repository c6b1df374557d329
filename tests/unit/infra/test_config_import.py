"""``mco config import-pulumi``: stack outputs become the matching clouds section of mco.yaml."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import load_config
from tests.unit.infra.conftest import run_stack, stack_config

pytestmark = pytest.mark.timeout(120)
MCO = str(Path(sys.executable).parent / "mco")


def _mco(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # A wide terminal: rich would otherwise wrap messages mid-phrase.
    env = {**(env if env is not None else os.environ), "COLUMNS": "250"}
    return subprocess.run([MCO, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def _save(outputs: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(outputs))
    return path


def test_aws_outputs_merge_into_existing_config_and_keep_other_keys(tmp_path: Path) -> None:
    outputs = _save(run_stack("aws").outputs, tmp_path / "aws.json")
    config = tmp_path / "mco.yaml"
    config.write_text(yaml.safe_dump({
        "project": {"name": "digits"},
        "gate": {"require": ["macro_f1>=0.9"]},
        "clouds": {
            "aws": {"provider": "aws", "priority": 0, "storage": {"bucket": "old-bucket"}},
            "gcp": {"provider": "gcp", "priority": 1, "storage": {"bucket": "kept"}},
        },
    }))

    proc = _mco("config", "import-pulumi", "--from-json", str(outputs), "--config", str(config), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["written"] is True and summary["sections"]["aws"] == ["pricing_key", "provider", "registry", "storage"]

    cfg = load_config(config)
    aws = cfg.cloud("aws")
    assert aws.storage is not None and aws.storage.bucket == "mco-models-0123abcd"
    assert aws.storage.region == "us-east-1" and aws.storage.prefix == "mco"
    assert aws.registry is not None and aws.registry.auth == "ecr"
    assert aws.registry.url == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert aws.priority == 0 and aws.pricing_key == "aws/us-east-1"
    assert cfg.cloud("gcp").storage.bucket == "kept"  # type: ignore[union-attr]
    assert cfg.gate.require == ["macro_f1>=0.9"] and cfg.project.name == "digits"


def test_cluster_kubeconfig_goes_to_a_private_file_and_never_to_output(tmp_path: Path) -> None:
    cluster = {**stack_config("gcp")["mco-infra:cluster"], "enabled": True}
    outputs = run_stack("gcp", {"mco-infra:cluster": cluster}).outputs
    kubeconfig_text = outputs["kubeconfigs"]["gcp"]
    config = tmp_path / "mco.yaml"

    proc = _mco("config", "import-pulumi", "--from-json", str(_save(outputs, tmp_path / "gcp.json")),
                "--stack", "gcp", "--config", str(config), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert "certificate-authority-data" not in proc.stdout + proc.stderr

    cfg = load_config(config)
    cluster_cfg = cfg.cloud("gcp").cluster
    assert cluster_cfg is not None and cluster_cfg.context.startswith("gke_my-gcp-project_")
    assert cluster_cfg.kubeconfig is not None
    file = Path(cluster_cfg.kubeconfig)
    assert file.read_text() == kubeconfig_text
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert file.parent == tmp_path / ".mco" / "kube"


def test_hidden_secret_kubeconfig_is_a_note_not_a_failure(tmp_path: Path) -> None:
    cluster = {**stack_config("azure")["mco-infra:cluster"], "enabled": True}
    outputs = run_stack("azure", {"mco-infra:cluster": cluster}).outputs
    outputs["kubeconfigs"] = "[secret]"  # what `pulumi stack output --json` prints without --show-secrets
    proc = _mco("config", "import-pulumi", "--from-json", str(_save(outputs, tmp_path / "o.json")),
                "--config", str(tmp_path / "mco.yaml"), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["kubeconfigs"] == {}
    assert any("--show-secrets" in n for n in summary["notes"])
    cluster_cfg = load_config(tmp_path / "mco.yaml").cloud("azure").cluster
    assert cluster_cfg is not None and cluster_cfg.kubeconfig is None


def test_local_stack_outputs_reproduce_the_local_config(tmp_path: Path, kubeconfig_with_kind: Path) -> None:
    local = tmp_path / "mco.local.yaml"
    local.write_text(yaml.safe_dump({"clouds": {
        "gcp": {"provider": "gcp",
                "storage": {"bucket": "mco-gcp", "endpoint": "http://127.0.0.1:9023"},
                "registry": {"url": "127.0.0.1:5002", "insecure_http": True},
                "cluster": {"context": "kind-mco-gcp", "kind_cluster": "mco-gcp", "node_port": 30080,
                            "kubeconfig": str(kubeconfig_with_kind), "endpoint": "http://127.0.0.1:18082"}},
    }}))
    outputs = run_stack("local", {"mco-infra:mcoConfig": str(local), "mco-infra:deployment": None}).outputs
    imported = tmp_path / "mco.yaml"
    proc = _mco("config", "import-pulumi", "--from-json", str(_save(outputs, tmp_path / "local.json")),
                "--config", str(imported))
    assert proc.returncode == 0, proc.stderr
    assert load_config(imported).clouds == load_config(local).clouds


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    outputs = _save(run_stack("aws").outputs, tmp_path / "aws.json")
    config = tmp_path / "mco.yaml"
    proc = _mco("config", "import-pulumi", "--from-json", str(outputs), "--config", str(config), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "mco-models-0123abcd" in proc.stdout
    assert not config.exists()


@pytest.mark.parametrize("content,message", [
    ("not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"bucket": "x"}', "no 'clouds' output"),
    ('{"clouds": {"aws": {"provider": "ibm"}}}', "clouds.aws.provider"),
    ('{"clouds": {"aws": {"provider": "aws", "storage": {"bucket": "b", "endpoint": "ftp://x"}}}}',
     "clouds.aws.storage.endpoint"),
])
def test_bad_outputs_are_clear_errors_and_leave_the_config_alone(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "mco.yaml"
    config.write_text("project: {name: keep}\n")
    src = tmp_path / "o.json"
    src.write_text(content)
    proc = _mco("config", "import-pulumi", "--from-json", str(src), "--config", str(config))
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert config.read_text() == "project: {name: keep}\n"


def test_stack_without_the_pulumi_cli_says_how_to_proceed(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # nothing named pulumi here
    proc = _mco("config", "import-pulumi", "--stack", "aws", "--config", str(tmp_path / "mco.yaml"), env=env)
    assert proc.returncode == 2
    assert "pulumi CLI is not installed" in proc.stderr and "--from-json" in proc.stderr


def test_exactly_one_source_is_required(tmp_path: Path) -> None:
    proc = _mco("config", "import-pulumi", "--config", str(tmp_path / "mco.yaml"))
    assert proc.returncode == 2 and "exactly one of --stack" in proc.stderr
