"""EKS cluster with one managed node group, and a kubeconfig that uses `aws eks get-token`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import yaml

from components._common import child, refuse
from components.cluster import ClusterComponent, kube_provider

__all__ = ["EksCluster", "EksClusterArgs"]

_NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    # Nodes pull model images from ECR by digest; read-only is all they need.
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)


@dataclass(frozen=True)
class EksClusterArgs:
    region: str
    subnet_ids: tuple[str, ...]        # private subnets of an existing VPC, at least two AZs
    version: str | None = None         # None: EKS's default
    instance_types: tuple[str, ...] = ("t3.medium",)
    desired_size: int = 2
    min_size: int = 1
    max_size: int = 4
    namespace: str = "mco"
    # The API endpoint is private unless CIDRs are listed; 0.0.0.0/0 is refused.
    public_access_cidrs: tuple[str, ...] = ()
    kms_key_arn: str | None = None     # envelope encryption of Secrets
    tags: dict[str, str] = field(default_factory=dict)


class EksCluster(ClusterComponent):

    def __init__(self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        who = f"EksCluster '{name}'"
        refuse(any(c in ("0.0.0.0/0", "::/0") for c in args.public_access_cidrs), who,
               "public_access_cidrs=0.0.0.0/0", "the Kubernetes API would be reachable from the whole internet",
               "list your office/VPN CIDRs instead, or none for a private endpoint")
        refuse(len(args.subnet_ids) < 2, who, "subnet_ids",
               "EKS needs subnets in at least two availability zones", "set cluster.subnetIds to two or more subnet IDs")
        super().__init__("mco:cluster:EksCluster", name, None, opts)
        tags = {"managed-by": "mco", **args.tags}

        cluster_role = aws.iam.Role(
            f"{name}-cluster-role",
            assume_role_policy=_assume_role("eks.amazonaws.com"),
            tags=tags,
            opts=child(self),
        )
        cluster_policy = aws.iam.RolePolicyAttachment(
            f"{name}-cluster-policy",
            role=cluster_role.name,
            policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
            opts=child(self),
        )
        public = bool(args.public_access_cidrs)
        cluster = aws.eks.Cluster(
            f"{name}-eks",
            role_arn=cluster_role.arn,
            version=args.version,
            vpc_config={
                "subnet_ids": list(args.subnet_ids),
                "endpoint_private_access": True,
                "endpoint_public_access": public,
                "public_access_cidrs": list(args.public_access_cidrs) if public else None,
            },
            access_config={"authentication_mode": "API_AND_CONFIG_MAP",
                           "bootstrap_cluster_creator_admin_permissions": True},
            enabled_cluster_log_types=["api", "audit", "authenticator"],
            encryption_config=(
                {"resources": ["secrets"], "provider": {"key_arn": args.kms_key_arn}} if args.kms_key_arn else None
            ),
            tags=tags,
            opts=child(self, depends_on=[cluster_policy]),
        )

        node_role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=_assume_role("ec2.amazonaws.com"),
            tags=tags,
            opts=child(self),
        )
        attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-node-policy-{i}", role=node_role.name, policy_arn=arn,
                                         opts=child(self))
            for i, arn in enumerate(_NODE_POLICIES)
        ]
        aws.eks.NodeGroup(
            f"{name}-nodes",
            cluster_name=cluster.name,
            node_role_arn=node_role.arn,
            subnet_ids=list(args.subnet_ids),
            instance_types=list(args.instance_types),
            scaling_config={"desired_size": args.desired_size, "min_size": args.min_size,
                            "max_size": args.max_size},
            update_config={"max_unavailable": 1},
            tags=tags,
            opts=child(self, depends_on=attachments),
        )

        context = cluster.name.apply(lambda n: f"eks-{n}")
        kubeconfig = pulumi.Output.all(cluster.name, cluster.endpoint, cluster.certificate_authority).apply(
            lambda v: _kubeconfig(v[0], v[1], (v[2] or {}).get("data", "") if isinstance(v[2], dict)
                                  else getattr(v[2], "data", ""), args.region))
        self.name = cluster.name
        self.context = context
        self.kubeconfig = pulumi.Output.secret(kubeconfig)
        self.kind_cluster = pulumi.Output.from_input(None)
        self.namespace = pulumi.Output.from_input(args.namespace)
        self.endpoint = pulumi.Output.from_input(None)  # the Service's load balancer, known after deploy
        self.node_port = pulumi.Output.from_input(None)
        self.kubeconfig_path = pulumi.Output.from_input(None)
        self.provider = kube_provider(name, self, kubeconfig=self.kubeconfig, context=context)
        self.register_outputs({
            "name": self.name, "context": self.context, "kubeconfig": self.kubeconfig,
            "kind_cluster": self.kind_cluster, "namespace": self.namespace, "endpoint": self.endpoint,
        })


def _assume_role(service: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    })


def _kubeconfig(name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig with no credential in it: kubectl runs `aws eks get-token` each time."""
    context = f"eks-{name}"
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": context, "context": {"cluster": name, "user": context}}],
        "current-context": context,
        "users": [{"name": context, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", name, "--region", region],
        }}}],
    }, sort_keys=False)
