"""GCS bucket for model bundles: uniform bucket-level access, versioned, never public."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components._common import child, refuse, sdk_module

# Loaded once, quietly: the module defines deprecated classes mco does not use (see sdk_module).
sdk_module("pulumi_gcp.storage")

__all__ = ["GcsArtifactStore", "GcsArtifactStoreArgs"]


@dataclass(frozen=True)
class GcsArtifactStoreArgs:
    location: str
    project: str | None = None
    bucket_name: str | None = None  # None: derived from the component name plus a random suffix
    prefix: str = "mco"
    storage_class: str = "STANDARD"
    noncurrent_version_days: int = 30
    noncurrent_versions_to_keep: int = 5
    nearline_after_days: int = 30
    force_destroy: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    # Refused settings (see S3ArtifactStoreArgs).
    public_access: bool = False
    uniform_bucket_level_access: bool = True
    versioning: bool = True


class GcsArtifactStore(pulumi.ComponentResource):
    bucket: pulumi.Output[str]
    url: pulumi.Output[str]
    region: pulumi.Output[str]
    prefix: pulumi.Output[str]

    def __init__(self, name: str, args: GcsArtifactStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        who = f"GcsArtifactStore '{name}'"
        refuse(args.public_access, who, "public_access",
               "model bundles must never be readable by allUsers",
               "remove publicAccess from the stack config; grant roles/storage.objectViewer to a service account")
        refuse(not args.uniform_bucket_level_access, who, "uniform_bucket_level_access=false",
               "per-object ACLs let a single object be made public behind IAM's back",
               "remove uniformBucketLevelAccess: false from the stack config")
        refuse(not args.versioning, who, "versioning=false",
               "versioning is what lets a release's bundle be recovered after an overwrite or delete",
               "remove versioning: false from the stack config")
        super().__init__("mco:storage:GcsArtifactStore", name, None, opts)

        models_prefix = f"{args.prefix.strip('/')}/models/" if args.prefix.strip("/") else "models/"
        bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            name=args.bucket_name,
            project=args.project,
            location=args.location,
            storage_class=args.storage_class,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning={"enabled": True},
            force_destroy=args.force_destroy,
            labels={"managed-by": "mco", **args.labels},
            lifecycle_rules=[
                {
                    "action": {"type": "Delete"},
                    "condition": {
                        "days_since_noncurrent_time": args.noncurrent_version_days,
                        "num_newer_versions": args.noncurrent_versions_to_keep,
                        "with_state": "ARCHIVED",
                    },
                },
                {
                    "action": {"type": "SetStorageClass", "storage_class": "NEARLINE"},
                    "condition": {"age": args.nearline_after_days, "matches_prefixes": [models_prefix],
                                  "with_state": "LIVE"},
                },
            ],
            opts=child(self),
        )

        self.bucket = bucket.name
        self.url = bucket.url
        self.region = pulumi.Output.from_input(args.location)
        self.prefix = pulumi.Output.from_input(args.prefix)
        self.register_outputs({"bucket": self.bucket, "url": self.url, "region": self.region, "prefix": self.prefix})
