"""One deploy (or rollback) per service at a time.

An exclusive ``flock`` on ``<state_dir>/locks/<service>.lock``. The kernel drops the lock
when its holder exits, however it exits, so a crashed deploy never leaves a stale lock
behind. The holder writes who it is into the file, so the second deploy can say whom it
is waiting for.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from orchestrator.errors import LockHeld, ReleaseError

__all__ = ["DeployLock", "ReentrantLock"]


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (same device and inode)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


class ReentrantLock:
    """``with`` takes the lock once: re-entering a lock this object holds is a no-op (the CLI
    takes it before building, the deploy again), and only the outermost exit releases it.
    Shared by the file lock here and the object-store lease (releases/state/lease.py)."""

    _depth: int = 0

    def acquire(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        if self._depth == 0:
            self.acquire()
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.release()


class DeployLock(ReentrantLock):
    """``with DeployLock(state_dir, "digits", wait_s=0, purpose="deploy"):`` -- or LockHeld."""

    def __init__(self, state_dir: Path, service: str, *, wait_s: float = 0.0, purpose: str = "deploy",
                 poll_s: float = 0.1) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", service)
        self.path = Path(state_dir) / "locks" / f"{safe}.lock"
        self.service = service
        self.wait_s = wait_s
        self.purpose = purpose
        self.poll_s = poll_s
        self._fd: int | None = None
        self._depth = 0  # re-entering a lock this object holds is a no-op (the CLI takes it before building)

    def holder(self) -> dict[str, Any] | None:
        """What the current holder wrote about itself, if anything."""
        try:
            text = self.path.read_text()
        except OSError:
            return None
        try:
            data = json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    def probe(self) -> tuple[bool, dict[str, Any] | None]:
        """``(held, holder)`` without taking the lock: held when a live process holds it (the
        kernel says so). A holder written into a lock nobody holds was a deploy that ended
        without releasing it (killed with -9, or its machine died): the caller can say so."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False, None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True, self.holder()
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False, self.holder()
        finally:
            os.close(fd)

    def acquire(self) -> None:
        from orchestrator.releases.store import current_user

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ReleaseError(f"cannot create the deploy lock {self.path}: {exc.strerror}",
                               hint="make the state directory (project.state_dir) writable") from exc
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(fd, self.path):
                    break
                # The file we locked was deleted (or replaced) after we opened it: a lock on it
                # excludes nobody. Lock whatever is at the path now.
                os.close(fd)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                continue
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    holder = self.holder() or {}
                    who = holder.get("by", "another process")
                    what = holder.get("purpose", "deploy")
                    since = holder.get("since", "?")
                    pid = holder.get("pid", "?")
                    waited = f" after waiting {self.wait_s:g} s" if self.wait_s else ""
                    raise LockHeld(
                        f"another {what} of '{self.service}' is running ({who}, pid {pid}, since {since}){waited}",
                        hint="wait for it to finish, or pass --wait SECONDS to queue behind it",
                    ) from None
                time.sleep(self.poll_s)
        info = {"service": self.service, "purpose": self.purpose, "by": current_user(), "pid": os.getpid(),
                "since": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
