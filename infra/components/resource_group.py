"""An Azure resource group for everything an mco stack makes in Azure."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure

from components._common import child

__all__ = ["AzureResourceGroup", "AzureResourceGroupArgs"]


@dataclass(frozen=True)
class AzureResourceGroupArgs:
    location: str
    name: str | None = None  # None: derived from the component name plus a random suffix
    tags: dict[str, str] = field(default_factory=dict)


class AzureResourceGroup(pulumi.ComponentResource):
    name: pulumi.Output[str]
    location: pulumi.Output[str]

    def __init__(self, name: str, args: AzureResourceGroupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mco:resource_group:AzureResourceGroup", name, None, opts)
        group = azure.resources.ResourceGroup(
            f"{name}-rg",
            resource_group_name=args.name,
            location=args.location,
            tags={"managed-by": "mco", **args.tags},
            opts=child(self),
        )
        self.name = group.name
        self.location = pulumi.Output.from_input(args.location)
        self.register_outputs({"name": self.name, "location": self.location})
