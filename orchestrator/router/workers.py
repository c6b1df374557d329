"""``mco router serve --workers N``: N router processes on one port, added up on read.

Design (the simplest that stays correct when a worker dies):

* A **supervisor** (``supervise``) picks the public port and one private loopback port
  per worker, starts N ``python -m orchestrator.router`` children and restarts one that
  dies. It forwards SIGHUP and stops them all on SIGTERM/SIGINT. It serves nothing.
* Every **worker** binds the public port with ``SO_REUSEPORT`` (the kernel spreads the
  connections) and its own private port on 127.0.0.1. Each keeps its own health state,
  pools and counters: nothing is shared on the request path, so there is no lock and no
  cross-process hop per request.
* ``GET /admin/status`` and ``GET /metrics`` on the public port land on any one worker;
  that worker asks every peer for its raw counters (``GET /admin/worker-state`` on the
  peer's private port, authenticated by a secret the supervisor gave the workers) and
  adds them up: counters and latency histograms are summed (so percentiles are those of
  all traffic), rates are summed, a target is ``healthy`` when any worker can route to
  it, and ``healthy_workers`` says how many can. A peer that does not answer within
  ``PEER_TIMEOUT_S`` is listed as unreachable and left out of the sums.

The event log (``/admin/events``) stays per worker: each worker's own transitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.config import MCOConfig, RouterConfig
    from orchestrator.router.accounting import TargetStats
    from orchestrator.router.state import Router

__all__ = ["PEER_TIMEOUT_S", "WorkerInfo", "gather_states", "merged_view", "prepare_worker_config", "supervise",
           "worker_state"]

ENV_INDEX = "MCO_ROUTER_WORKER"            # this worker's index
ENV_PORTS = "MCO_ROUTER_WORKER_PORTS"      # "public,admin0,admin1,...": the shared port, then each private port
ENV_SECRET = "MCO_ROUTER_WORKER_SECRET"    # authenticates peers to each other; never logged
SECRET_HEADER = b"x-mco-worker-secret"
PEER_TIMEOUT_S = 1.0
_RESTART_PAUSE_S = 0.5


@dataclass(frozen=True)
class WorkerInfo:
    index: int
    public_port: int
    admin_ports: tuple[int, ...]
    secret: bytes

    @property
    def count(self) -> int:
        return len(self.admin_ports)

    @property
    def admin_port(self) -> int:
        return self.admin_ports[self.index]

    @classmethod
    def from_env(cls) -> WorkerInfo | None:
        index, ports, secret = os.environ.get(ENV_INDEX), os.environ.get(ENV_PORTS), os.environ.get(ENV_SECRET)
        if index is None or not ports or not secret:
            return None
        public, *admin = (int(p) for p in ports.split(","))
        return cls(int(index), public, tuple(admin), secret.encode())

    def peer_ok(self, header: bytes | None) -> bool:
        return header is not None and hmac.compare_digest(header, self.secret)


# -- one worker's raw state, and the sum of all ---------------------------------------
def _stats_dict(stats: TargetStats) -> dict[str, Any]:
    return {f.name: getattr(stats, f.name) for f in fields(stats)}


def worker_state(router: Router) -> dict[str, Any]:
    """What ``GET /admin/worker-state`` answers: this worker's counters, unsummed."""
    return {
        "index": router.worker.index if router.worker else 0, "pid": os.getpid(),
        "targets": {t.name: {"stats": _stats_dict(t.stats), "healthy": t.healthy, "up": dict(t.up),
                             "recent_rps": t.recent_rps, "recent_bytes_per_s": t.recent_bytes_per_s,
                             "recent_p95_s": t.recent_p95_s}
                    for t in router.balancer.by_priority},
        "overall": _stats_dict(router.overall),
        "client_errors": dict(router.client_errors),
        "own_stall_timeouts": router.own_stall_timeouts,
        "saturation": router.saturation() if router.saturation is not None else None,
    }


def _merge_stats(parts: list[dict[str, Any]]) -> TargetStats:
    """Counters and histograms summed; the EWMA averaged over the workers that saw traffic."""
    from orchestrator.router.accounting import TargetStats

    merged = TargetStats()
    for f in fields(merged):
        values = [p[f.name] for p in parts if f.name in p]
        if not values:
            continue
        if f.name == "started":
            setattr(merged, f.name, min(values))
        elif f.name == "ewma_s":
            seen = [v for v in values if v]
            setattr(merged, f.name, sum(seen) / len(seen) if seen else 0.0)
        elif isinstance(values[0], list):
            setattr(merged, f.name, [sum(col) for col in zip(*values)])
        elif isinstance(values[0], dict):
            keys = {k for v in values for k in v}
            setattr(merged, f.name, {k: sum(v.get(k, 0) for v in values) for k in keys})
        elif isinstance(values[0], int | float):
            setattr(merged, f.name, sum(values))
    return merged


class _MergedRouter:
    """The router as ``status_report`` and ``render_metrics`` read it, with every worker's
    counters added up; anything not summed is this worker's own (config, events, budget)."""

    def __init__(self, router: Router, states: list[dict[str, Any]]) -> None:
        self._router = router
        views = []
        self.healthy_workers: dict[str, int] = {}
        for t in router.balancer.by_priority:
            parts = [s["targets"][t.name] for s in states if t.name in s["targets"]]
            view = copy.copy(t)
            if parts:
                view.stats = _merge_stats([p["stats"] for p in parts])
                view.healthy = any(p["healthy"] for p in parts)
                view.up = {k: any(p["up"].get(k, True) for p in parts) for k in t.up}
                view.recent_rps = sum(p["recent_rps"] for p in parts)
                view.recent_bytes_per_s = sum(p["recent_bytes_per_s"] for p in parts)
                p95s = [p["recent_p95_s"] for p in parts if p["recent_p95_s"] is not None]
                view.recent_p95_s = max(p95s) if p95s else None
            self.healthy_workers[t.name] = sum(1 for p in parts if p["healthy"])
            views.append(view)
        healthy = tuple(v for v in views if v.healthy)
        self.balancer = SimpleNamespace(by_priority=tuple(views), healthy=healthy,
                                        targets={v.name: v for v in views},
                                        all_down=not healthy and bool(views), policy=router.balancer.policy)
        self.overall = _merge_stats([s["overall"] for s in states])
        errors: dict[str, int] = {}
        for s in states:
            for k, v in s["client_errors"].items():
                errors[k] = errors.get(k, 0) + v
        self.client_errors = errors
        self.own_stall_timeouts = sum(s["own_stall_timeouts"] for s in states)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._router, name)


async def _fetch_peer(port: int, secret: bytes) -> dict[str, Any] | None:
    request = (b"GET /admin/worker-state HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n"
               + SECRET_HEADER + b": " + secret + b"\r\n\r\n")
    writer: asyncio.StreamWriter | None = None
    try:
        reader, conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), PEER_TIMEOUT_S)
        writer = conn
        conn.write(request)
        raw = await asyncio.wait_for(reader.read(), PEER_TIMEOUT_S)
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return None
        return json.loads(body)
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        if writer is not None:
            writer.close()


async def gather_states(router: Router) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every worker's raw state (this one's included) and a line per worker for the report."""
    info = router.worker
    own = worker_state(router)
    if info is None or info.count <= 1:
        return [own], []
    peers = [i for i in range(info.count) if i != info.index]
    fetched = await asyncio.gather(*(_fetch_peer(info.admin_ports[i], info.secret) for i in peers))
    found = {info.index: own} | {i: s for i, s in zip(peers, fetched) if s is not None}
    lines = [{"index": i, "pid": found[i]["pid"] if i in found else None, "reachable": i in found,
              "requests": found[i]["overall"]["requests"] if i in found else None,
              "saturation": found[i]["saturation"] if i in found else None} for i in range(info.count)]
    return list(found.values()), lines


async def merged_view(router: Router) -> tuple[Any, list[dict[str, Any]]]:
    """A router-shaped view summing every worker (the router itself when it is alone)."""
    states, lines = await gather_states(router)
    if not lines:
        return router, []
    return _MergedRouter(router, states), lines


# -- the supervisor ---------------------------------------------------------------------
def prepare_worker_config(cfg: RouterConfig, mco: MCOConfig, *, overridden: bool) -> Path:
    """The file the workers read (and re-read on SIGHUP): the project's own mco.yaml, unless
    command-line flags changed the router section; then that section, written beside it."""
    import yaml

    if mco.source is not None and not overridden:
        return Path(mco.source)
    base = Path(mco.source).parent if mco.source else Path.cwd()
    path = base / mco.project.state_dir / "router-workers.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"router": cfg.model_dump(mode="json", exclude_none=True)}, sort_keys=False))
    return path



def supervise(config_path: Path, *, workers: int, host: str, port: int, log: Any = sys.stderr) -> int:
    """Run ``workers`` router processes on ``host:port`` until SIGTERM/SIGINT; restart any that dies.

    The admin token reaches the workers through this process's environment, as for one router."""
    from orchestrator.net import free_port, port_open

    if port == 0:
        port = free_port(host)
    admin_ports = [free_port() for _ in range(workers)]
    base_env = {**os.environ, ENV_PORTS: ",".join(str(p) for p in [port, *admin_ports]),
                ENV_SECRET: secrets.token_urlsafe(24)}
    procs: list[subprocess.Popen[bytes] | None] = [None] * workers
    stopping = False

    def spawn(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "orchestrator.router", "--config", str(config_path)],
                                env={**base_env, ENV_INDEX: str(i)}, stdin=subprocess.DEVNULL)

    def on_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    def on_hup(signum: int, frame: object) -> None:
        for p in procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    for i in range(workers):
        procs[i] = spawn(i)
    print(f"mco router: {workers} workers on http://{host}:{port} (pids "
          f"{', '.join(str(p.pid) for p in procs if p)})", file=log, flush=True)
    started = time.monotonic()
    try:
        while not stopping:
            time.sleep(0.2)
            for i, p in enumerate(procs):
                if p is not None and p.poll() is not None and not stopping:
                    if time.monotonic() - started < 5 and not port_open(host, port):
                        # dying before anyone listened is a config or port problem: restarting loops
                        print(f"mco router: worker {i} exited with {p.returncode} at start", file=log, flush=True)
                        return p.returncode or 1
                    print(f"mco router: worker {i} (pid {p.pid}) exited with {p.returncode}; restarting",
                          file=log, flush=True)
                    time.sleep(_RESTART_PAUSE_S)
                    procs[i] = spawn(i)
    finally:
        for p in procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in procs:
            if p is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, deadline - time.monotonic()))
            if p.poll() is None:
                p.kill()
                p.wait(5)
    return 0
