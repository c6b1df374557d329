"""``MCOApply``: apply rendered objects with mco's own Kubernetes client, as a Pulumi resource.

``ModelDeployment`` normally applies through ``pulumi_kubernetes``. That needs the
Kubernetes resource plugin, which an engine without internet access may not have (the
Go module proxy here does not serve it). With ``applier: mco`` the same rendered objects
are applied by a Python dynamic resource that calls what ``mco deploy`` calls:
server-side apply with field manager ``mco`` (``orchestrator.kube.client``) and the
rollout watch (``orchestrator.kube.rollout``), so a failed rollout fails ``pulumi up``
with the named reason. Objects dropped from a later render are deleted; destroying the
stack deletes them all, in reverse apply order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic as dyn

__all__ = ["MCOApply", "MCOApplyArgs", "apply_and_watch", "delete_objects"]


@dataclass(frozen=True)
class MCOApplyArgs:
    cloud: str
    context: str
    kubeconfig: str | None
    objects_json: str               # the rendered objects, sorted for apply
    rollout_timeout_s: float = 300.0


def _cluster(props: dict[str, Any]) -> Any:
    from orchestrator.config import ClusterConfig

    return ClusterConfig(context=props["context"], kubeconfig=props.get("kubeconfig") or None)


def apply_and_watch(props: dict[str, Any]) -> int:
    """Apply every object and wait for the Deployment's rollout; returns its ready replicas."""
    import json

    from orchestrator.releases.deployer import DeploySettings, KubeTarget

    objs = json.loads(props["objects_json"])
    target = KubeTarget(props["cloud"], _cluster(props))
    try:
        target.apply(objs, force=True)
        settings = DeploySettings(rollout_timeout_s=float(props.get("rollout_timeout_s", 300.0)))
        status = target.watch(objs, settings, lambda cloud, msg: None)
        return int(status.ready)
    finally:
        target.close()


def delete_objects(props: dict[str, Any], objs: list[dict[str, Any]]) -> None:
    from orchestrator.kube.client import KubeClient
    from orchestrator.kube.render import sort_for_delete

    client = KubeClient.for_cluster(_cluster(props), name=f"{props['cloud']} ({props['context']})")
    try:
        for obj in sort_for_delete(objs):
            meta = obj["metadata"]
            client.delete(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
    finally:
        client.close()


def _keys(objs: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    return {(o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objs}


class MCOApplyProvider(dyn.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        ready = apply_and_watch(props)
        return dyn.CreateResult(id_=f"{props['context']}/{props['cloud']}", outs={**props, "ready_replicas": ready})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        keys = ("objects_json", "context", "kubeconfig", "cloud")
        changed = any(olds.get(k) != news.get(k) for k in keys)
        moved = olds.get("context") != news.get("context")
        return dyn.DiffResult(changes=changed, replaces=["context"] if moved else [], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        import json

        ready = apply_and_watch(news)
        old_objs, new_objs = json.loads(olds["objects_json"]), json.loads(news["objects_json"])
        gone = _keys(old_objs) - _keys(new_objs)
        if gone:
            delete_objects(news, [o for o in old_objs if (o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""),
                                                          o["metadata"]["name"]) in gone])
        return dyn.UpdateResult(outs={**news, "ready_replicas": ready})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        import json

        delete_objects(props, json.loads(props["objects_json"]))


class MCOApply(dyn.Resource, module="mco", name="KubeApply"):
    """One cluster's rendered objects, applied and watched by mco (``pulumi-python:dynamic/mco:KubeApply``)."""

    ready_replicas: pulumi.Output[int]

    def __init__(self, name: str, args: MCOApplyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(MCOApplyProvider(), name, {
            "cloud": args.cloud, "context": args.context, "kubeconfig": args.kubeconfig,
            "objects_json": args.objects_json, "rollout_timeout_s": args.rollout_timeout_s,
            "ready_replicas": None,
        }, opts)
