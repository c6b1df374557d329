"""The drills through the global entry (``region-loss``, ``router-crash``) on the local runtime.

Each "cloud" is one model server process (the local runtime), one router process in front
of it (``policy: locality``, its own cloud first, the others' model servers to spill to),
and the global entry stand-in, HAProxy on loopback, in front of the routers: the same
chain as on kind (``KindFleet``), without the clusters.

* ``outage`` (region loss): ``kill -9`` of the cloud's router and model server together;
  ``repair`` starts both again on their ports (the entry's config never changes).
* ``crash_routers``: ``kill -9`` of the cloud's router, started again at once on its port,
  as a Deployment replaces a deleted pod.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestrator.drills.entry import EntryRouters
from orchestrator.drills.fleet import LocalFleet
from orchestrator.local.runtime import LocalRuntime

__all__ = ["LocalEntryFleet", "local_entry_fleet"]

# the timing sections of a config's `router:` carry over, as they do to the routers in the clusters
_SETTINGS = ("health", "outlier", "retries", "limits")


class LocalEntryFleet(LocalFleet):
    def __init__(self, rt: LocalRuntime, root: Path, *, pricing: dict[str, str] | None = None,
                 router: Any = None) -> None:
        super().__init__(rt, pricing)
        self.root = Path(root)
        self.token = secrets.token_urlsafe(24)
        self.settings: dict[str, Any] = ({k: getattr(router, k).model_dump(mode="json") for k in _SETTINGS}
                                         if router is not None else {})
        self.routers: dict[str, Any] = {}
        self.entry: Any = None

    def _router(self, cloud: str, port: int = 0) -> Any:
        from orchestrator.config import RouterConfig, RouterTargetConfig
        from orchestrator.router.process import RouterProcess

        # its own cloud first, then the others in the runtime's priority order (locality's spill)
        ordered = sorted(self.targets(), key=lambda t: (t.cloud != cloud, t.priority))
        targets = [RouterTargetConfig(name=t.cloud, url=t.url, priority=i, pricing_key=t.pricing_key)
                   for i, t in enumerate(ordered)]
        state = self.root / f"router-{cloud}"
        cfg = RouterConfig(**self.settings, port=port, policy="locality", cloud=cloud, name=f"router-{cloud}",
                           targets=targets, events_file=state / "events.jsonl")
        return RouterProcess(cfg, token=self.token, state_dir=state)

    def start(self) -> LocalEntryFleet:
        from orchestrator.local.global_entry import GlobalEntry

        for cloud in self.clouds:
            self.routers[cloud] = self._router(cloud).start()
        self.entry = GlobalEntry(self.root / "global-entry", [(c, r.url) for c, r in self.routers.items()]).start()
        return self

    def close(self) -> None:
        if self.entry is not None:
            self.entry.stop()
        for router in self.routers.values():
            router.stop()

    # ---- the entry and its routers (what run_drill asks of a fleet for these scenarios) ----

    def entry_url(self) -> str:
        return str(self.entry.url)

    def entry_routers(self) -> EntryRouters:
        return EntryRouters([r.url for r in self.routers.values()], self.token)

    # ---- faults ---------------------------------------------------------------------------

    def _kill_router(self, cloud: str) -> int:
        router = self.routers[cloud]
        pid = int(router.pid or 0)
        if pid:
            os.killpg(pid, signal.SIGKILL)  # the router and any workers: it runs in a session of its own
            router.proc.wait(5)
        router.proc = None
        return pid

    def outage(self, cloud: str) -> str:
        router_pid = self._kill_router(cloud)
        model_pid = self.rt.kill(cloud)
        return f"kill -9 {router_pid} (router of {cloud}) and {model_pid} (its model server)"

    def repair(self, cloud: str) -> str:
        model_pid = self.rt.repair(cloud)
        router = self.routers[cloud].start()
        return f"restarted the model server of {cloud} (pid {model_pid}) and its router (pid {router.pid})"

    def crash_routers(self, cloud: str) -> str:
        pid = self._kill_router(cloud)
        router = self.routers[cloud].start()
        return f"kill -9 {pid} (router of {cloud}); restarted as pid {router.pid}"


@contextmanager
def local_entry_fleet(rt: LocalRuntime, root: Path, *, router: Any = None) -> Iterator[LocalEntryFleet]:
    """A router per cloud and the global entry in front of ``rt``'s model servers; all stopped on exit."""
    fleet = LocalEntryFleet(rt, root, router=router)
    try:
        yield fleet.start()
    finally:
        fleet.close()
