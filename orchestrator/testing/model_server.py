"""``ModelServerProcess``: ``mco serve BUNDLE`` in a child process that can be killed -9 and
started again on the same port. The router's tests and benchmarks put these behind the
router as stand-in clouds; the local runtime has its own supervised processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from orchestrator.errors import Unreachable
from orchestrator.net import free_port, port_open

__all__ = ["ModelServerProcess"]

MCO = str(Path(sys.executable).parent / "mco")


class ModelServerProcess:
    def __init__(self, bundle: Path, log: Path, *, ready_timeout: float = 60.0) -> None:
        self.bundle = bundle
        self.port = free_port()
        self.log = log
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ModelServerProcess:
        """Start it unless it runs, and return once ``/readyz`` answers 200."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([MCO, "serve", str(self.bundle), "--port", str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise Unreachable(f"the model server on port {self.port} exited with {self.proc.returncode}: "
                                  f"{self.log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise Unreachable(f"the model server on port {self.port} was not ready in {self.ready_timeout:.0f} s",
                                  hint=f"see {self.log}")
            time.sleep(0.05)
        return self

    def ready(self) -> bool:
        if not port_open("127.0.0.1", self.port):
            return False
        try:
            return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        """Like a crashed process: no shutdown, open connections reset."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
