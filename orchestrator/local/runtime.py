"""The embedded "local" runtime: one model server process per cloud name, files as the store.

It stands in for three clusters when there is no Docker and no kind: ``mco demo --runtime
local`` and the local drills run on it. Each cloud gets

* an artifact store, a directory holding bundles by digest (``<root>/<cloud>/store/bundles/
  <digest>/``), written to a temporary name and renamed, so a half-written bundle is never
  visible and pushing the same digest twice copies nothing;
* a model server, ``python -m orchestrator.serving`` started as a ``ManagedProcess`` on a
  fixed loopback port, serving the bundle from that store and refusing any other digest.

Faults are real and act on the process from outside, as an outage would: ``kill`` sends
SIGKILL (``kill -9``), ``slow`` throttles the process by stopping and continuing it on a
duty cycle (the way ``cpulimit`` does), and ``repair`` starts the server again on the same
port. ``rollout`` starts the new release beside the old one and only switches when it is
ready, so a release that cannot become ready is rolled back and never serves.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from orchestrator.errors import ConfigError, IntegrityError, ProviderError, RolloutFailed, Unreachable
from orchestrator.local.base import CLOUDS
from orchestrator.local.processes import ManagedProcess
from orchestrator.model.bundle import Bundle, load_bundle
from orchestrator.net import free_port, port_open

__all__ = ["DutyCycle", "LocalRuntime", "LocalTarget", "RolloutResult"]

HOST = "127.0.0.1"
_STATE_FILE = "runtime.json"


@dataclass(frozen=True)
class LocalTarget:
    """One cloud's model server as the router sees it."""

    cloud: str
    url: str
    port: int
    digest: str
    priority: int


@dataclass(frozen=True)
class RolloutResult:
    cloud: str
    ok: bool
    digest: str
    serving_digest: str
    reason: str = ""
    rolled_back: bool = False


class LocalRuntime:
    """Model servers for ``clouds`` under ``root``; see the module docstring."""

    def __init__(self, root: Path, *, clouds: Iterable[str] = CLOUDS, ready_timeout: float = 30.0) -> None:
        self.root = Path(root)
        self.clouds = tuple(clouds)
        if not self.clouds:
            raise ConfigError("the local runtime needs at least one cloud name", hint="e.g. aws,gcp,azure")
        self.ready_timeout = ready_timeout
        self._slowdowns: dict[str, DutyCycle] = {}

    # ---- artifact store -------------------------------------------------------------------

    def store_dir(self, cloud: str) -> Path:
        return self.root / cloud / "store"

    def bundle_dir(self, cloud: str, digest: str) -> Path:
        return self.store_dir(cloud) / "bundles" / digest

    def push(self, bundle: Bundle, clouds: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Copy ``bundle`` into each cloud's store; per cloud ``{"ok", "path"|"error", "copied"}``."""
        results: dict[str, dict[str, Any]] = {}
        for cloud in clouds or self.clouds:
            try:
                path, copied = self._push_one(bundle, cloud)
                results[cloud] = {"ok": True, "path": str(path), "copied": copied}
            except ProviderError as exc:
                results[cloud] = {"ok": False, "error": exc.message}
        return results

    def _push_one(self, bundle: Bundle, cloud: str) -> tuple[Path, bool]:
        self._check_cloud(cloud)
        try:
            return self._copy_in(bundle, cloud)
        except OSError as exc:
            raise Unreachable(f"the artifact store of {cloud} ({self.store_dir(cloud)}) failed: {exc.strerror or exc}",
                              cloud=cloud) from exc

    def _copy_in(self, bundle: Bundle, cloud: str) -> tuple[Path, bool]:
        final = self.bundle_dir(cloud, bundle.digest)
        if final.is_dir():
            try:
                load_bundle(final, verify=True)
                return final, False
            except IntegrityError:
                shutil.rmtree(final)  # damaged copy: replace it below
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{bundle.digest}.{os.getpid()}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(bundle.path, tmp)
            load_bundle(tmp, verify=True)
            os.replace(tmp, final)  # readers see the whole bundle or nothing
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final, True

    # ---- model servers --------------------------------------------------------------------

    def _state_path(self) -> Path:
        return self.root / _STATE_FILE

    def _state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self._state_path().read_text()))
        except (OSError, ValueError):
            return {}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self._state_path())

    def _process(self, cloud: str, slot: str = "server") -> ManagedProcess:
        return ManagedProcess(name=f"model-{slot}", state_dir=self.root / cloud,
                              argv=[sys.executable, "-m", "orchestrator.serving"])

    def _check_cloud(self, cloud: str) -> None:
        if cloud not in self.clouds:
            raise ConfigError(f"cloud '{cloud}' is not part of the local runtime",
                              hint=f"choose from: {', '.join(self.clouds)}")

    def _start(self, cloud: str, digest: str, port: int, slot: str = "server") -> ManagedProcess:
        proc = self._process(cloud, slot)
        proc.env = {
            "MCO_MODEL_DIR": str(self.bundle_dir(cloud, digest).resolve()),
            "MCO_MODEL_DIGEST": digest,
            "MCO_HOST": HOST,
            "MCO_PORT": str(port),
            # one core is plenty for a stand-in, and the machine is shared
            "OMP_NUM_THREADS": "1",
        }
        proc.start(host=HOST, port=port, timeout=self.ready_timeout)
        _wait_ready(f"http://{HOST}:{port}", digest, timeout=self.ready_timeout, proc=proc)
        return proc

    def deploy(self, bundle: Bundle) -> list[LocalTarget]:
        """Push ``bundle`` and start one server per cloud, in parallel; the targets in priority order."""
        pushed = self.push(bundle)
        failed = {c: r["error"] for c, r in pushed.items() if not r["ok"]}
        if failed:
            raise ProviderError("push failed for " + ", ".join(f"{c} ({e})" for c, e in failed.items()))
        state = self._state()
        ports = {c: int(state.get(c, {}).get("port") or free_port()) for c in self.clouds}
        with ThreadPoolExecutor(max_workers=len(self.clouds)) as pool:
            futures = {c: pool.submit(self._start, c, bundle.digest, ports[c]) for c in self.clouds}
            errors = []
            for cloud, fut in futures.items():
                try:
                    fut.result()
                except Exception as exc:  # collected and reported together below
                    errors.append(f"{cloud}: {exc}")
        for cloud in self.clouds:
            state[cloud] = {"port": ports[cloud], "digest": bundle.digest}
        self._save_state(state)
        if errors:
            self.down()
            raise Unreachable("local model servers did not start: " + "; ".join(errors),
                              hint=f"see the logs under {self.root}/<cloud>/")
        return self.targets()

    def targets(self) -> list[LocalTarget]:
        state = self._state()
        out = []
        for priority, cloud in enumerate(self.clouds):
            entry = state.get(cloud)
            if entry:
                out.append(LocalTarget(cloud, f"http://{HOST}:{entry['port']}", int(entry["port"]),
                                       str(entry["digest"]), priority))
        return out

    def target(self, cloud: str) -> LocalTarget:
        self._check_cloud(cloud)
        for t in self.targets():
            if t.cloud == cloud:
                return t
        raise ConfigError(f"nothing is deployed on {cloud} in the local runtime", hint="deploy first")

    def pid(self, cloud: str) -> int | None:
        return self._process(cloud).pid()

    # ---- faults and repairs ---------------------------------------------------------------

    def kill(self, cloud: str) -> int:
        """``kill -9`` the cloud's model server; returns the pid that was killed."""
        self._check_cloud(cloud)
        self.unslow(cloud)
        pid = self.pid(cloud)
        if pid is None:
            raise ProviderError(f"the model server of {cloud} is not running", cloud=cloud)
        os.kill(pid, signal.SIGKILL)
        _wait_exited(pid, timeout=5.0)
        # The kernel may tear the listening socket down a moment after the process is a
        # zombie: the fault is only in place once connections are refused.
        port = self.target(cloud).port
        deadline = time.monotonic() + 2.0
        while port_open(HOST, port, timeout=0.05) and time.monotonic() < deadline:
            time.sleep(0.005)
        return pid

    def repair(self, cloud: str) -> int:
        """Start the cloud's model server again with its recorded release, on the same port."""
        target = self.target(cloud)
        self.unslow(cloud)
        proc = self._start(cloud, target.digest, target.port)
        return proc.pid() or 0

    def slow(self, cloud: str, *, stopped_share: float = 0.8, period: float = 0.1) -> None:
        """Throttle the server: SIGSTOP for ``stopped_share`` of every ``period`` seconds."""
        self._check_cloud(cloud)
        pid = self.pid(cloud)
        if pid is None:
            raise ProviderError(f"the model server of {cloud} is not running", cloud=cloud)
        self.unslow(cloud)
        cycle = DutyCycle(pid, stopped_share=stopped_share, period=period)
        cycle.start()
        self._slowdowns[cloud] = cycle

    def unslow(self, cloud: str) -> None:
        cycle = self._slowdowns.pop(cloud, None)
        if cycle is not None:
            cycle.stop()

    def rollout(self, cloud: str, bundle: Bundle) -> RolloutResult:
        """Replace the cloud's release with ``bundle``, but only once the new server is ready.

        The new server starts beside the old one on a fresh port. If it never becomes ready,
        it is stopped and the old one keeps serving: an automatic rollback that traffic never
        sees. When it is ready, it takes over the cloud's port (the old one stops first).
        """
        current = self.target(cloud)
        pushed = self.push(bundle, [cloud])[cloud]
        if not pushed["ok"]:
            return RolloutResult(cloud, False, bundle.digest, current.digest, reason=pushed["error"])
        canary_port = free_port()
        try:
            self._start(cloud, bundle.digest, canary_port, slot="canary")
        except (Unreachable, RolloutFailed) as exc:
            self._process(cloud, "canary").stop(timeout=3)
            return RolloutResult(cloud, False, bundle.digest, current.digest, reason=exc.message, rolled_back=True)
        self._process(cloud, "canary").stop(timeout=3)
        self._process(cloud).stop(timeout=5)
        self._start(cloud, bundle.digest, current.port)
        state = self._state()
        state[cloud] = {"port": current.port, "digest": bundle.digest}
        self._save_state(state)
        return RolloutResult(cloud, True, bundle.digest, bundle.digest)

    def down(self) -> None:
        for cloud in self.clouds:
            self.unslow(cloud)
            for slot in ("canary", "server"):
                self._process(cloud, slot).stop(timeout=5)

    def status(self) -> list[dict[str, Any]]:
        rows = []
        for t in self.targets():
            pid = self.pid(t.cloud)
            rows.append({"name": f"model-{t.cloud}", "cloud": t.cloud, "state": "running" if pid else "stopped",
                         "pid": pid, "url": t.url, "digest": t.digest[:12]})
        return rows

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def _wait_exited(pid: int, *, timeout: float) -> None:
    """Wait until ``pid`` has exited (gone, or a zombie). A dying process loses its command
    line before its sockets close, so "no longer looks like ours" is not yet "port closed"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.005)


def _wait_ready(base_url: str, digest: str, *, timeout: float, proc: ManagedProcess) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.pid() is None:
                tail = proc.logfile.read_text(errors="replace")[-600:] if proc.logfile.exists() else ""
                raise RolloutFailed(f"the model server exited before it was ready:\n{tail}", reason="exited")
            try:
                resp = client.get(f"{base_url}/readyz")
                if resp.status_code == 200 and resp.json().get("model_digest") == digest:
                    return
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.05)
    raise RolloutFailed(f"the model server at {base_url} was not ready within {timeout:.0f} s ({last})",
                        reason="readiness failing", hint=f"see {proc.logfile}")


class DutyCycle:
    """Stop and continue a process on a duty cycle so that it answers, but slowly."""

    def __init__(self, pid: int, *, stopped_share: float, period: float) -> None:
        if not 0.0 < stopped_share < 1.0:
            raise ConfigError("stopped_share must be between 0 and 1", hint="e.g. 0.8 for a process 5x slower")
        self.pid = pid
        self.stopped = period * stopped_share
        self.running = period - self.stopped
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"slow-{pid}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._halt.is_set():
                os.kill(self.pid, signal.SIGSTOP)
                self._halt.wait(self.stopped)
                os.kill(self.pid, signal.SIGCONT)
                self._halt.wait(self.running)
        except ProcessLookupError:
            return
        finally:
            try:
                os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=2)
