"""A release names the router image per cloud (from its recorded manifests); the release a rollback
re-applies carries the router image that ran then."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import ClusterConfig, RouterTargetConfig
from orchestrator.kube.router import RouterValues
from orchestrator.releases.deployer import CloudTarget, DeploySettings, _render
from orchestrator.releases.store import CloudPlan, ReleaseStore

MODEL = "b" * 64
ROUTER_A, ROUTER_B = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def _target(cloud: str, router_image: str) -> CloudTarget:
    others = tuple(RouterTargetConfig(name=c, url=f"http://172.18.0.{i + 3}:30080", allow_insecure_http=True)
                   for i, c in enumerate(("aws", "gcp", "azure")) if c != cloud)
    return CloudTarget(cloud, ClusterConfig(context=f"kind-mco-{cloud}", kind_cluster=f"mco-{cloud}", node_port=30080),
                       "kind", image_ref="sha256:" + "a" * 64, image_digest="sha256:" + "a" * 64,
                       router=RouterValues(image=router_image, cloud=cloud, remote_targets=others, node_port=30088))


def test_the_record_names_the_router_image_and_a_rollback_source_restores_it(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "releases.db", "digits")
    numbers = []
    for router_image in (ROUTER_A, ROUTER_B):
        plans = {}
        for cloud in ("aws", "gcp"):
            objs = _render(_target(cloud, router_image), MODEL, DeploySettings(), None, None)
            assert [o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"] == ["mco-model", "mco-router"]
            plans[cloud] = CloudPlan(model_digest=MODEL, image_ref="sha256:" + "a" * 64, image_digest=None,
                                     overlay="kind", replicas=2, manifests=objs)
        n = store.begin(kind="deploy", model_digest=MODEL, clouds=plans)
        for cloud in plans:
            store.update_cloud(n, cloud, status="deployed")
        store.finish(n)
        numbers.append(n)
    current = store.current("aws")
    assert current is not None and current.router_image == ROUTER_B
    assert store.get(numbers[1]).summary()["clouds"]["gcp"]["router_image"] == ROUTER_B
    # what `mco rollback` re-applies for aws: the previous release's manifests, router included
    previous = store.previous("aws", before=current.release)
    assert previous is not None and previous.router_image == ROUTER_A
    assert any(o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == "mco-router"
               for o in previous.manifests)
    store.close()


def test_a_release_without_a_router_has_no_router_image(tmp_path: Path) -> None:
    target = CloudTarget("aws", ClusterConfig(context="kind-mco-aws", node_port=30080), "kind",
                         image_ref="sha256:" + "a" * 64)
    objs = _render(target, MODEL, DeploySettings(), None, None)
    assert not any(o["metadata"]["name"] == "mco-router" for o in objs)
