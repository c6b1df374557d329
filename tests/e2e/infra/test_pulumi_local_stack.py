"""`pulumi up` of infra/'s local stack deploys the model to the kind clusters and records it.

Needs the engine that `make setup` builds (`scripts/setup/60-pulumi.sh`): skipped,
with that reason, without it. No Kubernetes resource plugin can be had on this machine, so
the stack uses ``deployment.applier: mco`` (the same rendered objects, applied by a Python
dynamic resource with mco's own client); the image is loaded with `kind load` by the stack.
The objects go to the clusters' shared ``mco`` namespace, as `mco deploy`'s tests do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.clusters.conftest import local_clusters  # noqa: F401  (re-exported fixture)
from tests.e2e.deploy.conftest import model_digest_at

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
PULUMI = VENV_BIN / "pulumi"

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not (PULUMI.exists() and (VENV_BIN / "pulumi-language-python").exists()),
                       reason="the Pulumi engine is not built (make setup builds it; bash scripts/setup/60-pulumi.sh alone)"),
]


def _pulumi(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PULUMI), *args, "--non-interactive"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_pulumi_up_of_the_local_stack_deploys_and_records_the_release(
    local_clusters: dict[str, dict[str, Any]], digits_bundle: Any, tmp_path: Path,  # noqa: F811
) -> None:
    from orchestrator.local.base import LocalContext
    from orchestrator.local.clusters import ClusterStandIn
    from orchestrator.packaging.build import build_image

    image = build_image(digits_bundle.path).image  # name:tag; the stack `kind load`s it
    sections = ClusterStandIn().up(LocalContext(config_path=tmp_path / "clusters.yaml"))  # idempotent: already up
    mco_yaml = tmp_path / "mco.yaml"
    mco_yaml.write_text(yaml.safe_dump({
        "project": {"name": "e2e-pulumi", "state_dir": str(tmp_path / "state")},
        "deploy": {"replicas": 1, "rollout_timeout_s": 240},
        "clouds": {cloud: {"provider": cloud, **sec} for cloud, sec in sections.items()},
    }, sort_keys=False))

    work = tmp_path / "infra"
    shutil.copytree(ROOT / "infra", work, ignore=shutil.ignore_patterns("__pycache__"))
    (work / "Pulumi.yaml").write_text(
        (work / "Pulumi.yaml").read_text().replace("virtualenv: ../.venv", f"virtualenv: {VENV_BIN.parent}"))
    (work / "Pulumi.local.yaml").write_text(yaml.safe_dump({"config": {
        "mco-infra:cloud": "local",
        "mco-infra:mcoConfig": str(mco_yaml),
        "mco-infra:deployment": {"model": str(digits_bundle.path), "image": image, "applier": "mco"},
    }}))
    (tmp_path / "backend").mkdir()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(tmp_path / "home"),
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'backend'}",
        "PULUMI_CONFIG_PASSPHRASE": "mco-test-only",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }
    assert _pulumi(["stack", "init", "local"], work, env).returncode == 0

    up = _pulumi(["up", "--yes", "-s", "local"], work, env)
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-2000:]

    history = subprocess.run([str(VENV_BIN / "mco"), "history", "--config", str(mco_yaml), "--output", "json"],
                             capture_output=True, text=True, timeout=60)
    assert history.returncode == 0, history.stderr
    releases = json.loads(history.stdout)["releases"]
    assert [r["release"] for r in releases] == [1]
    release = releases[0]
    assert release["status"] == "deployed" and release["created_by"].endswith("(pulumi)")
    assert release["model_digest"] == digits_bundle.digest
    assert set(release["clouds"]) == set(sections)
    for cloud, sec in sections.items():
        endpoint = sec["cluster"]["endpoint"]
        assert release["clouds"][cloud]["endpoint"] == endpoint
        assert model_digest_at(endpoint) == digits_bundle.digest

    # Unchanged inputs: Pulumi changes nothing and mco's history gets no new release.
    again = _pulumi(["up", "--yes", "-s", "local"], work, env)
    assert again.returncode == 0, again.stdout[-4000:]
    assert "unchanged" in again.stdout
    history = subprocess.run([str(VENV_BIN / "mco"), "history", "--config", str(mco_yaml), "--output", "json"],
                             capture_output=True, text=True, timeout=60)
    assert [r["release"] for r in json.loads(history.stdout)["releases"]] == [1]
