"""ECR repository for model images: immutable tags, scanned on push, encrypted."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components._common import child, refuse

__all__ = ["EcrRegistry", "EcrRegistryArgs"]


@dataclass(frozen=True)
class EcrRegistryArgs:
    repository_name: str = "mco"
    kms_key_arn: str | None = None
    # Untagged images are layers of superseded builds; releases reference images by digest
    # *and* tag, so tagged images are kept.
    untagged_expire_days: int = 14
    force_delete: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    # Refused settings: a mutable tag can be re-pointed under a running release.
    mutable_tags: bool = False
    scan_on_push: bool = True


class EcrRegistry(pulumi.ComponentResource):
    url: pulumi.Output[str]
    repository: pulumi.Output[str]
    repository_url: pulumi.Output[str]
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: EcrRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        who = f"EcrRegistry '{name}'"
        refuse(args.mutable_tags, who, "mutable_tags",
               "a tag re-pushed under a running release would change what a rollback deploys",
               "remove mutableTags from the stack config; mco references images by digest")
        refuse(not args.scan_on_push, who, "scan_on_push=false",
               "images would reach clusters without a vulnerability scan",
               "remove scanOnPush: false from the stack config")
        super().__init__("mco:registry:EcrRegistry", name, None, opts)

        encryption = (
            [{"encryption_type": "KMS", "kms_key": args.kms_key_arn}]
            if args.kms_key_arn
            else [{"encryption_type": "AES256"}]
        )
        repo = aws.ecr.Repository(
            f"{name}-repository",
            name=args.repository_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=encryption,
            force_delete=args.force_delete,
            tags={"managed-by": "mco", **args.tags},
            opts=child(self),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repo.name,
            policy=json.dumps({
                "rules": [{
                    "rulePriority": 1,
                    "description": "expire untagged images",
                    "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                  "countUnit": "days", "countNumber": args.untagged_expire_days},
                    "action": {"type": "expire"},
                }],
            }),
            opts=child(self),
        )

        self.repository_url = repo.repository_url
        # <account>.dkr.ecr.<region>.amazonaws.com/<name>: mco's config wants host and path apart.
        self.url = repo.repository_url.apply(lambda u: u.split("/", 1)[0])
        self.repository = repo.name
        self.arn = repo.arn
        self.register_outputs({
            "url": self.url, "repository": self.repository, "repository_url": self.repository_url, "arn": self.arn,
        })
