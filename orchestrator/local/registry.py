"""Which stand-ins exist, in the order ``mco local up`` starts them."""

from __future__ import annotations

import importlib
from typing import Any

from orchestrator.local.base import LocalContext, StandIn, update_local_config

__all__ = ["STAND_INS", "bring_up", "get_stand_in"]

# name -> "module:Class". Each module is imported only when that stand-in is used.
STAND_INS: dict[str, str] = {
    "storage": "orchestrator.local.storage:StorageStandIn",  # first: object stores need nothing else
    "registries": "orchestrator.local.registries:RegistryStandIn",
    # `mco local up` starts storage and registries before the clusters
    "clusters": "orchestrator.local.clusters:ClusterStandIn",
    # after the clusters: it health-checks the routers they run (clouds.<cloud>.router_urls)
    "global-entry": "orchestrator.local.global_entry:GlobalEntryStandIn",
}


def get_stand_in(name: str) -> StandIn:
    from orchestrator.errors import ConfigError

    if name not in STAND_INS:
        raise ConfigError(f"unknown local stand-in '{name}'", hint=f"choose from: {', '.join(STAND_INS) or 'none yet'}")
    module, cls = STAND_INS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def bring_up(name: str, ctx: LocalContext) -> dict[str, dict[str, Any]]:
    """``mco local up NAME``: start the stand-in, write its sections (and the ``router:`` keys
    they call for) into ``ctx.config_path``; returns the sections."""
    stand_in = get_stand_in(name)
    sections = stand_in.up(ctx)
    update_local_config(ctx.config_path, sections, router=stand_in.router_defaults(sections))
    return sections
