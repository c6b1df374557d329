"""mco's Pulumi program: read the stack's config, wire the components, export.

Stacks (``Pulumi.<stack>.yaml``):
    aws    S3 bucket + ECR repository (+ optional EKS)
    gcp    GCS bucket + Artifact Registry repository (+ optional GKE)
    azure  resource group, storage account + container, ACR (+ optional AKS)
    local  the kind clusters of ``mco local up clusters``, with the local stand-ins' storage and registries

Every stack exports ``clouds``: the ``clouds:`` mapping of mco.yaml for what it made,
which ``mco config import-pulumi --stack NAME`` merges into mco.yaml. With a
``deployment`` config, the stack also deploys a model bundle (``ModelDeployment``) and
records the release in mco's history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

config = pulumi.Config()
cloud = config.require("cloud")
cloud_name = config.get("cloudName") or cloud
storage_cfg: dict[str, Any] = config.get_object("storage") or {}
registry_cfg: dict[str, Any] = config.get_object("registry") or {}
cluster_cfg: dict[str, Any] = config.get_object("cluster") or {}
deployment_cfg: dict[str, Any] = config.get_object("deployment") or {}
tags: dict[str, str] = config.get_object("tags") or {}
project_dir = Path(__file__).resolve().parent


def flag(section: dict[str, Any], key: str, default: bool = False) -> bool:
    return bool(section.get(key, default))


def from_project(path: str) -> str:
    """Paths in stack config are relative to this project directory."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (project_dir / p).resolve())


def mco_config() -> Any | None:
    """The mco config named by ``mcoConfig`` (project name, state dir, packaging uid, local clusters)."""
    path = config.get("mcoConfig")
    if not path:
        return None
    from orchestrator.config import load_config
    from orchestrator.errors import MCOError

    try:
        return load_config(from_project(path), required=True)
    except MCOError as exc:
        raise pulumi.RunError(f"mcoConfig: {exc}") from None


clouds: dict[str, dict[str, Any]] = {}
kubeconfigs: dict[str, pulumi.Output[str]] = {}
targets: list[Any] = []


def cluster_section(cluster: Any, extra: dict[str, Any] | None = None) -> pulumi.Output[dict[str, Any]]:
    """The mco.yaml ``cluster:`` section of any cluster component (same shape for every cloud)."""
    return pulumi.Output.all(cluster.context, cluster.kind_cluster, cluster.namespace, cluster.endpoint,
                             cluster.node_port, cluster.kubeconfig_path).apply(
        lambda v: {k: val for k, val in {
            "context": v[0], "kind_cluster": v[1], "namespace": v[2], "endpoint": v[3], "node_port": v[4],
            "kubeconfig": v[5], **(extra or {}),
        }.items() if val is not None})


def cloud_section(provider: str, bucket: Any, store: Any, registry: Any, *, region: str,
                  storage_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The mco.yaml section of one cloud: its store (``bucket`` is the container on Azure),
    its registry (logged in with the cloud's identity) and its prices (for ``region``)."""
    from orchestrator.providers.loader import provider_class

    declared = provider_class(provider)
    return {
        "provider": provider,
        "storage": {"bucket": bucket, "region": store.region, "prefix": store.prefix, **(storage_extra or {})},
        "registry": {"url": registry.url, "repository": registry.repository, "auth": declared.registry_auth},
        "pricing_key": declared.pricing_key(region),
    }


def add_cluster(section: dict[str, Any], provider: str, cluster: Any) -> None:
    """Record a cloud's cluster: in its section, its kubeconfig, and as a deploy target."""
    section["cluster"] = cluster_section(cluster)
    kubeconfigs[cloud_name] = cluster.kubeconfig
    targets.append((cloud_name, provider, cluster, cluster_cfg.get("namespace", "mco"), None, None))


if cloud == "aws":
    from components.registry.aws import EcrRegistry, EcrRegistryArgs
    from components.storage.aws import S3ArtifactStore, S3ArtifactStoreArgs

    region = pulumi.Config("aws").require("region")
    store = S3ArtifactStore("artifacts", S3ArtifactStoreArgs(
        region=region,
        bucket_prefix=storage_cfg.get("bucketPrefix", "mco-models-"),
        prefix=storage_cfg.get("prefix", "mco"),
        kms_key_arn=storage_cfg.get("kmsKeyArn"),
        noncurrent_version_days=int(storage_cfg.get("noncurrentVersionDays", 30)),
        force_destroy=flag(storage_cfg, "forceDestroy"),
        public_access=flag(storage_cfg, "publicAccess"),
        versioning=flag(storage_cfg, "versioning", True),
        tags=tags,
    ))
    registry = EcrRegistry("images", EcrRegistryArgs(
        repository_name=registry_cfg.get("repositoryName", "mco"),
        kms_key_arn=registry_cfg.get("kmsKeyArn"),
        mutable_tags=flag(registry_cfg, "mutableTags"),
        scan_on_push=flag(registry_cfg, "scanOnPush", True),
        tags=tags,
    ))
    section = cloud_section("aws", store.bucket, store, registry, region=region)
    if flag(cluster_cfg, "enabled"):
        from components.cluster.aws import EksCluster, EksClusterArgs

        cluster = EksCluster("cluster", EksClusterArgs(
            namespace=cluster_cfg.get("namespace", "mco"),
            region=region,
            subnet_ids=tuple(cluster_cfg.get("subnetIds", ())),
            version=cluster_cfg.get("version"),
            instance_types=tuple(cluster_cfg.get("instanceTypes", ("t3.medium",))),
            desired_size=int(cluster_cfg.get("desiredSize", 2)),
            public_access_cidrs=tuple(cluster_cfg.get("publicAccessCidrs", ())),
            kms_key_arn=cluster_cfg.get("kmsKeyArn"),
            tags=tags,
        ))
        add_cluster(section, "aws", cluster)
    clouds[cloud_name] = section

elif cloud == "gcp":
    from components.registry.gcp import ArtifactRegistry, ArtifactRegistryArgs
    from components.storage.gcp import GcsArtifactStore, GcsArtifactStoreArgs

    gcp_config = pulumi.Config("gcp")
    project = gcp_config.require("project")
    location = gcp_config.get("region") or "us-central1"
    store = GcsArtifactStore("artifacts", GcsArtifactStoreArgs(
        location=storage_cfg.get("location", location.upper()),
        project=project,
        bucket_name=storage_cfg.get("bucketName"),
        prefix=storage_cfg.get("prefix", "mco"),
        force_destroy=flag(storage_cfg, "forceDestroy"),
        public_access=flag(storage_cfg, "publicAccess"),
        uniform_bucket_level_access=flag(storage_cfg, "uniformBucketLevelAccess", True),
        versioning=flag(storage_cfg, "versioning", True),
        labels=tags,
    ))
    registry = ArtifactRegistry("images", ArtifactRegistryArgs(
        location=location,
        project=project,
        repository_id=registry_cfg.get("repositoryId", "mco"),
        mutable_tags=flag(registry_cfg, "mutableTags"),
        labels=tags,
    ))
    section = cloud_section("gcp", store.bucket, store, registry, region=location)
    if flag(cluster_cfg, "enabled"):
        from components.cluster.gcp import GkeCluster, GkeClusterArgs

        cluster = GkeCluster("cluster", GkeClusterArgs(
            namespace=cluster_cfg.get("namespace", "mco"),
            location=cluster_cfg.get("location", location),
            project=project,
            machine_type=cluster_cfg.get("machineType", "e2-standard-2"),
            node_count=int(cluster_cfg.get("nodeCount", 1)),
            network=cluster_cfg.get("network"),
            subnetwork=cluster_cfg.get("subnetwork"),
            deletion_protection=flag(cluster_cfg, "deletionProtection", True),
            legacy_abac=flag(cluster_cfg, "legacyAbac"),
            issue_client_certificate=flag(cluster_cfg, "issueClientCertificate"),
            labels=tags,
        ))
        add_cluster(section, "gcp", cluster)
    clouds[cloud_name] = section

elif cloud == "azure":
    from components.registry.azure import AcrRegistry, AcrRegistryArgs
    from components.resource_group import AzureResourceGroup, AzureResourceGroupArgs
    from components.storage.azure import AzureArtifactStore, AzureArtifactStoreArgs

    location = pulumi.Config("azure-native").require("location")
    group = AzureResourceGroup("mco", AzureResourceGroupArgs(
        location=location, name=config.get("resourceGroupName"), tags=tags))
    store = AzureArtifactStore("artifacts", AzureArtifactStoreArgs(
        resource_group_name=group.name,
        location=location,
        container_name=storage_cfg.get("containerName", "mco-models"),
        prefix=storage_cfg.get("prefix", "mco"),
        sku=storage_cfg.get("sku", "Standard_ZRS"),
        public_access=flag(storage_cfg, "publicAccess"),
        allow_http=flag(storage_cfg, "allowHttp"),
        min_tls_version=storage_cfg.get("minTlsVersion", "TLS1_2"),
        tags=tags,
    ))
    registry = AcrRegistry("images", AcrRegistryArgs(
        resource_group_name=group.name,
        location=location,
        registry_name=registry_cfg.get("registryName"),
        sku=registry_cfg.get("sku", "Standard"),
        admin_user=flag(registry_cfg, "adminUser"),
        anonymous_pull=flag(registry_cfg, "anonymousPull"),
        tags=tags,
    ))
    section = cloud_section("azure", store.container, store, registry, region=location,
                            storage_extra={"endpoint": store.endpoint})
    if flag(cluster_cfg, "enabled"):
        from components.cluster.azure import AksCluster, AksClusterArgs

        cluster = AksCluster("cluster", AksClusterArgs(
            namespace=cluster_cfg.get("namespace", "mco"),
            resource_group_name=group.name,
            location=location,
            vm_size=cluster_cfg.get("vmSize", "Standard_D2s_v5"),
            node_count=int(cluster_cfg.get("nodeCount", 2)),
            acr_id=registry.registry_id,
            authorized_ip_ranges=tuple(cluster_cfg.get("authorizedIpRanges", ())),
            local_accounts=flag(cluster_cfg, "localAccounts"),
            tags=tags,
        ))
        add_cluster(section, "azure", cluster)
    clouds[cloud_name] = section

elif cloud == "local":
    from components.cluster.kind import KindCluster, KindClusterArgs

    mco_cfg = mco_config()
    # Which kind clusters: those of the mco config (what `mco local up` wrote), else the
    # stack's own list. Storage and registries are the local stand-ins: passed through.
    local_clouds: dict[str, dict[str, Any]] = {}
    if mco_cfg is not None:
        for name, c in mco_cfg.clouds.items():
            if c.cluster is not None and c.cluster.kind_cluster:
                local_clouds[name] = c.model_dump(mode="json", exclude_none=True)
    for entry in cluster_cfg.get("kind", []):
        local_clouds.setdefault(entry["cloud"], {"provider": entry.get("provider", entry["cloud"])})["cluster"] = {
            "kind_cluster": entry["name"], "context": f"kind-{entry['name']}",
            **{k: entry[k] for k in ("namespace", "node_port", "endpoint", "kubeconfig") if k in entry},
        }
    if not local_clouds:
        raise pulumi.RunError(
            "the local stack found no kind clusters. fix: run `.venv/bin/mco local up clusters` and set "
            "mco-infra:mcoConfig to the mco.local.yaml it wrote, or list clusters under mco-infra:cluster.kind")
    require_existing = flag(cluster_cfg, "requireExisting", True)
    mco_applier = (deployment_cfg.get("applier") == "mco")
    for name, section in local_clouds.items():
        c = section["cluster"]
        endpoint = c.get("endpoint")
        host_port = int(endpoint.rsplit(":", 1)[1]) if endpoint and endpoint.rsplit(":", 1)[-1].isdigit() else None
        cluster = KindCluster(f"kind-{name}", KindClusterArgs(
            cluster_name=c["kind_cluster"],
            kubeconfig=c.get("kubeconfig") or cluster_cfg.get("kubeconfig"),
            namespace=c.get("namespace", "mco"),
            node_port=c.get("node_port"),
            host_port=host_port,
            require_existing=require_existing,
            # Only a deployment through pulumi_kubernetes needs the Kubernetes plugin.
            create_provider=bool(deployment_cfg) and not mco_applier,
        ))
        clouds[name] = {**section, "cluster": cluster_section(cluster)}
        targets.append((name, "kind", cluster, c.get("namespace", "mco"), c.get("node_port"),
                        c.get("kubeconfig") or cluster_cfg.get("kubeconfig")))

else:
    raise pulumi.RunError(f"mco-infra:cloud is '{cloud}'. fix: set it to aws, gcp, azure or local")


if deployment_cfg and targets:
    from components.cluster.kind import resolve_local_image
    from components.model_deployment import DeploymentTarget, ModelDeployment, ModelDeploymentArgs

    mco_cfg = mco_config()
    images: dict[str, str] = deployment_cfg.get("images") or {}
    default_image = deployment_cfg.get("image")
    image_of: dict[str, str] = {}
    for name, *_ in targets:
        if image := images.get(name, default_image):
            image_of[name] = image
    missing = [t[0] for t in targets if t[0] not in image_of]
    if missing:
        raise pulumi.RunError(
            f"deployment: no image for {', '.join(missing)}. fix: set mco-infra:deployment.image (or .images.CLOUD) "
            "to the digest `mco push`/`mco package` printed, e.g. REGISTRY/REPO@sha256:… or sha256:<image id>")
    state_dir = deployment_cfg.get("stateDir")
    if state_dir is None and mco_cfg is not None:
        from orchestrator.releases.store import state_dir_for

        state_dir = str(state_dir_for(mco_cfg))
    model = ModelDeployment("model", ModelDeploymentArgs(
        model_dir=from_project(deployment_cfg["model"]),
        targets=tuple(
            DeploymentTarget(
                cloud=name, overlay=overlay, provider=cluster.provider,
                image=resolve_local_image(image_of[name]) if overlay == "kind" else image_of[name],
                namespace=namespace, node_port=node_port, endpoint=cluster.endpoint,
                kind_cluster=getattr(cluster, "cluster_name", None),
                image_ref=image_of[name] if overlay == "kind" and not image_of[name].startswith("sha256:") else None,
                context=getattr(cluster, "context_name", None),
                kubeconfig=kubeconfig,
            )
            for name, overlay, cluster, namespace, node_port, kubeconfig in targets
        ),
        replicas=int(deployment_cfg.get("replicas", mco_cfg.deploy.replicas if mco_cfg else 2)),
        run_as_user=int(deployment_cfg.get("runAsUser", mco_cfg.packaging.uid if mco_cfg else 10001)),
        service=mco_cfg.project.name if mco_cfg else deployment_cfg.get("service", "mco"),
        state_dir=from_project(state_dir) if state_dir else None,
        manifests_dir=from_project(deployment_cfg["manifests"]) if deployment_cfg.get("manifests") else None,
        applier=deployment_cfg.get("applier", "pulumi-kubernetes"),
        rollout_timeout_s=float(deployment_cfg.get("rolloutTimeoutS", mco_cfg.deploy.rollout_timeout_s if mco_cfg else 300)),
    ))
    pulumi.export("release", model.release)
    pulumi.export("model_digest", model.model_digest)
    pulumi.export("endpoints", model.endpoints)

global_entry_cfg: dict[str, Any] = config.get_object("globalEntry") or {}
if global_entry_cfg:
    # one DNS name in front of every cloud's routers; Route 53 lives in the AWS stack
    if cloud != "aws":
        raise pulumi.RunError("mco-infra:globalEntry is a Route 53 component. fix: set it in the aws stack")
    from components.global_entry import GlobalEntry, GlobalEntryArgs, RouterEndpoint

    entry = GlobalEntry("global-entry", GlobalEntryArgs(
        zone_id=global_entry_cfg["zoneId"], record_name=global_entry_cfg["recordName"],
        endpoints=tuple(RouterEndpoint(cloud=e["cloud"], fqdn=e["fqdn"], latency_region=e.get("latencyRegion"))
                        for e in global_entry_cfg.get("endpoints", [])),
        routing=global_entry_cfg.get("routing", "latency"), ttl_s=int(global_entry_cfg.get("ttl", 30)),
        health_check_type=global_entry_cfg.get("healthCheckType", "HTTPS"), tags=tags,
    ))
    pulumi.export("global_entry", entry.url)

pulumi.export("stack_cloud", cloud)
pulumi.export("clouds", clouds)
if kubeconfigs:
    pulumi.export("kubeconfigs", pulumi.Output.secret(kubeconfigs))
