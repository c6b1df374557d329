"""Server-side apply, dry-run and diff against a real kube-apiserver (no nodes needed)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.config import ClusterConfig
from orchestrator.errors import ClusterError
from orchestrator.kube.client import FIELD_MANAGER, KubeClient
from orchestrator.kube.render import ReleaseValues, render_release
from orchestrator.net import free_port
from orchestrator.releases.deployer import CloudTarget, DeploySettings, deploy_release, plan_diff
from orchestrator.releases.lock import DeployLock
from orchestrator.releases.store import ReleaseStore

IMAGE_A = "sha256:" + "a" * 64
IMAGE_B = "sha256:" + "b" * 64
MODEL = "c" * 64


def _objs(namespace: str, image: str = IMAGE_A, replicas: int = 2) -> list[dict]:
    return render_release("kind", ReleaseValues(image=image, model_digest=MODEL, namespace=namespace, replicas=replicas,
                                                node_port=None, cloud="aws", release=1))


def _settled_version(client: KubeClient, namespace: str) -> str:
    """The Deployment's resourceVersion once nothing else writes it: when another test started
    the Deployment controller on this API server, it writes the status once after a change."""
    last, since = "", time.monotonic()
    deadline = since + 15
    while time.monotonic() < deadline:
        version = client.get("apps/v1", "Deployment", "mco-model", namespace)["metadata"]["resourceVersion"]
        if version != last:
            last, since = version, time.monotonic()
        elif time.monotonic() - since >= 1.5:
            break
        time.sleep(0.3)
    return last


def _client(apiserver: dict) -> KubeClient:
    return KubeClient(context=str(apiserver["context"]), kubeconfig=apiserver["kubeconfig"], name="test")


def _cluster(apiserver: dict, namespace: str) -> ClusterConfig:
    return ClusterConfig(context=str(apiserver["context"]), kubeconfig=apiserver["kubeconfig"], namespace=namespace)


def test_apply_creates_every_object_as_field_manager_mco(apiserver: dict) -> None:
    objs = _objs("apply-1")
    with _client(apiserver) as client:
        for obj in objs:
            client.apply(obj, force=False, dry_run=False)
        dep = client.get("apps/v1", "Deployment", "mco-model", "apply-1")
        assert dep is not None
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_A
        assert any(m["manager"] == FIELD_MANAGER and m["operation"] == "Apply" for m in dep["metadata"]["managedFields"])
        for obj in objs:
            meta = obj["metadata"]
            assert client.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")) is not None


def test_reapplying_the_same_objects_writes_nothing(apiserver: dict) -> None:
    objs = _objs("apply-2")
    with _client(apiserver) as client:
        for obj in objs:
            client.apply(obj, force=False, dry_run=False)
        before = _settled_version(client, "apply-2")
        for obj in objs:
            client.apply(obj, force=False, dry_run=False)
        after = client.get("apps/v1", "Deployment", "mco-model", "apply-2")
        assert after["metadata"]["resourceVersion"] == before
        assert after["metadata"]["generation"] == 1


def test_dry_run_validates_but_persists_nothing(apiserver: dict) -> None:
    objs = _objs("apply-3")
    with _client(apiserver) as client:
        client.apply(objs[0], force=False, dry_run=False)  # the namespace
        dep = objs[-1]
        result = client.apply(dep, force=False, dry_run=True)
        assert result["metadata"]["name"] == "mco-model" and result["spec"]["replicas"] == 2
        assert client.get("apps/v1", "Deployment", "mco-model", "apply-3") is None


def test_the_server_rejects_an_invalid_object_with_a_clear_error(apiserver: dict) -> None:
    objs = _objs("apply-4")
    with _client(apiserver) as client:
        client.apply(objs[0], force=False, dry_run=False)
        dep = objs[-1]
        dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 70000
        with pytest.raises(ClusterError, match="applying Deployment/mco-model failed: HTTP 422"):
            client.apply(dep, force=False, dry_run=True)


def test_a_field_owned_by_another_manager_conflicts_unless_forced(apiserver: dict) -> None:
    objs = _objs("apply-5")
    with _client(apiserver) as client:
        for obj in objs:
            client.apply(obj, force=False, dry_run=False)
        # someone scales by hand with their own field manager
        resource = client._resource("apps/v1", "Deployment")
        resource.server_side_apply(
            body={"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "mco-model", "namespace": "apply-5"},
                  "spec": {"replicas": 5}}, name="mco-model", namespace="apply-5", field_manager="someone",
            force_conflicts=True)
        changed = _objs("apply-5", replicas=3)[-1]
        with pytest.raises(ClusterError, match="conflicts with another field manager") as info:
            client.apply(changed, force=False, dry_run=False)
        assert "someone" in str(info.value)
        client.apply(changed, force=True, dry_run=False)
        assert client.get("apps/v1", "Deployment", "mco-model", "apply-5")["spec"]["replicas"] == 3


def test_plan_diff_shows_the_image_change_and_changes_nothing(apiserver: dict) -> None:
    ns = "apply-6"
    with _client(apiserver) as client:
        for obj in _objs(ns):
            client.apply(obj, force=True, dry_run=False)
    target = CloudTarget("aws", _cluster(apiserver, ns), "kind", image_ref=IMAGE_B, image_digest=IMAGE_B)
    diffs = plan_diff([target], MODEL, DeploySettings(), release=1)
    info = diffs["aws"]
    assert info["changed_objects"] == 1, info["diff"]
    assert f"-        image: {IMAGE_A}" in info["diff"] and f"+        image: {IMAGE_B}" in info["diff"]
    with _client(apiserver) as client:
        live = client.get("apps/v1", "Deployment", "mco-model", ns)
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_A


def test_plan_diff_into_a_new_namespace_shows_every_object_as_new(apiserver: dict) -> None:
    target = CloudTarget("gcp", _cluster(apiserver, "apply-7"), "kind", image_ref=IMAGE_A, image_digest=IMAGE_A)
    info = plan_diff([target], MODEL, DeploySettings())["gcp"]
    assert info["changed_objects"] == info["objects"] == 7
    with _client(apiserver) as client:
        assert client.get("v1", "Namespace", "apply-7") is None


def test_an_unreachable_cluster_fails_fast_with_the_cause(tmp_path: Path, apiserver: dict) -> None:
    dead = tmp_path / "kubeconfig"
    text = Path(apiserver["kubeconfig"]).read_text().replace(str(apiserver["url"]), f"https://127.0.0.1:{free_port()}")
    dead.write_text(text)
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="cannot reach the API server: connection refused") as info:
        KubeClient(context="mco-test", kubeconfig=dead, name="aws").get("v1", "Namespace", "default")
    assert time.monotonic() - t0 < 20
    assert "kubectl --context mco-test get nodes" in str(info.value)


def test_an_unknown_context_is_a_config_error(apiserver: dict) -> None:
    from orchestrator.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot use kube context 'nope'"):
        KubeClient(context="nope", kubeconfig=apiserver["kubeconfig"]).get("v1", "Namespace", "default")


def test_a_dead_cluster_is_recorded_failed_and_the_other_cloud_still_finishes(apiserver: dict, tmp_path: Path) -> None:
    """No nodes here, so the live cloud's rollout cannot finish: it fails with a named Timeout, while
    the dead cloud fails with its connection error; the release record is complete and consistent."""
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(Path(apiserver["kubeconfig"]).read_text().replace(str(apiserver["url"]),
                                                                        f"https://127.0.0.1:{free_port()}"))
    live_target = CloudTarget("aws", _cluster(apiserver, "apply-8"), "kind", image_ref=IMAGE_A, image_digest=IMAGE_A)
    dead_target = CloudTarget("gcp", ClusterConfig(context="mco-test", kubeconfig=dead, namespace="apply-8"), "kind",
                              image_ref=IMAGE_A, image_digest=IMAGE_A)
    store = ReleaseStore(tmp_path / "releases.db", "digits")
    events: list[tuple[str, str]] = []
    result = deploy_release(store, DeployLock(tmp_path, "digits"), [live_target, dead_target], model_digest=MODEL,
                            settings=DeploySettings(rollout_timeout_s=3, poll_s=0.5),
                            progress=lambda c, m: events.append((c, m)))
    rel = result.release
    assert rel.number == 1 and rel.status == "failed" and rel.finished_at
    assert rel.clouds["aws"].status == "failed" and rel.clouds["aws"].reason == "Timeout"
    assert "no earlier release" in rel.clouds["aws"].detail
    assert rel.clouds["gcp"].status == "failed" and rel.clouds["gcp"].reason == "ClusterUnreachable"
    assert "connection refused" in rel.clouds["gcp"].detail
    # the live cloud did get the objects (applied before the watch)
    with _client(apiserver) as client:
        assert client.get("apps/v1", "Deployment", "mco-model", "apply-8") is not None
    assert ("aws", "applying 7 objects") in events
    assert store.current("aws") is None  # nothing reached "deployed"
    store.close()
