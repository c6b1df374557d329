"""The interface every local stand-in implements, and the file they share.

A stand-in starts real servers on loopback (or kind clusters), remembers its processes
under the state directory, and contributes per-cloud sections to ``mco.local.yaml``::

    clouds:
      aws:   {provider: aws,   storage: {...}, registry: {...}, cluster: {...}}
      gcp:   {provider: gcp,   ...}
      azure: {provider: azure, ...}
"""

from __future__ import annotations

import copy
import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

__all__ = [
    "CLOUDS",
    "LOCAL_CONFIG",
    "STAND_IN_PRICING",
    "LocalContext",
    "StandIn",
    "update_local_config",
]

CLOUDS = ("aws", "gcp", "azure")
LOCAL_CONFIG = Path("mco.local.yaml")


@dataclass(frozen=True)
class LocalContext:
    """Where stand-ins keep state (pids, data, logs) and which config file they write."""

    state_dir: Path = Path(".mco/local")
    config_path: Path = LOCAL_CONFIG
    cache_dir: Path = Path(os.environ.get("MCO_CACHE", Path.home() / ".cache" / "mco"))

    def dir_for(self, name: str) -> Path:
        path = self.state_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


class StandIn(Protocol):
    """One kind of local stand-in (``storage``, ``registries``, ``clusters``)."""

    name: str

    def up(self, ctx: LocalContext) -> dict[str, dict[str, Any]]:
        """Start (idempotently); return ``{cloud: {section: values}}`` for mco.local.yaml."""

    def down(self, ctx: LocalContext) -> None:
        """Stop everything this stand-in started; no error if nothing runs."""

    def status(self, ctx: LocalContext) -> list[dict[str, Any]]:
        """One row per server or cluster: at least ``name``, ``cloud``, ``state``."""

    def router_defaults(self, sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Keys of the ``router:`` section that what ``up`` returned calls for (set unless the
        file already has them), e.g. the clusters' ``in_cluster: true``."""


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)



def _stand_in_pricing() -> dict[str, str]:
    from orchestrator.providers.loader import provider_class

    keys = {cloud: provider_class(cloud).pricing_key() for cloud in CLOUDS}
    return {cloud: key for cloud, key in keys.items() if key}


# The stand-ins are priced as the clouds they stand in for (in each provider's default
# region), so the router's and the demo's cost columns show what the same traffic would
# cost there (a key of catalog/data/prices.json).
STAND_IN_PRICING = _stand_in_pricing()

# The router in front of the stand-ins. Three clusters, the router and its clients share this
# machine's cores: while a node boots or a new release's pods start, a healthy model server
# can stall for half a second, which the defaults (made for clouds with cores of their own)
# would count as a failure and eject. A user's own ``router`` section is kept as it is.
STAND_IN_ROUTER = {"retries": {"per_try_timeout_s": 1.5}, "health": {"timeout_s": 1.0}}


def update_local_config(path: Path, sections: dict[str, dict[str, Any]], *, remove: tuple[str, ...] = (),
                        router: dict[str, Any] | None = None) -> None:
    """Merge ``{cloud: {section: values}}`` into the YAML file at ``path`` atomically.

    ``remove`` names sections to drop from every cloud (used by ``down``). ``router`` holds
    keys of the top-level ``router:`` section to set where the file has none (a user's own
    value, such as ``in_cluster: false``, is kept).
    """
    with _locked(path):
        data: dict[str, Any] = {}
        if path.is_file():
            data = yaml.safe_load(path.read_text()) or {}
        clouds = data.setdefault("clouds", {})
        section = data.setdefault("router", copy.deepcopy(STAND_IN_ROUTER))
        for key, value in (router or {}).items():
            section.setdefault(key, value)
        for cloud in list(clouds):
            for name in remove:
                clouds[cloud].pop(name, None)
        for cloud, secs in sections.items():
            entry = clouds.setdefault(cloud, {"provider": cloud})
            if cloud in STAND_IN_PRICING:
                entry.setdefault("pricing_key", STAND_IN_PRICING[cloud])
            entry.update(secs)
        fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as fh:
            fh.write("# Written by `mco local up`: the local stand-ins for each cloud, and router settings\n"
                     "# for them (timeouts that allow for three clusters sharing this machine's cores, and\n"
                     "# routers in the kind clusters); a setting you edit is kept.\n")
            yaml.safe_dump(data, fh, sort_keys=False)
        os.replace(tmp, path)
