"""A component asked for an insecure setting stops the preview with a message naming it and the fix."""

from __future__ import annotations

import pytest

from tests.unit.infra.conftest import RecordingMocks, run_stack, stack_config

pytestmark = pytest.mark.timeout(120)

# (stack, config key, setting under it, value, component in the message, resource that must not exist)
CASES = [
    ("aws", "storage", "publicAccess", True, "S3ArtifactStore", "aws:s3/bucket:Bucket"),
    ("aws", "storage", "versioning", False, "S3ArtifactStore", "aws:s3/bucket:Bucket"),
    ("aws", "registry", "mutableTags", True, "EcrRegistry", "aws:ecr/repository:Repository"),
    ("aws", "registry", "scanOnPush", False, "EcrRegistry", "aws:ecr/repository:Repository"),
    ("aws", "cluster", "publicAccessCidrs", ["0.0.0.0/0"], "EksCluster", "aws:eks/cluster:Cluster"),
    ("gcp", "storage", "publicAccess", True, "GcsArtifactStore", "gcp:storage/bucket:Bucket"),
    ("gcp", "storage", "uniformBucketLevelAccess", False, "GcsArtifactStore", "gcp:storage/bucket:Bucket"),
    ("gcp", "registry", "mutableTags", True, "ArtifactRegistry", "gcp:artifactregistry/repository:Repository"),
    ("gcp", "cluster", "legacyAbac", True, "GkeCluster", "gcp:container/cluster:Cluster"),
    ("azure", "storage", "publicAccess", True, "AzureArtifactStore", "azure-native:storage:StorageAccount"),
    ("azure", "storage", "allowHttp", True, "AzureArtifactStore", "azure-native:storage:StorageAccount"),
    ("azure", "storage", "minTlsVersion", "TLS1_0", "AzureArtifactStore", "azure-native:storage:StorageAccount"),
    ("azure", "registry", "adminUser", True, "AcrRegistry", "azure-native:containerregistry:Registry"),
    ("azure", "registry", "anonymousPull", True, "AcrRegistry", "azure-native:containerregistry:Registry"),
    ("azure", "cluster", "localAccounts", True, "AksCluster", "azure-native:containerservice:ManagedCluster"),
]


@pytest.mark.parametrize("stack,section,key,value,component,resource", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_insecure_setting_fails_preview_with_clear_message(
    stack: str, section: str, key: str, value: object, component: str, resource: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from components._common import InsecureSettingError  # importable: run_stack put infra/ on sys.path

    seen: list[RecordingMocks] = []
    original_init = RecordingMocks.__init__

    def spy(self: RecordingMocks) -> None:
        original_init(self)
        seen.append(self)

    monkeypatch.setattr(RecordingMocks, "__init__", spy)
    base = stack_config(stack)[f"mco-infra:{section}"]
    extra = {"enabled": True, "subnetIds": ["subnet-a", "subnet-b"]} if section == "cluster" else {}
    overrides = {f"mco-infra:{section}": {**base, **extra, key: value}}

    with pytest.raises(InsecureSettingError) as info:
        run_stack(stack, overrides, preview=True)

    message = str(info.value)
    assert component in message
    assert "is not allowed" in message and "fix:" in message
    assert "Traceback" not in message
    # The refusal comes before the component creates anything.
    assert not [r for r in seen[-1].resources if r.typ == resource]


def test_insecure_setting_error_prints_without_a_traceback() -> None:
    """It is a pulumi.RunError: the engine shows only the message, as for any clean program error."""
    import pulumi

    from components._common import InsecureSettingError

    assert issubclass(InsecureSettingError, pulumi.RunError)


def test_secure_defaults_pass_preview() -> None:
    for stack in ("aws", "gcp", "azure"):
        run = run_stack(stack, preview=True)
        assert run.components()
