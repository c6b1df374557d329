"""Azure storage account and blob container for model bundles: HTTPS only, no public blobs."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure

from components._common import child, refuse

__all__ = ["AzureArtifactStore", "AzureArtifactStoreArgs"]


@dataclass(frozen=True)
class AzureArtifactStoreArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    container_name: str = "mco-models"
    prefix: str = "mco"
    sku: str = "Standard_ZRS"
    # Soft delete and versioning give the same recovery story as S3/GCS versioning.
    soft_delete_days: int = 30
    tags: dict[str, str] = field(default_factory=dict)
    # Refused settings (see S3ArtifactStoreArgs).
    public_access: bool = False
    allow_http: bool = False
    min_tls_version: str = "TLS1_2"


_ALLOWED_TLS = ("TLS1_2", "TLS1_3")


class AzureArtifactStore(pulumi.ComponentResource):
    account_name: pulumi.Output[str]
    container: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    region: pulumi.Output[str]
    prefix: pulumi.Output[str]

    def __init__(self, name: str, args: AzureArtifactStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        who = f"AzureArtifactStore '{name}'"
        refuse(args.public_access, who, "public_access",
               "anonymous blob reads would expose every model bundle",
               "remove publicAccess from the stack config; give readers a role assignment instead")
        refuse(args.allow_http, who, "allow_http",
               "bundles and SAS tokens would cross the network in clear text",
               "remove allowHttp from the stack config")
        refuse(args.min_tls_version not in _ALLOWED_TLS, who, f"min_tls_version={args.min_tls_version}",
               "TLS 1.0 and 1.1 are broken", "use TLS1_2 (the default)")
        super().__init__("mco:storage:AzureArtifactStore", name, None, opts)

        account = azure.storage.StorageAccount(
            f"{name}-account",
            resource_group_name=args.resource_group_name,
            location=args.location,
            kind="StorageV2",
            sku={"name": args.sku},
            enable_https_traffic_only=True,
            allow_blob_public_access=False,
            minimum_tls_version=args.min_tls_version,
            # mco authenticates with Entra ID (DefaultAzureCredential) or a connection string
            # held in an env var; shared keys stay enabled only for the latter.
            allow_cross_tenant_replication=False,
            tags={"managed-by": "mco", **args.tags},
            opts=child(self),
        )
        azure.storage.BlobServiceProperties(
            f"{name}-blob-service",
            account_name=account.name,
            resource_group_name=args.resource_group_name,
            blob_services_name="default",
            is_versioning_enabled=True,
            delete_retention_policy={"enabled": True, "days": args.soft_delete_days},
            container_delete_retention_policy={"enabled": True, "days": args.soft_delete_days},
            opts=child(self),
        )
        container = azure.storage.BlobContainer(
            f"{name}-container",
            account_name=account.name,
            resource_group_name=args.resource_group_name,
            container_name=args.container_name,
            public_access="None",
            opts=child(self),
        )

        self.account_name = account.name
        self.container = container.name
        self.endpoint = account.primary_endpoints.apply(lambda e: e.blob.rstrip("/"))
        self.region = pulumi.Output.from_input(args.location)
        self.prefix = pulumi.Output.from_input(args.prefix)
        self.register_outputs({
            "account_name": self.account_name, "container": self.container, "endpoint": self.endpoint,
            "region": self.region, "prefix": self.prefix,
        })
