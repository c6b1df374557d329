"""AKS cluster (managed identity, RBAC, Entra ID auth) and its user kubeconfig."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure

from components._common import child, refuse
from components.cluster import ClusterComponent, kube_provider

__all__ = ["AksCluster", "AksClusterArgs"]


@dataclass(frozen=True)
class AksClusterArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    vm_size: str = "Standard_D2s_v5"
    node_count: int = 2
    min_nodes: int = 1
    max_nodes: int = 4
    kubernetes_version: str | None = None
    namespace: str = "mco"
    # The Container Registry the kubelet may pull from (AcrPull is granted on it).
    acr_id: pulumi.Input[str] | None = None
    authorized_ip_ranges: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    # Refused: local accounts are static admin credentials outside Entra ID.
    local_accounts: bool = False


class AksCluster(ClusterComponent):

    def __init__(self, name: str, args: AksClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        who = f"AksCluster '{name}'"
        refuse(args.local_accounts, who, "local_accounts",
               "local accounts are static cluster-admin credentials that bypass Entra ID",
               "remove localAccounts from the stack config")
        refuse(any(r in ("0.0.0.0/0", "::/0") for r in args.authorized_ip_ranges), who,
               "authorized_ip_ranges=0.0.0.0/0", "the Kubernetes API would be open to the whole internet",
               "list your office/VPN ranges instead")
        super().__init__("mco:cluster:AksCluster", name, None, opts)

        cluster = azure.containerservice.ManagedCluster(
            f"{name}-aks",
            resource_group_name=args.resource_group_name,
            location=args.location,
            dns_prefix=f"{name}-mco",
            kubernetes_version=args.kubernetes_version,
            identity={"type": "SystemAssigned"},
            enable_rbac=True,
            disable_local_accounts=True,
            aad_profile={"managed": True, "enable_azure_rbac": True},
            api_server_access_profile=(
                {"authorized_ip_ranges": list(args.authorized_ip_ranges)} if args.authorized_ip_ranges else None
            ),
            network_profile={"network_plugin": "azure", "network_policy": "azure"},
            agent_pool_profiles=[{
                "name": "system",
                "mode": "System",
                "vm_size": args.vm_size,
                "count": args.node_count,
                "min_count": args.min_nodes,
                "max_count": args.max_nodes,
                "enable_auto_scaling": True,
                "os_type": "Linux",
                "type": "VirtualMachineScaleSets",
            }],
            tags={"managed-by": "mco", **args.tags},
            opts=child(self),
        )
        if args.acr_id is not None:
            # The kubelet identity pulls model images from ACR: the built-in AcrPull role.
            azure.authorization.RoleAssignment(
                f"{name}-acr-pull",
                principal_id=cluster.identity_profile.apply(lambda p: (p or {})["kubeletidentity"].object_id),
                principal_type="ServicePrincipal",
                role_definition_id=pulumi.Output.from_input(args.acr_id).apply(_acr_pull_role),
                scope=args.acr_id,
                opts=child(self),
            )

        credentials = azure.containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=args.resource_group_name, resource_name=cluster.name)
        kubeconfig = credentials.kubeconfigs.apply(
            lambda ks: base64.b64decode(ks[0].value).decode() if ks else "")
        self.name = cluster.name
        self.context = cluster.name
        self.kubeconfig = pulumi.Output.secret(kubeconfig)
        self.kind_cluster = pulumi.Output.from_input(None)
        self.namespace = pulumi.Output.from_input(args.namespace)
        self.endpoint = pulumi.Output.from_input(None)
        self.node_port = pulumi.Output.from_input(None)
        self.kubeconfig_path = pulumi.Output.from_input(None)
        self.provider = kube_provider(name, self, kubeconfig=self.kubeconfig, context=self.context)
        self.register_outputs({
            "name": self.name, "context": self.context, "kubeconfig": self.kubeconfig,
            "kind_cluster": self.kind_cluster, "namespace": self.namespace, "endpoint": self.endpoint,
        })


def _acr_pull_role(acr_id: str) -> str:
    subscription = acr_id.split("/")[2]
    # 7f951dda-…: the built-in AcrPull role definition, the same in every subscription.
    return (f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/"
            "7f951dda-4ed3-4680-a7ca-43fe172d538d")
