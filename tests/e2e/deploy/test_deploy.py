"""`mco deploy`, `mco rollback`, `mco history`, `mco status` on the three local kind clusters.

One story, one test: each step starts from the history and the clusters the step before
left (one session config): deploy model A, no-op redeploy, dry-run of model B, deploy B,
roll back to A, a lock race, a release that cannot start (rolled back automatically), and
a cluster paused in the middle of a deploy. As one test it runs alone or in any order
among the others; a failing step names itself in the traceback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.deploy.conftest import MCO, mco, mco_json, model_digest_at, wait_serving

pytestmark = [pytest.mark.cluster, pytest.mark.docker, pytest.mark.slow]

CLOUDS = ("aws", "gcp", "azure")
DIGITS_ROW = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0,
              0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]



@dataclass
class Story:
    """What the steps hand on: the first release and where each cloud serves."""

    first: int = 0
    endpoints: dict[str, str] = field(default_factory=dict)
    rollback_seconds: float = 0.0


def _history(config: Path) -> list[dict[str, Any]]:
    return mco_json("history", config=config)["releases"]


def _deploy_serves_the_model_on_every_cloud(story: Story, deploy_config: Path, digits_bundle: Any) -> None:
    out = mco_json("deploy", str(digits_bundle.path), config=deploy_config)
    assert set(out["clouds"]) == set(CLOUDS)
    assert out["status"] == "deployed" and isinstance(out["release"], int)
    for cloud, info in out["clouds"].items():
        assert info["status"] == "deployed", (cloud, info)
        assert info["image_digest"].startswith("sha256:")
        assert info["ready_replicas"] == 1
        resp = httpx.post(f"{info['endpoint']}/v1/predict", json={"instances": [DIGITS_ROW]}, timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.json()["model_digest"].removeprefix("sha256:") == digits_bundle.digest
        assert resp.json()["predictions"] == [0]
    story.first = out["release"]
    story.endpoints = {c: i["endpoint"] for c, i in out["clouds"].items()}


def _a_noop_redeploy_records_nothing_and_is_quick(story: Story, deploy_config: Path, digits_bundle: Any) -> None:
    t0 = time.monotonic()
    out = mco_json("deploy", str(digits_bundle.path), config=deploy_config)
    elapsed = time.monotonic() - t0
    assert out["unchanged"] is True and out["release"] == story.first
    assert len(_history(deploy_config)) == 1
    assert elapsed < 30, f"no-op redeploy took {elapsed:.1f} s"


def _dry_run_prints_a_diff_and_changes_nothing(story: Story, deploy_config: Path, digits_bundle: Any, second_bundle: Any) -> None:
    out = mco_json("deploy", str(second_bundle.path), "--dry-run", config=deploy_config)
    assert out["dry_run"] is True
    for cloud in CLOUDS:
        info = out["clouds"][cloud]
        assert info["changed_objects"] >= 1, info
        assert f"+        mco.dev/model-digest: {second_bundle.digest}" in info["diff"]
        assert f"-        mco.dev/model-digest: {digits_bundle.digest}" in info["diff"]
    proc = mco("deploy", str(second_bundle.path), "--dry-run", config=deploy_config)
    assert proc.returncode == 0 and "dry run: nothing was changed" in proc.stdout
    assert len(_history(deploy_config)) == 1
    for endpoint in story.endpoints.values():
        assert model_digest_at(endpoint) == digits_bundle.digest


def _second_model_then_rollback_brings_every_cloud_back(story: Story, deploy_config: Path, digits_bundle: Any,
                                                            second_bundle: Any) -> None:
    out = mco_json("deploy", str(second_bundle.path), config=deploy_config)
    assert out["status"] == "deployed"
    for endpoint in story.endpoints.values():
        wait_serving(endpoint, second_bundle.digest)
    t0 = time.monotonic()
    back = mco_json("rollback", config=deploy_config)
    story.rollback_seconds = time.monotonic() - t0
    assert back["kind"] == "rollback" and back["rollback_of"] == story.first
    assert back["status"] == "deployed"
    for cloud, endpoint in story.endpoints.items():
        assert back["clouds"][cloud]["model_digest"] == digits_bundle.digest
        wait_serving(endpoint, digits_bundle.digest)


def _history_lists_the_releases_and_the_rollback(story: Story, deploy_config: Path, digits_bundle: Any,
                                                    second_bundle: Any) -> None:
    releases = _history(deploy_config)
    assert [r["kind"] for r in releases] == ["rollback", "deploy", "deploy"]
    rollback, second, first = releases
    assert rollback["rollback_of"] == first["release"]
    assert first["model_digest"] == digits_bundle.digest and second["model_digest"] == second_bundle.digest
    for r in releases:
        assert r["created_by"] and "@" in r["created_by"] and r["created_at"] and r["finished_at"]
        assert r["gate_forced"] is False
        assert set(r["clouds"]) == set(CLOUDS)
    status = mco_json("status", config=deploy_config)["clouds"]
    for cloud in CLOUDS:
        assert status[cloud]["release"] == rollback["release"]
        assert status[cloud]["ready_replicas"] == 1 and status[cloud]["state"] == "running"


def _two_deploys_at_once_one_proceeds_the_other_reports_the_lock(story: Story, deploy_config: Path, second_bundle: Any) -> None:
    argv = [*MCO, "deploy", str(second_bundle.path), "--config", str(deploy_config), "--output", "json"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    second = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out2, err2 = second.communicate(timeout=900)
    out1, err1 = first.communicate(timeout=900)
    results = sorted([(first.returncode, out1, err1), (second.returncode, out2, err2)], key=lambda r: r[0])
    (ok_rc, ok_out, _), (lock_rc, lock_out, lock_err) = results
    assert ok_rc == 0 and json.loads(ok_out)["status"] == "deployed"
    assert lock_rc != 0
    err = json.loads(lock_out)
    assert err["kind"] == "LockHeld" and "another deploy of 'e2e-digits' is running" in err["error"]
    assert "--wait" in err["hint"]
    assert "another deploy" in lock_err


def _tampered_image(bundle: Any) -> str:
    """The bundle's real image with model.onnx changed after the card was written."""
    from orchestrator.packaging.build import build_image
    from orchestrator.packaging.dockerfile import MODEL_DIR
    from orchestrator.packaging.engine import docker_client

    built = build_image(bundle.path)
    with tempfile.TemporaryDirectory() as ctx:
        model = Path(ctx) / "model.onnx"
        shutil.copy(bundle.model_path, model)
        with model.open("ab") as fh:
            fh.write(b"tampered")
        model.chmod(0o644)
        (Path(ctx) / "Dockerfile").write_text(f"FROM {built.image_id}\nCOPY model.onnx {MODEL_DIR}/model.onnx\n")
        client = docker_client()
        image, _ = client.images.build(path=ctx, tag="mco-e2e/tampered:latest", rm=True)
        client.close()
    return str(image.id)


def _a_release_that_cannot_start_fails_named_and_rolls_back(story: Story, deploy_config: Path, digits_bundle: Any,
                                                               second_bundle: Any) -> None:
    before = _history(deploy_config)[0]
    tampered = _tampered_image(digits_bundle)
    out = mco_json("deploy", str(digits_bundle.path), "--image", tampered, config=deploy_config, ok=False)
    assert out["status"] == "rolled_back", out
    for cloud in CLOUDS:
        info = out["clouds"][cloud]
        assert info["status"] == "rolled_back", (cloud, info)
        assert info["reason"] == "CrashLoopBackOff", info
        assert "refusing" in info["detail"] or "sha256" in info["detail"], info["detail"]
        assert info["rolled_back_to"] == before["release"]
        assert model_digest_at(story.endpoints[cloud]) == second_bundle.digest
    latest = _history(deploy_config)[0]
    assert latest["release"] == out["release"] and latest["status"] == "rolled_back"
    assert all(c["reason"] == "CrashLoopBackOff" for c in latest["clouds"].values())


def _a_cluster_paused_mid_deploy_fails_alone(story: Story, deploy_config: Path, digits_bundle: Any, second_bundle: Any,
                                                 paused_node: list[str]) -> None:
    from orchestrator.config import load_config
    from orchestrator.kube.client import KubeClient

    cluster = load_config(deploy_config).cloud("gcp").cluster
    node = f"{cluster.kind_cluster}-control-plane"
    argv = [*MCO, "deploy", str(digits_bundle.path), "--config", str(deploy_config), "--output", "json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Pause gcp's node once the new release has reached its API server (mid-rollout).
    client = KubeClient.for_cluster(cluster)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            dep = client.get("apps/v1", "Deployment", "mco-model", cluster.namespace)
            annotations = (dep or {}).get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
            if annotations.get("mco.dev/model-digest") == digits_bundle.digest:
                break
            time.sleep(0.2)
    finally:
        client.close()
    assert proc.poll() is None, "the deploy finished before the cluster could be paused"
    subprocess.run(["docker", "pause", node], check=True, capture_output=True, timeout=60)
    paused_node.append(node)
    out_text, _ = proc.communicate(timeout=900)
    out = json.loads(out_text)
    assert out["status"] == "partial", out
    assert out["clouds"]["aws"]["status"] == "deployed" and out["clouds"]["azure"]["status"] == "deployed"
    gcp = out["clouds"]["gcp"]
    assert gcp["status"] == "failed" and gcp["reason"] == "ClusterUnreachable", gcp
    assert "timed out" in gcp["detail"] or "refused" in gcp["detail"], gcp
    subprocess.run(["docker", "unpause", node], check=True, capture_output=True, timeout=60)
    paused_node.remove(node)
    latest = _history(deploy_config)[0]
    assert latest["release"] == out["release"] and latest["status"] == "partial" and latest["finished_at"]
    assert latest["clouds"]["gcp"]["status"] == "failed"
    for cloud in ("aws", "azure"):
        assert model_digest_at(story.endpoints[cloud]) == digits_bundle.digest


# The steps had 600 s each as separate tests; together they get the sum.
@pytest.mark.timeout(8 * 600)
def test_deploy_noop_dry_run_rollback_lock_crash_and_paused_cluster(deploy_config: Path, digits_bundle: Any,
                                                                    second_bundle: Any,
                                                                    paused_node: list[str]) -> None:
    story = Story()
    _deploy_serves_the_model_on_every_cloud(story, deploy_config, digits_bundle)
    _a_noop_redeploy_records_nothing_and_is_quick(story, deploy_config, digits_bundle)
    _dry_run_prints_a_diff_and_changes_nothing(story, deploy_config, digits_bundle, second_bundle)
    _second_model_then_rollback_brings_every_cloud_back(story, deploy_config, digits_bundle, second_bundle)
    _history_lists_the_releases_and_the_rollback(story, deploy_config, digits_bundle, second_bundle)
    _two_deploys_at_once_one_proceeds_the_other_reports_the_lock(story, deploy_config, second_bundle)
    _a_release_that_cannot_start_fails_named_and_rolls_back(story, deploy_config, digits_bundle, second_bundle)
    _a_cluster_paused_mid_deploy_fails_alone(story, deploy_config, digits_bundle, second_bundle, paused_node)
