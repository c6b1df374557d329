"""GKE cluster (regional, Workload Identity, shielded nodes) and an exec-auth kubeconfig."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp
import yaml

from components._common import child, refuse
from components.cluster import ClusterComponent, kube_provider

__all__ = ["GkeCluster", "GkeClusterArgs"]


@dataclass(frozen=True)
class GkeClusterArgs:
    location: str                      # region (regional cluster) or zone
    project: str
    machine_type: str = "e2-standard-2"
    node_count: int = 1                # per zone
    min_nodes: int = 1
    max_nodes: int = 3
    release_channel: str = "REGULAR"
    namespace: str = "mco"
    network: str | None = None
    subnetwork: str | None = None
    deletion_protection: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    # Refused: basic-auth/legacy ABAC and client certificates bypass IAM.
    legacy_abac: bool = False
    issue_client_certificate: bool = False


class GkeCluster(ClusterComponent):

    def __init__(self, name: str, args: GkeClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        who = f"GkeCluster '{name}'"
        refuse(args.legacy_abac, who, "legacy_abac", "legacy ABAC grants broad rights outside RBAC",
               "remove legacyAbac from the stack config")
        refuse(args.issue_client_certificate, who, "issue_client_certificate",
               "a static client certificate cannot be revoked", "remove issueClientCertificate from the stack config")
        super().__init__("mco:cluster:GkeCluster", name, None, opts)
        labels = {"managed-by": "mco", **args.labels}

        node_sa = gcp.serviceaccount.Account(
            f"{name}-nodes-sa",
            account_id=f"{name}-nodes"[:28],
            display_name="mco GKE nodes",
            project=args.project,
            opts=child(self),
        )
        # Nodes pull model images from Artifact Registry and write logs and metrics; nothing more.
        for role in ("roles/artifactregistry.reader", "roles/logging.logWriter", "roles/monitoring.metricWriter"):
            gcp.projects.IAMMember(
                f"{name}-nodes-{role.split('/')[1].lower()}",
                project=args.project,
                role=role,
                member=node_sa.email.apply(lambda e: f"serviceAccount:{e}"),
                opts=child(self),
            )
        cluster = gcp.container.Cluster(
            f"{name}-gke",
            project=args.project,
            location=args.location,
            network=args.network,
            subnetwork=args.subnetwork,
            remove_default_node_pool=True,
            initial_node_count=1,
            release_channel={"channel": args.release_channel},
            workload_identity_config={"workload_pool": f"{args.project}.svc.id.goog"},
            enable_legacy_abac=False,
            enable_shielded_nodes=True,
            master_auth={"client_certificate_config": {"issue_client_certificate": False}},
            network_policy={"enabled": True, "provider": "CALICO"},
            addons_config={"network_policy_config": {"disabled": False}},
            deletion_protection=args.deletion_protection,
            resource_labels=labels,
            opts=child(self),
        )
        gcp.container.NodePool(
            f"{name}-nodes",
            project=args.project,
            location=args.location,
            cluster=cluster.name,
            node_count=args.node_count,
            autoscaling={"min_node_count": args.min_nodes, "max_node_count": args.max_nodes},
            management={"auto_repair": True, "auto_upgrade": True},
            node_config={
                "machine_type": args.machine_type,
                "service_account": node_sa.email,
                "oauth_scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                "shielded_instance_config": {"enable_secure_boot": True, "enable_integrity_monitoring": True},
                "workload_metadata_config": {"mode": "GKE_METADATA"},
                "labels": labels,
            },
            opts=child(self),
        )

        context = cluster.name.apply(lambda n: f"gke_{args.project}_{args.location}_{n}")
        kubeconfig = pulumi.Output.all(cluster.name, cluster.endpoint, cluster.master_auth).apply(
            lambda v: _kubeconfig(f"gke_{args.project}_{args.location}_{v[0]}", v[1], _ca(v[2])))
        self.name = cluster.name
        self.context = context
        self.kubeconfig = pulumi.Output.secret(kubeconfig)
        self.kind_cluster = pulumi.Output.from_input(None)
        self.namespace = pulumi.Output.from_input(args.namespace)
        self.endpoint = pulumi.Output.from_input(None)
        self.node_port = pulumi.Output.from_input(None)
        self.kubeconfig_path = pulumi.Output.from_input(None)
        self.provider = kube_provider(name, self, kubeconfig=self.kubeconfig, context=context)
        self.register_outputs({
            "name": self.name, "context": self.context, "kubeconfig": self.kubeconfig,
            "kind_cluster": self.kind_cluster, "namespace": self.namespace, "endpoint": self.endpoint,
        })


def _ca(master_auth: object) -> str:
    if isinstance(master_auth, dict):
        return str(master_auth.get("cluster_ca_certificate") or master_auth.get("clusterCaCertificate") or "")
    return str(getattr(master_auth, "cluster_ca_certificate", "") or "")


def _kubeconfig(context: str, endpoint: str, ca_data: str) -> str:
    """No credential inside: kubectl asks gke-gcloud-auth-plugin for a token each time."""
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": f"https://{endpoint}",
                                                    "certificate-authority-data": ca_data}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
        "users": [{"name": context, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "gke-gcloud-auth-plugin",
            "provideClusterInfo": True,
        }}}],
    }, sort_keys=False)
