"""What a drill acts on: the model servers of every cloud, and the faults it can inject.

A ``Fleet`` is the small interface the scenarios use. ``LocalFleet`` drives the embedded
local runtime (processes); ``orchestrator.drills.kind_fleet.KindFleet`` drives kind
clusters (Docker containers and Kubernetes objects). A fleet that cannot do a fault says
so with a ``CapabilityError`` naming the reason.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator.errors import CapabilityError
from orchestrator.local.base import STAND_IN_PRICING
from orchestrator.local.runtime import LocalRuntime
from orchestrator.model.bundle import Bundle

__all__ = ["Fleet", "FleetTarget", "LocalFleet"]


@dataclass(frozen=True)
class FleetTarget:
    cloud: str
    url: str
    priority: int
    pricing_key: str | None


class Fleet(Protocol):
    runtime: str  # "local" or "kind"
    clouds: tuple[str, ...]

    def targets(self) -> list[FleetTarget]: ...

    def outage(self, cloud: str) -> str:
        """Take the whole cloud away; returns what was done, for the report."""

    def repair(self, cloud: str) -> str:
        """Undo ``outage`` and wait until the cloud's server is ready again."""

    def crash_pods(self, cloud: str) -> str:
        """Kill the serving processes; the platform restarts them by itself."""

    def slow(self, cloud: str) -> str: ...

    def unslow(self, cloud: str) -> str: ...

    def stage(self, bundle: Bundle) -> str:
        """Make what releasing ``bundle`` needs ahead of time (its image, on every node), so the
        drill's clock measures the rollout and not a build; returns what was done."""

    def release(self, bundle: Bundle, clouds: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
        """Roll ``bundle`` out; per cloud ``{"ok", "digest", "serving_digest", "reason", "rolled_back"}``."""

    def store_outage(self, cloud: str) -> str: ...

    def store_repair(self, cloud: str) -> str: ...

    def half_written(self, cloud: str, digest: str) -> list[str]:
        """Anything a reader could see of a partial upload of ``digest`` in ``cloud``'s store."""

    def serving_digest(self, cloud: str) -> str | None: ...


class LocalFleet:
    """The local runtime as a fleet: faults are signals to processes and filesystem changes."""

    runtime = "local"

    def __init__(self, rt: LocalRuntime, pricing: dict[str, str] | None = None) -> None:
        self.rt = rt
        self.clouds = rt.clouds
        self.pricing = {**STAND_IN_PRICING, **(pricing or {})}

    def targets(self) -> list[FleetTarget]:
        return [FleetTarget(t.cloud, t.url, t.priority, self.pricing.get(t.cloud)) for t in self.rt.targets()]

    def outage(self, cloud: str) -> str:
        pid = self.rt.kill(cloud)
        return f"kill -9 {pid} (model server of {cloud})"

    def repair(self, cloud: str) -> str:
        pid = self.rt.repair(cloud)
        return f"restarted the model server of {cloud} (pid {pid})"

    def crash_pods(self, cloud: str) -> str:
        # What a kubelet does for a crashed container, at once: kill, then start it again.
        pid = self.rt.kill(cloud)
        new = self.rt.repair(cloud)
        return f"kill -9 {pid}; restarted as pid {new}"

    def slow(self, cloud: str) -> str:
        self.rt.slow(cloud, stopped_share=0.8, period=0.1)
        return f"throttled the model server of {cloud} (SIGSTOP 80 ms of every 100 ms)"

    def unslow(self, cloud: str) -> str:
        self.rt.unslow(cloud)
        return f"stopped throttling {cloud}"

    def stage(self, bundle: Bundle) -> str:
        return "nothing to stage: local releases start from the bundle itself"

    def release(self, bundle: Bundle, clouds: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for cloud in clouds or self.clouds:
            res = self.rt.rollout(cloud, bundle)
            out[cloud] = {"ok": res.ok, "digest": res.digest, "serving_digest": res.serving_digest,
                          "reason": res.reason, "rolled_back": res.rolled_back}
        return out

    def store_outage(self, cloud: str) -> str:
        store = self.rt.store_dir(cloud)
        shutil.move(str(store), str(_parked(store)))
        store.write_text("this store is down (mco drill storage-outage)\n")  # a file where a dir should be
        return f"took {cloud}'s artifact store away ({store} is no longer a directory)"

    def store_repair(self, cloud: str) -> str:
        store = self.rt.store_dir(cloud)
        if store.is_file():
            store.unlink()
        parked = _parked(store)
        if parked.exists():
            shutil.move(str(parked), str(store))
        return f"brought {cloud}'s artifact store back"

    def half_written(self, cloud: str, digest: str) -> list[str]:
        for store in (self.rt.store_dir(cloud), _parked(self.rt.store_dir(cloud))):
            bundles = store / "bundles"
            if bundles.is_dir():
                return sorted(p.name for p in bundles.iterdir() if (digest in p.name and p.name != digest)
                              or (p.name == digest and not (p / "card.json").is_file()))
        return []

    def serving_digest(self, cloud: str) -> str | None:
        import httpx

        try:
            resp = httpx.get(f"{self.rt.target(cloud).url}/readyz", timeout=2)
            return str(resp.json().get("model_digest")) if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None


def _parked(store: Path) -> Path:
    return store.with_name(store.name + ".down")


def require(fleet: Any, method: str, scenario: str) -> None:
    if not callable(getattr(fleet, method, None)):
        raise CapabilityError(f"the {fleet.runtime} runtime cannot run the {scenario} drill (no {method})")
