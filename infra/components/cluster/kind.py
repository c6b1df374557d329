"""A local kind cluster (made by ``mco local up clusters``), with a cloud cluster's outputs.

kind clusters are built offline from images this machine builds itself, which only
``mco local up clusters`` knows how to do; so this component does not create the
cluster, it binds to it and fails at preview, with the command to run, when it is not
there. Its outputs have the same shape as ``EksCluster``/``GkeCluster``/``AksCluster``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic as dyn
import yaml

from components.cluster import ClusterComponent, kube_provider

__all__ = ["KindCluster", "KindClusterArgs", "KindImageLoad", "KindImageLoadArgs", "default_kubeconfig",
           "resolve_local_image"]


def default_kubeconfig() -> Path:
    """Where kind writes contexts: the first file of $KUBECONFIG, else ~/.kube/config."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0]).expanduser()
    return Path.home() / ".kube" / "config"


@dataclass(frozen=True)
class KindClusterArgs:
    cluster_name: str                 # e.g. mco-aws
    kubeconfig: str | None = None     # path; None = $KUBECONFIG or ~/.kube/config
    namespace: str = "mco"
    node_port: int | None = None      # the NodePort kind maps to the host
    host_port: int | None = None      # the loopback port that NodePort is mapped to
    # A cluster that is not there is a clear preview error unless this is False (tests
    # that only check the program's shape).
    require_existing: bool = True
    # False when nothing in the stack applies through pulumi_kubernetes (applier "mco"):
    # then the stack needs no Kubernetes resource plugin.
    create_provider: bool = True

    @property
    def context(self) -> str:
        return f"kind-{self.cluster_name}"


class KindCluster(ClusterComponent):

    def __init__(self, name: str, args: KindClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        path = Path(args.kubeconfig).expanduser() if args.kubeconfig else default_kubeconfig()
        kubeconfig_text = _kubeconfig_with_context(path, args.context, name) if args.require_existing else ""
        super().__init__("mco:cluster:KindCluster", name, None, opts)

        self.provider = kube_provider(
            name, self,
            # The provider reads the file itself; passing the path keeps the kubeconfig's
            # client key out of Pulumi state.
            kubeconfig=str(path) if args.kubeconfig else None,
            context=args.context,
        ) if args.create_provider else None
        self.context_name = args.context  # plain, for appliers that need no Output
        self.cluster_name = args.cluster_name  # plain: ModelDeployment loads images into this cluster
        self.name = pulumi.Output.from_input(args.cluster_name)
        self.context = pulumi.Output.from_input(args.context)
        self.kubeconfig = pulumi.Output.secret(kubeconfig_text)
        self.kind_cluster = pulumi.Output.from_input(args.cluster_name)
        self.namespace = pulumi.Output.from_input(args.namespace)
        self.node_port = pulumi.Output.from_input(args.node_port)
        self.kubeconfig_path = pulumi.Output.from_input(str(path) if args.kubeconfig else None)
        self.endpoint = pulumi.Output.from_input(
            f"http://127.0.0.1:{args.host_port}" if args.host_port else None)
        self.register_outputs({
            "name": self.name, "context": self.context, "kubeconfig": self.kubeconfig,
            "kind_cluster": self.kind_cluster, "namespace": self.namespace, "endpoint": self.endpoint,
            "node_port": self.node_port, "kubeconfig_path": self.kubeconfig_path,
        })


def _kubeconfig_with_context(path: Path, context: str, component: str) -> str:
    """The kubeconfig text, after checking it has ``context``; a clear error otherwise."""
    fix = "run `.venv/bin/mco local up clusters` first, or set kubeconfig in the local stack config"
    try:
        text = path.read_text()
        data = yaml.safe_load(text) or {}
    except FileNotFoundError:
        raise pulumi.RunError(f"KindCluster '{component}': kubeconfig {path} does not exist. fix: {fix}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise pulumi.RunError(f"KindCluster '{component}': cannot read kubeconfig {path}: {exc}. fix: {fix}") from None
    names = [c.get("name") for c in data.get("contexts") or [] if isinstance(c, dict)]
    if context not in names:
        raise pulumi.RunError(
            f"KindCluster '{component}': context '{context}' is not in {path} "
            f"(it has: {', '.join(n for n in names if n) or 'none'}). fix: {fix}")
    return text


# ---------------------------------------------------------------- images for kind nodes


def resolve_local_image(ref: str) -> str:
    """The ID (``sha256:…``) of a local Docker image given by name, tag or ID.

    kind nodes get images by ``kind load`` (``docker save``), which keeps the image ID but
    no registry digest; manifests therefore name the image by ID. Read-only, so it is
    safe at preview.
    """
    if re.fullmatch(r"sha256:[0-9a-f]{64}", ref):
        return ref
    from orchestrator.errors import MCOError
    from orchestrator.releases.images import local_image

    try:
        return local_image(ref).image_id
    except MCOError as exc:
        raise pulumi.RunError(f"deployment image '{ref}': {exc}") from None


@dataclass(frozen=True)
class KindImageLoadArgs:
    image: str          # the image ID (sha256:…) the manifests name
    ref: str            # the name it is loaded under (name:tag): `kind load` of a bare ID gives
                        # the node an unnamed image the kubelet cannot resolve
    kind_cluster: str   # e.g. mco-aws
    cloud: str          # the cloud's name in mco.yaml


def load_into_kind(props: dict[str, Any]) -> None:
    """``kind load`` the image unless the node has it (mco's own loader, as `mco deploy` uses)."""
    from orchestrator.releases.images import LocalImage, ensure_on_kind, local_image

    found = local_image(props["ref"])
    if found.image_id != props["image"]:
        raise RuntimeError(f"image {props['ref']} is now {found.image_id}, not {props['image']} as planned; "
                           "run `pulumi up` again to deploy what the tag names now")
    # Always load by name here (create/update only): the node may hold the ID under no
    # usable name (an earlier load by bare ID), which the "already there" check of
    # ensure_on_kind cannot tell apart from a good copy. Then verify as mco deploy does.
    from orchestrator.kube.kind import load_image

    cloud, cluster = props["cloud"], props["kind_cluster"]
    load_image(props["ref"], [cluster])
    image = LocalImage(name=props["ref"], image_id=found.image_id, bundle_digest=found.bundle_digest)
    errors = ensure_on_kind(image, {cloud: cluster})
    if errors:
        raise RuntimeError(f"kind load into {cluster} failed: {errors[cloud]}")


class KindImageLoadProvider(dyn.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        load_into_kind(props)
        return dyn.CreateResult(id_=f"{props['kind_cluster']}/{props['image']}", outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        changed = any(olds.get(k) != news.get(k) for k in ("image", "ref", "kind_cluster"))
        return dyn.DiffResult(changes=changed, replaces=["image", "kind_cluster"] if changed else [],
                              delete_before_replace=False)

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        return dyn.ReadResult(id_=id_, outs=props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # images on a node are garbage-collected by the kubelet


class KindImageLoad(dyn.Resource, module="mco", name="KindImageLoad"):
    """The model image on a kind node, loaded with ``kind load`` when missing (``pulumi-python:dynamic/mco:KindImageLoad``)."""

    def __init__(self, name: str, args: KindImageLoadArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(KindImageLoadProvider(), name,
                         {"image": args.image, "ref": args.ref, "kind_cluster": args.kind_cluster,
                          "cloud": args.cloud}, opts)
