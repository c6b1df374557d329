"""The real Pulumi engine on infra/, which `make setup` builds (`scripts/setup/60-pulumi.sh`).

These tests are skipped, with the reason, only when the engine is not installed in
.venv/bin (`MCO_BUILD_PULUMI=0`). They use a local file backend in a temporary
directory and never touch a cloud: the stacks below fail at preview before any
resource provider is needed, which is exactly what they check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
PULUMI = VENV_BIN / "pulumi"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not (PULUMI.exists() and (VENV_BIN / "pulumi-language-python").exists()),
                       reason="the Pulumi engine is not built (make setup builds it; bash scripts/setup/60-pulumi.sh alone)"),
]


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of infra/ logged in to a file backend under tmp_path."""
    work = tmp_path / "infra"
    shutil.copytree(ROOT / "infra", work, ignore=shutil.ignore_patterns("__pycache__"))
    text = (work / "Pulumi.yaml").read_text().replace("virtualenv: ../.venv", f"virtualenv: {VENV_BIN.parent}")
    (work / "Pulumi.yaml").write_text(text)
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(tmp_path / "home"),
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "mco-test-only",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PYTHONPATH": str(ROOT),
    }
    (tmp_path / "state").mkdir()
    return work, env


def _pulumi(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PULUMI), *args, "--non-interactive"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)


def test_engine_reports_its_version(project: tuple[Path, dict[str, str]]) -> None:
    work, env = project
    proc = _pulumi(["version"], work, env)
    assert proc.returncode == 0 and proc.stdout.startswith("v3.")


def test_preview_of_a_public_bucket_fails_with_the_components_message(project: tuple[Path, dict[str, str]]) -> None:
    work, env = project
    assert _pulumi(["stack", "init", "aws"], work, env).returncode == 0
    assert _pulumi(["config", "set", "--path", "mco-infra:storage.publicAccess", "true", "-s", "aws"],
                   work, env).returncode == 0
    proc = _pulumi(["preview", "-s", "aws"], work, env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "S3ArtifactStore 'artifacts': 'public_access' is not allowed" in out, out
    assert "fix: remove publicAccess from the stack config" in out
    assert "Traceback" not in out


def _kind_kubeconfig(path: Path) -> Path:
    names = ["mco-aws", "mco-gcp"]
    import yaml

    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": f"kind-{n}", "cluster": {"server": "https://127.0.0.1:6443"}} for n in names],
        "users": [{"name": f"kind-{n}", "user": {}} for n in names],
        "contexts": [{"name": f"kind-{n}", "context": {"cluster": f"kind-{n}", "user": f"kind-{n}"}} for n in names],
    }))
    return path


def test_up_of_the_local_stack_then_import_pulumi_from_the_real_stack(
    project: tuple[Path, dict[str, str]], tmp_path: Path,
) -> None:
    """The local stack without a deployment needs no resource plugin: a real `pulumi up`."""
    import yaml

    work, env = project
    kubeconfig = _kind_kubeconfig(tmp_path / "kubeconfig")
    config = yaml.safe_load((work / "Pulumi.local.yaml").read_text())
    config["config"] = {
        "mco-infra:cloud": "local",
        "mco-infra:cluster": {"kubeconfig": str(kubeconfig), "kind": [
            {"cloud": "aws", "name": "mco-aws", "node_port": 30080, "endpoint": "http://127.0.0.1:18081"},
            {"cloud": "gcp", "name": "mco-gcp", "node_port": 30081, "endpoint": "http://127.0.0.1:18082"},
        ]},
    }
    (work / "Pulumi.local.yaml").write_text(yaml.safe_dump(config))
    assert _pulumi(["stack", "init", "local"], work, env).returncode == 0
    up = _pulumi(["up", "--yes", "-s", "local"], work, env)
    assert up.returncode == 0, up.stdout + up.stderr

    mco_yaml = tmp_path / "mco.yaml"
    proc = subprocess.run([str(VENV_BIN / "mco"), "config", "import-pulumi", "--stack", "local", "--cwd", str(work),
                           "--config", str(mco_yaml), "--output", "json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    from orchestrator.config import load_config

    cfg = load_config(mco_yaml)
    assert set(cfg.clouds) == {"aws", "gcp"}
    gcp = cfg.cloud("gcp").cluster
    assert gcp is not None and gcp.context == "kind-mco-gcp" and gcp.node_port == 30081
    assert gcp.endpoint == "http://127.0.0.1:18082"


def test_release_resource_records_into_mco_history_through_the_engine(
    project: tuple[Path, dict[str, str]], tmp_path: Path,
) -> None:
    """The dynamic provider (Release) runs in the engine's provider process and writes history."""
    work, env = project
    program = tmp_path / "release-only"
    program.mkdir()
    (program / "Pulumi.yaml").write_text(
        f"name: mco-release-only\nruntime:\n  name: python\n  options:\n    virtualenv: {VENV_BIN.parent}\n")
    state = tmp_path / ".mco"
    (program / "__main__.py").write_text(
        "import json\nimport sys\n"
        f"sys.path.insert(0, {str(work)!r})\n"
        "import pulumi\nfrom components.release import Release, ReleaseArgs\n"
        "manifests = json.dumps([{'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'mco'}}])\n"
        f"r = Release('r', ReleaseArgs(state_dir={str(state)!r}, service='digits', planned_number=1,\n"
        "    model_digest='ab' * 32, bundle_ref=None, clouds={'aws': {'image_ref': 'sha256:' + 'cd' * 32,\n"
        "    'image_digest': 'sha256:' + 'cd' * 32, 'overlay': 'kind', 'replicas': 2, 'manifests': manifests,\n"
        "    'endpoint': 'http://127.0.0.1:18081'}}))\n"
        "pulumi.export('release', r.number)\n")
    assert _pulumi(["stack", "init", "dev"], program, env).returncode == 0
    up = _pulumi(["up", "--yes", "-s", "dev"], program, env)
    assert up.returncode == 0, up.stdout + up.stderr
    again = _pulumi(["up", "--yes", "-s", "dev"], program, env)  # unchanged: records nothing new
    assert again.returncode == 0, again.stdout + again.stderr

    mco_yaml = tmp_path / "mco.yaml"
    mco_yaml.write_text(f"project: {{name: digits, state_dir: {state}}}\n")
    proc = subprocess.run([str(VENV_BIN / "mco"), "history", "--config", str(mco_yaml), "--output", "json"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    import json

    data = json.loads(proc.stdout)
    releases = data["releases"] if isinstance(data, dict) else data
    assert [r["release"] for r in releases] == [1]
    assert releases[0]["status"] == "deployed" and releases[0]["created_by"].endswith("(pulumi)")
