"""Azure Container Registry for model images: no admin user, no anonymous pull."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure

from components._common import child, refuse, safe_name

__all__ = ["AcrRegistry", "AcrRegistryArgs"]


@dataclass(frozen=True)
class AcrRegistryArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    registry_name: str | None = None  # globally unique, alphanumeric; None derives one
    repository: str = "mco"
    sku: str = "Standard"
    tags: dict[str, str] = field(default_factory=dict)
    # Refused settings: the admin user is one shared password for everyone; anonymous
    # pull publishes every model image.
    admin_user: bool = False
    anonymous_pull: bool = False


class AcrRegistry(pulumi.ComponentResource):
    url: pulumi.Output[str]
    repository: pulumi.Output[str]
    registry_name: pulumi.Output[str]
    registry_id: pulumi.Output[str]

    def __init__(self, name: str, args: AcrRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        who = f"AcrRegistry '{name}'"
        refuse(args.admin_user, who, "admin_user",
               "the admin user is a single shared password that cannot be scoped or audited",
               "remove adminUser from the stack config; mco logs in with Azure identity (auth: acr)")
        refuse(args.anonymous_pull, who, "anonymous_pull",
               "anyone on the internet could pull every model image",
               "remove anonymousPull from the stack config")
        super().__init__("mco:registry:AcrRegistry", name, None, opts)

        registry_name = args.registry_name or safe_name(f"mco{name}", sep="")[:40]
        registry = azure.containerregistry.Registry(
            f"{name}-registry",
            registry_name=registry_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku={"name": args.sku},
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            tags={"managed-by": "mco", **args.tags},
            opts=child(self),
        )

        self.url = registry.login_server
        self.repository = pulumi.Output.from_input(args.repository)
        self.registry_name = registry.name
        self.registry_id = registry.id
        self.register_outputs({"url": self.url, "repository": self.repository, "registry_name": self.registry_name})
