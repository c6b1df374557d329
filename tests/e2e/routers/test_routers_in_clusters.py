"""`router.in_cluster`: `mco deploy` runs 2 router replicas next to the model in each kind cluster;
traffic entering a cloud's router is served by that cloud's model (locality); the global entry
stand-in answers through them; the release names the router image per cloud."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.clusters.conftest import local_clusters  # noqa: F401  (re-exported fixture)
from tests.e2e.deploy.conftest import deploy_config, mco  # noqa: F401  (fixture)

pytestmark = [pytest.mark.cluster, pytest.mark.docker, pytest.mark.slow]

CLOUDS = ("aws", "gcp", "azure")
ROW = [0.0] * 64


def _kubectl(cloud: str, *args: str) -> subprocess.CompletedProcess[str]:
    from orchestrator.kube.kind import kubectl_binary

    return subprocess.run([kubectl_binary(), "--context", f"kind-mco-{cloud}", "-n", "mco", *args],
                          capture_output=True, text=True, timeout=60)


def _ready_routers(cloud: str, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    ready = 0
    while time.monotonic() < deadline:
        out = _kubectl(cloud, "get", "deployment", "mco-router", "-o", "json")
        if out.returncode == 0:
            ready = int(json.loads(out.stdout).get("status", {}).get("readyReplicas") or 0)
            if ready >= 2:
                return ready
        time.sleep(2)
    return ready


def test_deploy_runs_routers_in_every_cluster_served_locally(deploy_config: Path, digits_bundle: Any,  # noqa: F811
                                                             tmp_path: Path) -> None:
    from orchestrator.local.global_entry import GlobalEntry
    from orchestrator.releases.routers import kind_node_address

    doc = yaml.safe_load(deploy_config.read_text())
    doc["router"] = {"in_cluster": True, "retries": {"per_try_timeout_s": 1.5}, "health": {"timeout_s": 1.0}}
    deploy_config.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = mco("deploy", str(digits_bundle.path), "--output", "json", config=deploy_config, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    token = (deploy_config.parent / "state" / "router.token").read_text().strip()
    assert token not in proc.stdout + proc.stderr
    for cloud in CLOUDS:
        assert out["clouds"][cloud]["status"] == "deployed", out["clouds"][cloud]
        assert out["clouds"][cloud]["router_image"].startswith("sha256:")
        assert _ready_routers(cloud) >= 2, _kubectl(cloud, "describe", "deployment", "mco-router").stdout[-2000:]
        pdb = json.loads(_kubectl(cloud, "get", "pdb", "mco-router", "-o", "json").stdout)
        assert pdb["spec"]["minAvailable"] == 1
    routers = {c: f"http://{kind_node_address(c)}:30088" for c in CLOUDS}
    with httpx.Client(timeout=10) as client:
        for cloud, url in routers.items():
            deadline = time.monotonic() + 60
            while client.get(f"{url}/readyz/local").status_code != 200:
                assert time.monotonic() < deadline, f"{cloud}'s router never became ready for the entry"
                time.sleep(1)
            answers = [client.post(f"{url}/v1/predict", json={"instances": [ROW]}) for _ in range(10)]
            assert {a.status_code for a in answers} == {200}
            assert {a.headers["x-mco-cloud"] for a in answers} == {cloud}  # locality: its own model serves
            assert all(a.headers["x-mco-router"].startswith("mco-router-") for a in answers)
        with GlobalEntry(tmp_path / "entry", list(routers.items())) as entry:
            time.sleep(2.0)
            seen = {client.post(f"{entry.url}/v1/predict", json={"instances": [ROW]}).headers["x-mco-router"]
                    for _ in range(12)}
            assert len(seen) >= 3  # round robin over the clouds' routers (and their replicas)
