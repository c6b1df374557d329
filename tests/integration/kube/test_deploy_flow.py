"""deploy_release / rollback_release against a real API server and real Deployment controller.

The node is simulated (see ``SimulatedNode`` in conftest.py); everything else is real:
server-side apply, the Deployment and ReplicaSet controllers moving replicas between
revisions, mco's rollout watch, auto-rollback, the history and the lock. Two "clouds"
share the API server in different namespaces.

Each test gets clouds (namespaces) and a history of its own, and makes the releases it
starts from: the tests run alone and in any order.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from orchestrator.config import ClusterConfig
from orchestrator.errors import LockHeld
from orchestrator.kube.client import KubeClient
from orchestrator.releases.deployer import DeploySettings, deploy_release, rollback_release
from orchestrator.releases.lock import DeployLock
from orchestrator.releases.store import ReleaseStore
from tests.integration.kube.conftest import (
    CLOUDS,
    CRASHING_IMAGE,
    IMAGE_A,
    IMAGE_B,
    MODEL_A,
    MODEL_B,
    SETTINGS,
    UNPULLABLE_IMAGE,
)
from tests.integration.kube.conftest import targets as _targets

LATE_IMAGE = "sha256:" + "d" * 64  # on the node only once the test "loads" it
_ENVS = itertools.count(1)


@pytest.fixture
def env(simulated_cluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Fresh clouds (namespaces of their own) and an empty history."""
    root = tmp_path_factory.mktemp("flow")
    n = next(_ENVS)
    clusters = {c: ClusterConfig(context=str(simulated_cluster["context"]), kubeconfig=simulated_cluster["kubeconfig"],
                                 namespace=f"flow{n}-{c}") for c in CLOUDS}
    store = ReleaseStore(root / "releases.db", "flow")
    yield {"root": root, "clusters": clusters, "store": store, "lock": DeployLock(root, "flow"),
           "apiserver": simulated_cluster}
    store.close()


def _deploy(env: dict[str, Any], image: str, model: str, settings: DeploySettings = SETTINGS, **kw: Any) -> Any:
    events: list[tuple[str, str]] = []
    result = deploy_release(env["store"], env["lock"], _targets(env, image), model_digest=model, settings=settings,
                            progress=lambda c, m: events.append((c, m)), **kw)
    result.events = events  # type: ignore[attr-defined]
    return result


def _live_image(env: dict[str, Any], cloud: str) -> str:
    cluster = env["clusters"][cloud]
    with KubeClient.for_cluster(cluster) as client:
        dep = client.get("apps/v1", "Deployment", "mco-model", cluster.namespace)
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def test_deploy_reaches_every_cloud_and_is_recorded(env: dict[str, Any]) -> None:
    result = _deploy(env, IMAGE_A, MODEL_A, gate_forced=True, gate_summary="gate failed: macro_f1 is 0.5")
    rel = result.release
    assert rel.number == 1 and rel.status == "deployed" and rel.gate_forced
    for cloud in CLOUDS:
        c = rel.clouds[cloud]
        assert c.status == "deployed" and c.ready_replicas == 2 and c.image_digest == IMAGE_A
        assert _live_image(env, cloud) == IMAGE_A
        assert any(k == "Deployment" for k in (o["kind"] for o in c.manifests))
    assert any(m.startswith("rolling out:") for _, m in result.events)
    assert ("aws", "deployed: 2/2 ready") in result.events


def test_a_noop_redeploy_records_nothing_and_takes_seconds(env: dict[str, Any]) -> None:
    assert _deploy(env, IMAGE_A, MODEL_A).release.number == 1
    t0 = time.monotonic()
    result = _deploy(env, IMAGE_A, MODEL_A)
    assert time.monotonic() - t0 < 5
    assert result.unchanged and result.release.number == 1
    assert env["store"].latest_number() == 1


def test_a_crashing_release_is_named_and_rolled_back_on_each_cloud(env: dict[str, Any]) -> None:
    assert _deploy(env, IMAGE_A, MODEL_A).release.number == 1
    result = _deploy(env, CRASHING_IMAGE, MODEL_B)
    rel = result.release
    assert rel.number == 2 and rel.status == "rolled_back"
    for cloud in CLOUDS:
        c = rel.clouds[cloud]
        assert c.status == "rolled_back" and c.reason == "CrashLoopBackOff" and c.rolled_back_to == 1
        assert "refusing to start" in c.detail and "code 3" in c.detail
        assert _live_image(env, cloud) == IMAGE_A
        assert env["store"].current(cloud).release == 1
    assert ("gcp", "rolled back to release 1 (CrashLoopBackOff)") in result.events


def test_without_auto_rollback_a_pull_failure_is_left_failed(env: dict[str, Any]) -> None:
    assert _deploy(env, IMAGE_A, MODEL_A).release.number == 1
    settings = DeploySettings(**{**SETTINGS.__dict__, "auto_rollback": False})
    rel = _deploy(env, UNPULLABLE_IMAGE, MODEL_B, settings).release
    assert rel.number == 2 and rel.status == "failed"
    for cloud in CLOUDS:
        c = rel.clouds[cloud]
        assert c.status == "failed" and c.reason == "ImagePullBackOff" and "ErrImageNeverPull" in c.detail
        assert "automatic rollback is off" in c.detail
        assert _live_image(env, cloud) == UNPULLABLE_IMAGE  # left as it is: nobody rolled it back
    # Deploying what the history says is current (release 1) re-applies it: the cloud is repaired,
    # and since the objects are exactly release 1's, no new release is recorded.
    again = _deploy(env, IMAGE_A, MODEL_A)
    assert again.unchanged and again.release.number == 1
    for cloud in CLOUDS:
        assert _live_image(env, cloud) == IMAGE_A


def _rollback(env: dict[str, Any], to: int | None, clouds: tuple[str, ...] = CLOUDS) -> Any:
    clusters = {c: (env["clusters"][c], "kind") for c in clouds}
    return rollback_release(env["store"], env["lock"], clusters, to=to, settings=SETTINGS).release


def test_rollback_goes_back_one_release_per_cloud_and_points_back(env: dict[str, Any]) -> None:
    assert _deploy(env, IMAGE_A, MODEL_A).release.status == "deployed"
    rel_b = _deploy(env, IMAGE_B, MODEL_B).release
    assert rel_b.status == "deployed"
    before = {c: env["store"].previous(c, before=rel_b.number).release for c in CLOUDS}
    t0 = time.monotonic()
    back = _rollback(env, None)
    assert time.monotonic() - t0 < 60
    assert back.kind == "rollback" and back.status == "deployed"
    assert back.rollback_of == before["aws"] == before["gcp"]
    for cloud in CLOUDS:
        assert back.clouds[cloud].source_release == before[cloud]
        assert back.clouds[cloud].model_digest == MODEL_A
        assert _live_image(env, cloud) == IMAGE_A
        assert env["store"].current(cloud).release == back.number


def test_rollback_to_a_named_release_on_chosen_clouds_only(env: dict[str, Any]) -> None:
    _deploy(env, IMAGE_A, MODEL_A)
    _deploy(env, IMAGE_B, MODEL_B)
    assert _rollback(env, None).status == "deployed"  # both clouds back on model A
    b_release = next(r.number for r in env["store"].list() if r.model_digest == MODEL_B and r.status == "deployed")
    back = _rollback(env, b_release, ("aws",))
    assert back.status == "deployed" and set(back.clouds) == {"aws"} and back.rollback_of == b_release
    assert _live_image(env, "aws") == IMAGE_B
    assert _live_image(env, "gcp") == IMAGE_A


def test_a_held_lock_stops_a_second_deploy(env: dict[str, Any]) -> None:
    _deploy(env, IMAGE_A, MODEL_A)
    other = DeployLock(env["root"], "flow")
    with other:
        with pytest.raises(LockHeld, match="another deploy of 'flow' is running"):
            _deploy(env, IMAGE_B, MODEL_B)
    numbers = [r.number for r in env["store"].list()]
    assert numbers == sorted(numbers, reverse=True) and len(set(numbers)) == len(numbers)


def test_history_is_complete(env: dict[str, Any]) -> None:
    no_auto = DeploySettings(**{**SETTINGS.__dict__, "auto_rollback": False})
    _deploy(env, IMAGE_A, MODEL_A)
    _deploy(env, CRASHING_IMAGE, MODEL_B)
    _deploy(env, UNPULLABLE_IMAGE, MODEL_B, no_auto)
    _deploy(env, IMAGE_A, MODEL_A)  # unchanged: repairs the clouds, records nothing
    b_release = _deploy(env, IMAGE_B, MODEL_B).release.number
    _rollback(env, None)
    _rollback(env, b_release, ("aws",))
    releases = list(reversed(env["store"].list()))
    kinds = [(r.kind, r.status) for r in releases]
    assert kinds == [("deploy", "deployed"), ("deploy", "rolled_back"), ("deploy", "failed"), ("deploy", "deployed"),
                     ("rollback", "deployed"), ("rollback", "deployed")]
    assert all(r.finished_at and r.created_by for r in releases)
    assert all(c.status in ("deployed", "failed", "rolled_back") for r in releases for c in r.clouds.values())


def test_pods_of_an_earlier_try_that_lacked_the_image_do_not_fail_this_rollout(env: dict[str, Any]) -> None:
    """The same objects again, once the image is on the node: the same ReplicaSet, whose pods from
    the first try still show ErrImageNeverPull. They are replaced, not judged."""
    node = env["apiserver"]["node"]
    no_auto = DeploySettings(**{**SETTINGS.__dict__, "auto_rollback": False})
    node.absent.add(LATE_IMAGE)
    try:
        first = _deploy(env, LATE_IMAGE, MODEL_A, no_auto).release
        assert first.status == "failed" and first.clouds["aws"].reason == "ImagePullBackOff"
    finally:
        node.absent.discard(LATE_IMAGE)  # `kind load` happened since
    again = _deploy(env, LATE_IMAGE, MODEL_A, no_auto).release
    assert again.number == first.number + 1
    assert again.status == "deployed", {c: (r.reason, r.detail) for c, r in again.clouds.items()}
    for cloud in CLOUDS:
        assert again.clouds[cloud].ready_replicas == 2 and _live_image(env, cloud) == LATE_IMAGE
