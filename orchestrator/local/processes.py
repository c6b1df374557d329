"""Background server processes for stand-ins: start detached, wait for the port, stop by pidfile.

Shared by every stand-in that runs a server (emulators, registries, model servers), so
there is one way to start, find and stop them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import Unreachable
from orchestrator.net import port_open

__all__ = ["ManagedProcess"]


@dataclass
class ManagedProcess:
    """A server process remembered by a pidfile under ``state_dir``."""

    name: str
    state_dir: Path
    argv: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    @property
    def pidfile(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # A zombie or a reused pid is not ours: check the command line mentions our argv[0].
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if self.argv and os.path.basename(self.argv[0]).encode() not in b" ".join(cmdline):
                return None
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return None
        except OSError:
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, *, host: str | None = None, port: int | None = None, timeout: float = 30.0) -> int:
        """Start unless already running; wait for ``host:port`` when given. Returns the pid."""
        existing = self.pid()
        if existing is not None:
            return existing
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.logfile, "ab")
        proc = subprocess.Popen(
            list(self.argv), cwd=self.cwd, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # survives the CLI; stopped by `down`
        )
        log.close()
        self.pidfile.write_text(str(proc.pid))
        if host is not None and port is not None:
            try:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if proc.poll() is not None:
                        tail = self.logfile.read_text(errors="replace")[-800:]
                        raise Unreachable(f"{self.name} exited with code {proc.returncode} while starting:\n{tail}")
                    if port_open(host, port):
                        break
                    time.sleep(0.05)
                else:
                    raise Unreachable(f"{self.name} did not listen on {host}:{port} within {timeout:.0f} s",
                                      hint=f"see {self.logfile}")
            except BaseException:
                self.stop()
                raise
        return proc.pid

    def stop(self, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        pid = self.pid()
        if pid is not None:
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.pid() is not None:
                time.sleep(0.05)
            if self.pid() is not None:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pidfile.unlink(missing_ok=True)
