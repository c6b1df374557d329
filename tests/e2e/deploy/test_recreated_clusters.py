"""History and reality: the clusters are made anew under a history that says the model runs.

Deploy m1, run `mco local down clusters && mco local up clusters`, deploy m1 again (same
digest). The history still records m1 as deployed, but the new nodes have no image and no
objects: the deploy must look (the node is asked for the image, the objects are re-applied
and watched) instead of trusting the record, and then serve.

This module re-creates the shared kind clusters, so it runs under `flock /tmp/mco-kind.lock`
like every cluster test, and its endpoints may move: it writes its own config each time.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.deploy.conftest import MCO, mco_json, wait_serving

pytestmark = [pytest.mark.cluster, pytest.mark.docker, pytest.mark.slow]

CLOUDS = ("aws", "gcp", "azure")


def _local(action: str, workdir: Path) -> None:
    proc = subprocess.run([*MCO, "local", action, "clusters", "--config-out", str(workdir / "mco.local.yaml")],
                          capture_output=True, text=True, timeout=1800, cwd=workdir, check=False)
    assert proc.returncode == 0, f"mco local {action} clusters failed:\n{proc.stdout}\n{proc.stderr}"


def _config(workdir: Path) -> Path:
    """A config over the clusters `mco local up` wrote (their endpoints may have moved), with one history."""
    local = yaml.safe_load((workdir / "mco.local.yaml").read_text())
    clouds = {c: {"provider": c, "cluster": local["clouds"][c]["cluster"]} for c in CLOUDS}
    cfg = {"project": {"name": "e2e-recreated", "state_dir": str(workdir / "state")},
           "deploy": {"replicas": 1, "rollout_timeout_s": 180, "auto_rollback": True}, "clouds": clouds}
    path = workdir / "mco.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_a_redeploy_onto_recreated_clusters_checks_them_and_serves(
        local_clusters: dict[str, dict[str, Any]], digits_bundle: Any, tmp_path: Path) -> None:
    _local("up", tmp_path)  # already up: writes their sections
    first = mco_json("deploy", str(digits_bundle.path), config=_config(tmp_path))
    assert first["status"] == "deployed", first

    _local("down", tmp_path)
    _local("up", tmp_path)

    config = _config(tmp_path)
    again = mco_json("deploy", str(digits_bundle.path), config=config)
    assert again["status"] == "deployed", again
    assert again["release"] == first["release"] and again.get("unchanged") is True  # the same objects: no new release
    status = mco_json("status", config=config)["clouds"]
    for cloud in CLOUDS:
        endpoint = status[cloud]["endpoint"]
        assert status[cloud]["state"] == "running" and status[cloud]["ready_replicas"] == 1, status[cloud]
        wait_serving(endpoint, digits_bundle.digest)
