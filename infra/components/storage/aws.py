"""S3 bucket for model bundles: versioned, never public, encrypted, old versions expired."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components._common import child, refuse, sdk_module

# Loaded once, quietly: the module defines deprecated classes mco does not use (see sdk_module).
sdk_module("pulumi_aws.s3")

__all__ = ["S3ArtifactStore", "S3ArtifactStoreArgs"]


@dataclass(frozen=True)
class S3ArtifactStoreArgs:
    region: str
    bucket_prefix: str = "mco-models-"
    # Key prefix inside the bucket under which mco writes <prefix>/models/<name>/<digest>/.
    prefix: str = "mco"
    # A KMS key ARN for SSE-KMS; None means SSE-S3 (AES256), which is still encryption at rest.
    kms_key_arn: str | None = None
    # Bundles are content-addressed and never overwritten, so only indexes and
    # manifests get noncurrent versions. Keep them a while for forensic rollback.
    noncurrent_version_days: int = 30
    noncurrent_versions_to_keep: int = 5
    # Bundles older than this move to STANDARD_IA: old releases are read only on rollback.
    infrequent_access_after_days: int = 30
    abort_multipart_after_days: int = 7
    force_destroy: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    # Settings this component refuses; they exist so a stack config that asks for them
    # fails at preview with a message instead of silently being ignored.
    public_access: bool = False
    versioning: bool = True


class S3ArtifactStore(pulumi.ComponentResource):
    bucket: pulumi.Output[str]
    arn: pulumi.Output[str]
    region: pulumi.Output[str]
    prefix: pulumi.Output[str]

    def __init__(self, name: str, args: S3ArtifactStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        who = f"S3ArtifactStore '{name}'"
        refuse(args.public_access, who, "public_access",
               "model bundles must never be readable without credentials",
               "remove publicAccess from the stack config; grant read access to an IAM role instead")
        refuse(not args.versioning, who, "versioning=false",
               "versioning is what lets a release's bundle be recovered after an overwrite or delete",
               "remove versioning: false from the stack config")
        refuse(args.noncurrent_version_days < 1, who, "noncurrent_version_days",
               "old versions would expire immediately", "use a value of at least 1 day")
        super().__init__("mco:storage:S3ArtifactStore", name, None, opts)

        tags = {"managed-by": "mco", **args.tags}
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=args.bucket_prefix,
            force_destroy=args.force_destroy,
            tags=tags,
            opts=child(self),
        )
        # Bucket-owner-enforced disables ACLs entirely: no object can be made public by ACL.
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child(self),
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child(self),
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child(self),
        )
        sse_default: dict[str, object] = (
            {"sse_algorithm": "aws:kms", "kms_master_key_id": args.kms_key_arn}
            if args.kms_key_arn
            else {"sse_algorithm": "AES256"}
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": sse_default, "bucket_key_enabled": bool(args.kms_key_arn)}],
            opts=child(self),
        )
        models_prefix = f"{args.prefix.strip('/')}/models/" if args.prefix.strip("/") else "models/"
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-noncurrent-versions",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {
                        "noncurrent_days": args.noncurrent_version_days,
                        "newer_noncurrent_versions": args.noncurrent_versions_to_keep,
                    },
                },
                {
                    "id": "abort-incomplete-multipart-uploads",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": args.abort_multipart_after_days},
                },
                {
                    "id": "old-bundles-to-infrequent-access",
                    "status": "Enabled",
                    "filter": {"prefix": models_prefix},
                    "transitions": [{"days": args.infrequent_access_after_days, "storage_class": "STANDARD_IA"}],
                },
            ],
            # Lifecycle on a versioned bucket needs versioning to exist first.
            opts=child(self, depends_on=[versioning, ownership]),
        )

        self.bucket = bucket.bucket
        self.arn = bucket.arn
        self.region = pulumi.Output.from_input(args.region)
        self.prefix = pulumi.Output.from_input(args.prefix)
        self.register_outputs({"bucket": self.bucket, "arn": self.arn, "region": self.region, "prefix": self.prefix})
