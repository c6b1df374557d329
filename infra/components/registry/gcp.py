"""Artifact Registry Docker repository for model images: immutable tags, scanned."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components._common import child, refuse

__all__ = ["ArtifactRegistry", "ArtifactRegistryArgs"]


@dataclass(frozen=True)
class ArtifactRegistryArgs:
    location: str
    project: str
    repository_id: str = "mco"
    untagged_delete_after_days: int = 14
    labels: dict[str, str] = field(default_factory=dict)
    # Refused setting (see EcrRegistryArgs).
    mutable_tags: bool = False


class ArtifactRegistry(pulumi.ComponentResource):
    url: pulumi.Output[str]
    repository: pulumi.Output[str]
    repository_url: pulumi.Output[str]

    def __init__(self, name: str, args: ArtifactRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        who = f"ArtifactRegistry '{name}'"
        refuse(args.mutable_tags, who, "mutable_tags",
               "a tag re-pushed under a running release would change what a rollback deploys",
               "remove mutableTags from the stack config; mco references images by digest")
        super().__init__("mco:registry:ArtifactRegistry", name, None, opts)

        repo = gcp.artifactregistry.Repository(
            f"{name}-repository",
            project=args.project,
            location=args.location,
            repository_id=args.repository_id,
            format="DOCKER",
            description="mco model images",
            docker_config={"immutable_tags": True},
            vulnerability_scanning_config={"enablement_config": "INHERITED"},
            cleanup_policies=[{
                "id": "delete-untagged",
                "action": "DELETE",
                "condition": {"tag_state": "UNTAGGED", "older_than": f"{args.untagged_delete_after_days * 86400}s"},
            }],
            labels={"managed-by": "mco", **args.labels},
            opts=child(self),
        )

        host = f"{args.location}-docker.pkg.dev"
        self.url = pulumi.Output.from_input(host)
        # Inside Artifact Registry an image path is <project>/<repository>/<image>.
        self.repository = repo.repository_id.apply(lambda rid: f"{args.project}/{rid}")
        self.repository_url = self.repository.apply(lambda path: f"{host}/{path}")
        self.register_outputs({"url": self.url, "repository": self.repository, "repository_url": self.repository_url})
