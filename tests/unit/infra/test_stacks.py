"""The four stacks under Pulumi's mocks: what each creates, and its security-relevant settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.infra.conftest import StackRun, run_stack, stack_config

pytestmark = pytest.mark.timeout(120)


def _with_cluster(stack: str, **extra: object) -> dict[str, object]:
    return {"mco-infra:cluster": {**stack_config(stack)["mco-infra:cluster"], "enabled": True, **extra}}


def _assert_component_shape(run: StackRun) -> None:
    """Every cloud resource is a child of an mco component, and components register outputs."""
    components = [u for u in run.urns if u.split("::")[2].split("$")[-1].startswith("mco:")]
    assert components, "no mco components registered"
    for urn in components:
        _, module, cls = urn.split("::")[2].split("$")[-1].split(":")
        assert module in {"storage", "registry", "cluster", "model_deployment", "resource_group"}, urn
        assert cls[0].isupper(), urn
        outputs = run.monitor.registered_outputs.get(urn) if run.monitor else None
        assert outputs, f"{urn} registered no outputs"
    for urn in run.urns:
        chain = urn.split("::")[2].split("$")
        if chain[-1].startswith("mco:"):
            continue
        assert len(chain) >= 2 and chain[-2].startswith("mco:"), f"{urn} is not parented to an mco component"


def test_aws_stack_bucket_is_private_versioned_encrypted_with_lifecycle() -> None:
    run = run_stack("aws")
    _assert_component_shape(run)

    bucket = run.one("aws:s3/bucket:Bucket")
    assert "acl" not in bucket.inputs and "policy" not in bucket.inputs
    pab = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert pab["blockPublicAcls"] and pab["blockPublicPolicy"] and pab["ignorePublicAcls"] and pab["restrictPublicBuckets"]
    ownership = run.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs
    assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    versioning = run.one("aws:s3/bucketVersioning:BucketVersioning").inputs
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    sse = run.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration").inputs
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("AES256", "aws:kms")
    rules = {r["id"]: r for r in run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]}
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] == 30
    assert rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7
    assert rules["old-bundles-to-infrequent-access"]["filter"]["prefix"] == "mco/models/"
    assert all(r["status"] == "Enabled" for r in rules.values())

    repo = run.one("aws:ecr/repository:Repository").inputs
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    assert repo["encryptionConfigurations"][0]["encryptionType"] in ("AES256", "KMS")
    run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    assert not run.of_type("aws:eks/cluster:Cluster"), "the cluster is optional and off by default"

    aws = run.outputs["clouds"]["aws"]
    assert aws["provider"] == "aws"
    assert aws["storage"] == {"bucket": "mco-models-0123abcd", "region": "us-east-1", "prefix": "mco"}
    assert aws["registry"] == {"url": "123456789012.dkr.ecr.us-east-1.amazonaws.com", "repository": "mco",
                               "auth": "ecr"}


def test_aws_stack_with_eks_has_private_endpoint_and_exec_kubeconfig() -> None:
    run = run_stack("aws", _with_cluster("aws", subnetIds=["subnet-a", "subnet-b"]))
    _assert_component_shape(run)
    eks = run.one("aws:eks/cluster:Cluster").inputs
    assert eks["vpcConfig"]["endpointPrivateAccess"] is True
    assert eks["vpcConfig"]["endpointPublicAccess"] is False
    assert "audit" in eks["enabledClusterLogTypes"]
    nodes = run.one("aws:eks/nodeGroup:NodeGroup").inputs
    assert nodes["subnetIds"] == ["subnet-a", "subnet-b"]
    policies = {r.inputs["policyArn"] for r in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly" in policies
    assert not any("FullAccess" in p or "AdministratorAccess" in p for p in policies)
    provider = run.one("pulumi:providers:kubernetes").inputs
    assert provider["enableServerSideApply"] in (True, "true")
    cluster = run.outputs["clouds"]["aws"]["cluster"]
    assert cluster == {"context": "eks-cluster-eks", "namespace": "mco"}
    kubeconfig = run.outputs["kubeconfigs"]["aws"]
    assert "get-token" in kubeconfig and "token:" not in kubeconfig and "client-key" not in kubeconfig


def test_gcp_stack_bucket_uniform_access_versioned_and_registry_immutable() -> None:
    run = run_stack("gcp")
    _assert_component_shape(run)
    bucket = run.one("gcp:storage/bucket:Bucket").inputs
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["publicAccessPrevention"] == "enforced"
    assert bucket["versioning"]["enabled"] is True
    actions = [r["action"]["type"] for r in bucket["lifecycleRules"]]
    assert "Delete" in actions
    repo = run.one("gcp:artifactregistry/repository:Repository").inputs
    assert repo["format"] == "DOCKER"
    assert repo["dockerConfig"]["immutableTags"] is True
    gcp = run.outputs["clouds"]["gcp"]
    assert gcp["registry"] == {"url": "us-central1-docker.pkg.dev", "repository": "my-gcp-project/mco", "auth": "gcp"}
    assert gcp["storage"]["bucket"] and gcp["storage"]["prefix"] == "mco"


def test_gcp_stack_with_gke_has_workload_identity_and_no_legacy_auth() -> None:
    run = run_stack("gcp", _with_cluster("gcp"))
    _assert_component_shape(run)
    gke = run.one("gcp:container/cluster:Cluster").inputs
    assert gke["enableLegacyAbac"] is False
    assert gke["masterAuth"]["clientCertificateConfig"]["issueClientCertificate"] is False
    assert gke["workloadIdentityConfig"]["workloadPool"] == "my-gcp-project.svc.id.goog"
    assert gke["removeDefaultNodePool"] is True
    pool = run.one("gcp:container/nodePool:NodePool").inputs
    assert pool["nodeConfig"]["shieldedInstanceConfig"]["enableSecureBoot"] is True
    roles = {r.inputs["role"] for r in run.of_type("gcp:projects/iAMMember:IAMMember")}
    assert roles == {"roles/artifactregistry.reader", "roles/logging.logWriter", "roles/monitoring.metricWriter"}
    assert run.outputs["clouds"]["gcp"]["cluster"]["context"].startswith("gke_my-gcp-project_")


def test_azure_stack_storage_https_only_no_public_blobs_and_acr_without_admin() -> None:
    run = run_stack("azure")
    _assert_component_shape(run)
    account = run.one("azure-native:storage:StorageAccount").inputs
    assert account["enableHttpsTrafficOnly"] is True
    assert account["allowBlobPublicAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2"
    container = run.one("azure-native:storage:BlobContainer").inputs
    assert container["publicAccess"] == "None"
    service = run.one("azure-native:storage:BlobServiceProperties").inputs
    assert service["isVersioningEnabled"] is True
    acr = run.one("azure-native:containerregistry:Registry").inputs
    assert acr["adminUserEnabled"] is False
    assert acr["anonymousPullEnabled"] is False
    azure = run.outputs["clouds"]["azure"]
    assert azure["storage"] == {"bucket": "mco-models", "region": "westeurope",
                                "endpoint": "https://artifactsaccount1a2b.blob.core.windows.net", "prefix": "mco"}
    assert azure["registry"] == {"url": "mcoimages.azurecr.io", "repository": "mco", "auth": "acr"}


def test_azure_stack_with_aks_uses_entra_id_and_acr_pull_only() -> None:
    run = run_stack("azure", _with_cluster("azure"))
    _assert_component_shape(run)
    aks = run.one("azure-native:containerservice:ManagedCluster").inputs
    assert aks["disableLocalAccounts"] is True
    assert aks["enableRBAC"] is True
    assert aks["aadProfile"]["managed"] is True
    role = run.one("azure-native:authorization:RoleAssignment").inputs
    assert role["roleDefinitionId"].endswith("7f951dda-4ed3-4680-a7ca-43fe172d538d")  # AcrPull
    assert role["scope"].endswith("/registries/mcoimages")
    assert run.outputs["clouds"]["azure"]["cluster"] == {"context": "cluster-aks", "namespace": "mco"}


def test_local_stack_binds_kind_clusters_with_cloud_shaped_outputs(kubeconfig_with_kind: Path) -> None:
    run = run_stack("local", {
        "mco-infra:mcoConfig": None,
        "mco-infra:deployment": None,
        "mco-infra:cluster": {"kubeconfig": str(kubeconfig_with_kind), "kind": [
            {"cloud": "aws", "name": "mco-aws", "node_port": 30080, "endpoint": "http://127.0.0.1:18081"},
            {"cloud": "gcp", "name": "mco-gcp", "node_port": 30080, "endpoint": "http://127.0.0.1:18082"},
            {"cloud": "azure", "name": "mco-azure", "node_port": 30080, "endpoint": "http://127.0.0.1:18083"},
        ]},
    })
    _assert_component_shape(run)
    # Without a deployment nothing needs the Kubernetes plugin, so no provider is made.
    assert not run.of_type("pulumi:providers:kubernetes")
    clouds = run.outputs["clouds"]
    assert set(clouds) == {"aws", "gcp", "azure"}
    assert clouds["gcp"]["cluster"] == {"context": "kind-mco-gcp", "kind_cluster": "mco-gcp", "namespace": "mco",
                                        "endpoint": "http://127.0.0.1:18082", "node_port": 30080,
                                        "kubeconfig": str(kubeconfig_with_kind)}
    # The same keys as a cloud cluster's section, plus the kind-only ones.
    assert {"context", "namespace"} <= set(clouds["aws"]["cluster"])


def test_local_stack_without_the_kind_cluster_fails_at_preview_with_the_fix(tmp_path: Path) -> None:
    import pulumi

    empty = tmp_path / "kubeconfig"
    empty.write_text("apiVersion: v1\nkind: Config\ncontexts: []\n")
    with pytest.raises(pulumi.RunError, match=r"context 'kind-mco-aws' is not in .*mco local up clusters"):
        run_stack("local", {
            "mco-infra:mcoConfig": None, "mco-infra:deployment": None,
            "mco-infra:cluster": {"kubeconfig": str(empty), "kind": [{"cloud": "aws", "name": "mco-aws"}]},
        }, preview=True)


def test_unknown_cloud_is_a_clear_error() -> None:
    import pulumi

    with pytest.raises(pulumi.RunError, match="set it to aws, gcp, azure or local"):
        run_stack("aws", {"mco-infra:cloud": "ibm"})
