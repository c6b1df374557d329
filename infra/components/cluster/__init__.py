"""Kubernetes clusters per cloud (EKS, GKE, AKS) and kind for local stacks.

Every cluster component exposes the same outputs, so ``ModelDeployment`` and the stack
exports do not care which cloud a cluster lives in:

    name          cluster name
    context       kube context name inside ``kubeconfig``
    kubeconfig    kubeconfig text (a secret output)
    kind_cluster  the kind cluster name, or None for a cloud cluster
    namespace     where mco deploys the model
    provider      a pulumi_kubernetes Provider bound to this cluster
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components._common import child

__all__ = ["ClusterComponent", "kube_provider"]


class ClusterComponent(pulumi.ComponentResource):
    """What every cluster component outputs, whichever cloud it lives in."""

    name: pulumi.Output[str]
    context: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    kind_cluster: pulumi.Output[str | None]
    namespace: pulumi.Output[str]
    endpoint: pulumi.Output[str | None]
    node_port: pulumi.Output[int | None]
    kubeconfig_path: pulumi.Output[str | None]


def kube_provider(name: str, parent: pulumi.Resource, *, kubeconfig: pulumi.Input[str] | None,
                  context: pulumi.Input[str] | None) -> k8s.Provider:
    """A Kubernetes provider that applies like ``mco deploy`` does: server-side apply.

    ``upsert_existing_objects`` and ``enable_patch_force`` let Pulumi take over objects
    that ``mco deploy`` (field manager ``mco``) applied before, and the other way round,
    because both apply the same rendered manifests.
    """
    return k8s.Provider(
        f"{name}-k8s",
        kubeconfig=kubeconfig,
        context=context,
        enable_server_side_apply=True,
        upsert_existing_objects=True,
        enable_patch_force=True,
        delete_unreachable=False,
        opts=child(parent),
    )
