"""``RouterProcess``: the router in a child process, driven from Python (tests, drills, demo).

The config is written to ``state_dir/router.yaml`` (the ``router:`` section only) and the
child runs ``python -m orchestrator.router --config`` that file, with the admin token in
its environment. ``reload()`` sends SIGHUP after rewriting the file; ``set_targets``
uses the admin API instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config import RouterConfig, RouterTargetConfig
from orchestrator.errors import Unreachable

__all__ = ["RouterProcess"]


class RouterProcess:
    def __init__(self, cfg: RouterConfig, *, token: str, state_dir: Path, workers: int = 1) -> None:
        from orchestrator.net import free_port

        if cfg.port == 0:
            cfg = cfg.model_copy(update={"port": free_port(cfg.host)})
        self.cfg = cfg
        self.token = token
        self.state_dir = Path(state_dir)
        self.config_path = self.state_dir / "router.yaml"
        self.log_path = self.state_dir / "router.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.workers = workers  # > 1: a supervisor and that many workers on one port (workers.py)

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def pids(self) -> list[int]:
        """The router's processes: this child and its own children (the Rust data plane of
        ``router.dataplane: rust``, or the workers of ``--workers N``), for CPU and memory figures."""
        if self.proc is None:
            return []
        found = [self.proc.pid]
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                found += [int(p) for p in (task / "children").read_text().split()]
        return found

    def _write_config(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        doc = {"router": self.cfg.model_dump(mode="json", exclude_none=True)}
        self.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))

    def start(self, timeout: float = 20.0) -> RouterProcess:
        from orchestrator.net import port_open

        self._write_config()
        env = {**os.environ, self.cfg.token_env: self.token}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.router", "--config", str(self.config_path),
             "--workers", str(self.workers)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while not port_open(self.cfg.host, self.cfg.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-1500:]
                self.stop()
                raise Unreachable(f"the router did not start on {self.url}:\n{tail}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> RouterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- admin API --------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        resp = httpx.request(method, self.url + path, json=body, timeout=10,
                             headers={"Authorization": f"Bearer {self.token}"})
        resp.raise_for_status()
        return resp.json()

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/admin/status")

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        return self._call("GET", f"/admin/events?since={since}")["events"]

    def set_targets(self, targets: list[RouterTargetConfig]) -> dict[str, Any]:
        self.cfg = self.cfg.model_copy(update={"targets": list(targets)})
        return self._call("PUT", "/admin/targets", {"targets": [t.model_dump(mode="json") for t in targets]})

    def reload(self, targets: list[RouterTargetConfig] | None = None) -> None:
        """Rewrite the config file (with ``targets`` if given) and send SIGHUP."""
        if targets is not None:
            self.cfg = self.cfg.model_copy(update={"targets": list(targets)})
        self._write_config()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
