"""The real Pulumi engine on infra/, when `scripts/setup/60-pulumi.sh` could build it.

The engine is optional (see that script): these tests are skipped, with the reason, when
it is not installed in .venv/bin. They use a local file backend in a temporary
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
                       reason="the Pulumi engine is not built (optional: MCO_BUILD_PULUMI=1 bash scripts/setup/60-pulumi.sh)"),
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
