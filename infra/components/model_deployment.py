"""``ModelDeployment``: deploy a model bundle to one or more clusters from a Pulumi program.

The objects come from mco's own renderer (``orchestrator.kube.render.render_release``),
with the same release values ``mco render``/``mco deploy`` use, and are applied one
Pulumi resource per object through ``pulumi_kubernetes`` (server-side apply; the
provider waits for the Deployment to be ready, as ``mco deploy`` does). When the
deployment succeeds a ``Release`` records it in mco's history, so ``mco history``,
``mco status`` and ``mco rollback`` see Pulumi's releases like their own.

Release numbers and "unchanged" are decided by mco's one planning rule
(``orchestrator.releases.plan.plan_release``), the one ``mco deploy`` uses: if every target
already runs (per the history) the same objects, nothing changes and the recorded objects
are what Pulumi applies; otherwise the objects carry the next number. Preview and up
compute the same plan, so a preview shows exactly what up will apply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pulumi

from components._common import child, refuse, safe_name
from components.release import Release, ReleaseArgs

__all__ = [
    "DeploymentTarget",
    "ModelDeployment",
    "ModelDeploymentArgs",
    "ReleasePlan",
    "plan_release",
    "resource_type",
]

Obj = dict[str, Any]


@dataclass(frozen=True)
class DeploymentTarget:
    """One cluster to deploy to: the cloud's name in mco.yaml and how to reach it."""

    cloud: str
    overlay: str                                   # aws | gcp | azure | kind (orchestrator.kube.render.OVERLAYS)
    image: str                                     # REGISTRY/REPO@sha256:… or sha256:<image id> (kind)
    provider: pulumi.ProviderResource | None = None  # None: the default Kubernetes provider
    namespace: str = "mco"
    node_port: int | None = None
    endpoint: pulumi.Input[str] | None = None      # kind: the mapped host port; clouds: from the Service
    kind_cluster: str | None = None                # kind: the image is `kind load`ed into this cluster first
    image_ref: str | None = None                   # kind: the local name the image is loaded under
    context: str | None = None                     # applier "mco": the kube context (and kubeconfig) to use
    kubeconfig: str | None = None


@dataclass(frozen=True)
class ModelDeploymentArgs:
    model_dir: str
    targets: tuple[DeploymentTarget, ...]
    replicas: int = 2
    run_as_user: int | None = 10001        # packaging.uid of the mco config
    service: str = "mco"                   # project.name of the mco config
    state_dir: str | None = None           # project.state_dir; None records no history
    manifests_dir: str | None = None       # None: the mco source tree's manifests/
    # "pulumi-kubernetes": one pulumi_kubernetes resource per object (the default);
    # "mco": one dynamic resource per cluster that applies with mco's own client (for an
    # engine without the Kubernetes plugin; see components/kube_apply.py).
    applier: str = "pulumi-kubernetes"
    rollout_timeout_s: float = 300.0
    # Refused: what the renderer's pods must keep (non-root); a root uid is an insecure setting.
    allow_root: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReleasePlan:
    number: int | None                 # the release number the objects carry (None: no history)
    reused: bool                       # True: every target already runs exactly these objects
    model_digest: str
    bundle_ref: str | None
    objects: dict[str, list[Obj]]      # cloud -> rendered objects, sorted for apply


def _values(args: ModelDeploymentArgs, target: DeploymentTarget, model_digest: str, release: int | None) -> Any:
    from orchestrator.kube.render import ReleaseValues

    return ReleaseValues(
        image=target.image, model_digest=model_digest, replicas=args.replicas, namespace=target.namespace,
        node_port=target.node_port, cloud=target.cloud, release=release, run_as_user=args.run_as_user,
    )


def plan_release(args: ModelDeploymentArgs) -> ReleasePlan:
    """Render every target, choosing the release number against mco's history (read only)."""
    from orchestrator.kube.render import render_release
    from orchestrator.model.bundle import load_bundle
    from orchestrator.releases import plan
    from orchestrator.releases.store import ReleaseStore

    bundle = load_bundle(args.model_dir)  # verifies every file's sha256
    digest = bundle.digest
    bundle_ref = getattr(bundle, "ref", None)
    by_cloud = {t.cloud: t for t in args.targets}

    def render(cloud: str, release: int | None) -> list[Obj]:
        target = by_cloud[cloud]
        return render_release(target.overlay, _values(args, target, digest, release), manifests_dir=args.manifests_dir)

    if args.state_dir is None:
        return ReleasePlan(None, False, digest, bundle_ref, {c: render(c, None) for c in by_cloud})
    db = Path(args.state_dir) / "releases.db"
    if not db.is_file():
        chosen = plan.plan_release(None, by_cloud, render)
    else:
        with ReleaseStore(db, args.service) as store:
            chosen = plan.plan_release(store, by_cloud, render)
    return ReleasePlan(chosen.number, chosen.unchanged, digest, bundle_ref, chosen.objects)


def resource_type(obj: Obj) -> str:
    """The pulumi_kubernetes type token of a Kubernetes object: core group is ``core/v1``."""
    api_version = obj["apiVersion"]
    group_version = f"core/{api_version}" if "/" not in api_version else api_version
    return f"kubernetes:{group_version}:{obj['kind']}"


def _image_digest(image: str) -> str | None:
    return image.rsplit("@", 1)[1] if "@" in image else (image if image.startswith("sha256:") else None)


class ModelDeployment(pulumi.ComponentResource):
    release: pulumi.Output[int | None]
    model_digest: pulumi.Output[str]
    endpoints: pulumi.Output[dict[str, str | None]]
    manifests: pulumi.Output[dict[str, list[Obj]]]

    def __init__(self, name: str, args: ModelDeploymentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        who = f"ModelDeployment '{name}'"
        refuse(args.allow_root or (args.run_as_user is not None and args.run_as_user < 1), who, "run_as_user=0",
               "the model server runs as a non-root user with a read-only root filesystem",
               "use the image's non-root uid (packaging.uid, 10001 by default)")
        if args.applier not in ("pulumi-kubernetes", "mco"):
            raise pulumi.RunError(f"{who}: unknown applier '{args.applier}'. fix: use pulumi-kubernetes (default) or mco")
        if args.applier == "mco" and any(t.context is None for t in args.targets):
            raise pulumi.RunError(f"{who}: applier 'mco' needs each target's kube context (kind clusters have one). "
                                  "fix: use the default applier for cloud clusters")
        refuse(not args.targets, who, "targets", "there is nothing to deploy to",
               "configure at least one cluster for this stack")
        clouds = [t.cloud for t in args.targets]
        refuse(len(set(clouds)) != len(clouds), who, "targets", f"a cloud appears twice in {clouds}",
               "give every target a distinct cloud name")
        try:
            plan = plan_release(args)
        except Exception as exc:  # mco's own errors carry a message and a fix: show them, not a traceback
            from orchestrator.errors import MCOError

            if isinstance(exc, MCOError):
                raise pulumi.RunError(f"{who}: {exc}") from None
            raise
        super().__init__("mco:model_deployment:ModelDeployment", name, None, opts)
        self.plan = plan

        applied: list[pulumi.Resource] = []
        endpoints: dict[str, pulumi.Input[str | None]] = {}
        for target in args.targets:
            if args.applier == "mco":
                resources, service = self._apply_with_mco(name, target, plan.objects[target.cloud], args)
            else:
                resources, service = self._apply(name, target, plan.objects[target.cloud])
            applied.extend(resources)
            endpoints[target.cloud] = target.endpoint if target.endpoint is not None else _lb_endpoint(service)

        release_out: pulumi.Output[int | None] = pulumi.Output.from_input(plan.number)
        if plan.number is not None and args.state_dir is not None:
            record = Release(
                f"{name}-release",
                ReleaseArgs(
                    state_dir=str(Path(args.state_dir).resolve()),
                    service=args.service,
                    planned_number=plan.number,
                    model_digest=plan.model_digest,
                    bundle_ref=plan.bundle_ref,
                    clouds={
                        t.cloud: {
                            "image_ref": t.image,
                            "image_digest": _image_digest(t.image),
                            "overlay": t.overlay,
                            "replicas": args.replicas,
                            "manifests": json.dumps(plan.objects[t.cloud], sort_keys=True),
                            "endpoint": endpoints[t.cloud],
                        }
                        for t in args.targets
                    },
                ),
                # Recorded only after every object (and the Deployment's rollout) succeeded.
                opts=child(self, depends_on=applied),
            )
            release_out = record.number

        self.release = release_out
        self.model_digest = pulumi.Output.from_input(plan.model_digest)
        # from_input resolves the Outputs nested in the dict, which its signature cannot say.
        self.endpoints = cast("pulumi.Output[dict[str, str | None]]", pulumi.Output.from_input(endpoints))
        self.manifests = pulumi.Output.from_input(plan.objects)
        self.register_outputs({
            "release": self.release, "model_digest": self.model_digest, "endpoints": self.endpoints,
        })

    def _image_load(self, name: str, target: DeploymentTarget) -> list[pulumi.Resource]:
        if not target.kind_cluster or not target.image_ref:
            return []  # an image given only by ID must already be on the node: a bare ID cannot be loaded
        from components.cluster.kind import KindImageLoad, KindImageLoadArgs

        return [KindImageLoad(
            safe_name(f"{name}-{target.cloud}-image"),
            KindImageLoadArgs(image=target.image, ref=target.image_ref, kind_cluster=target.kind_cluster,
                              cloud=target.cloud),
            child(self))]

    def _apply_with_mco(self, name: str, target: DeploymentTarget, objs: list[Obj],
                        args: ModelDeploymentArgs) -> tuple[list[pulumi.Resource], Any]:
        from components.kube_apply import MCOApply, MCOApplyArgs

        loads = self._image_load(name, target)
        apply = MCOApply(
            safe_name(f"{name}-{target.cloud}-apply"),
            MCOApplyArgs(cloud=target.cloud, context=str(target.context), kubeconfig=target.kubeconfig,
                         objects_json=json.dumps(objs, sort_keys=True), rollout_timeout_s=args.rollout_timeout_s),
            child(self, depends_on=loads))
        return [*loads, apply], None

    def _apply(self, name: str, target: DeploymentTarget, objs: list[Obj]) -> tuple[list[pulumi.Resource], Any]:
        """One Pulumi resource per object, in apply order: Namespace, then the rest, Deployment last."""
        created: list[pulumi.Resource] = []
        before_deployment = self._image_load(name, target)
        namespace: pulumi.Resource | None = None
        service: pulumi.CustomResource | None = None
        for obj in objs:
            kind = obj["kind"]
            depends: list[pulumi.Resource] = []
            if kind == "Deployment":
                depends = [*created, *before_deployment]  # ServiceAccount, Service, policies, the image first
            elif namespace is not None:
                depends = [namespace]
            props: dict[str, Any] = dict(obj)
            if kind in ("Service", "Deployment"):
                props["status"] = None  # an output: the Service's load balancer, the rollout's state
            resource = pulumi.CustomResource(
                resource_type(obj),
                safe_name(f"{name}-{target.cloud}-{kind}-{obj['metadata']['name']}"),
                props,
                child(self, provider=target.provider, depends_on=depends),
            )
            created.append(resource)
            if kind == "Namespace":
                namespace = resource
            elif kind == "Service":
                service = resource
        return [*before_deployment, *created], service


def _lb_endpoint(service: Any) -> pulumi.Output[str | None] | None:
    """``http://HOST:PORT`` of a LoadBalancer Service, once the cloud has given it an address."""
    if service is None:
        return None

    def pick(status: Any) -> str | None:
        ingress = ((status or {}).get("loadBalancer") or {}).get("ingress") or []
        if not ingress:
            return None
        host = ingress[0].get("hostname") or ingress[0].get("ip")
        return f"http://{host}" if host else None

    return service.status.apply(pick)
