"""Pulumi components for mco: one module per concern and cloud.

Each component is an ``XArgs`` frozen dataclass plus ``X(pulumi.ComponentResource)``
with the type token ``mco:<module>:<Class>``. Cloud SDKs are imported by the
per-cloud modules only, so a stack pays for the one cloud it provisions.

    storage/aws.py     S3ArtifactStore       storage/gcp.py   GcsArtifactStore
    storage/azure.py   AzureArtifactStore    registry/aws.py  EcrRegistry
    registry/gcp.py    ArtifactRegistry      registry/azure.py AcrRegistry
    cluster/aws.py     EksCluster            cluster/gcp.py   GkeCluster
    cluster/azure.py   AksCluster            cluster/kind.py  KindCluster
    model_deployment.py ModelDeployment      release.py       Release (mco history)
"""

from components._common import InsecureSettingError

__all__ = ["InsecureSettingError"]
