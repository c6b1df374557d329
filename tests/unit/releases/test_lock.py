"""The per-service deploy lock: one holder, a clear message for the other, freed when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.errors import LockHeld
from orchestrator.releases.lock import DeployLock


def test_second_deploy_fails_naming_the_holder(tmp_path: Path) -> None:
    with DeployLock(tmp_path, "digits", purpose="deploy") as first:
        assert first.held
        with pytest.raises(LockHeld) as info:
            DeployLock(tmp_path, "digits", purpose="rollback").acquire()
        msg = str(info.value)
        assert "another deploy of 'digits' is running" in msg
        assert f"pid {os.getpid()}" in msg
        assert "--wait" in msg
    # released: the next one gets it
    with DeployLock(tmp_path, "digits"):
        pass


def test_other_services_do_not_block(tmp_path: Path) -> None:
    with DeployLock(tmp_path, "digits"), DeployLock(tmp_path, "wine"):
        pass


def test_waiting_deploy_proceeds_when_the_holder_finishes(tmp_path: Path) -> None:
    first = DeployLock(tmp_path, "digits")
    first.acquire()
    timer = threading.Timer(0.3, first.release)
    timer.start()
    t0 = time.monotonic()
    with DeployLock(tmp_path, "digits", wait_s=5):
        waited = time.monotonic() - t0
    timer.join()
    assert 0.2 < waited < 5


def test_waiting_has_a_limit(tmp_path: Path) -> None:
    with DeployLock(tmp_path, "digits"):
        t0 = time.monotonic()
        with pytest.raises(LockHeld, match=r"after waiting 0.3 s"):
            DeployLock(tmp_path, "digits", wait_s=0.3).acquire()
        assert time.monotonic() - t0 >= 0.3


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = ("import sys, time; from orchestrator.releases.lock import DeployLock; "
            f"l = DeployLock({str(tmp_path)!r}, 'digits'); l.acquire(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"pid {proc.pid}"):
            DeployLock(tmp_path, "digits").acquire()
        held, note = DeployLock(tmp_path, "digits").probe()
        assert held and note is not None and note["pid"] == proc.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # the kernel dropped the lock; the dead holder's note is still in the file, and says so
        held, note = DeployLock(tmp_path, "digits").probe()
        assert not held and note is not None and note["pid"] == proc.pid
        with DeployLock(tmp_path, "digits"):
            pass
        assert DeployLock(tmp_path, "digits").probe() == (False, None)  # a clean release leaves no note
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_reentering_a_held_lock_is_a_no_op_until_the_outer_exit(tmp_path: Path) -> None:
    lock = DeployLock(tmp_path, "digits")
    with lock:
        with lock:
            pass
        assert lock.held  # the inner exit did not release it
        with pytest.raises(LockHeld):
            DeployLock(tmp_path, "digits").acquire()
    assert not lock.held


def test_a_lock_on_a_deleted_file_is_not_taken_as_held(tmp_path: Path) -> None:
    """A deploy waiting on the lock file keeps it open; the file is deleted and a newcomer locks
    a new file at the same path. When the first holder finishes, the waiter must not take the
    orphaned file's lock and run beside the newcomer: it checks the inode after flock."""
    first = DeployLock(tmp_path, "digits")
    first.acquire()
    waiter = DeployLock(tmp_path, "digits", wait_s=3, poll_s=0.02)
    outcome: list[BaseException | str] = []

    def wait() -> None:
        try:
            waiter.acquire()
            outcome.append("acquired")
        except BaseException as exc:  # reported to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.3)  # the waiter has opened the original file and is polling it
    first.path.unlink()
    newcomer = DeployLock(tmp_path, "digits")
    newcomer.acquire()  # a new file at the same path
    first.release()  # the orphaned file's lock is free now
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], LockHeld), outcome
    newcomer.release()
    with DeployLock(tmp_path, "digits", wait_s=1):
        pass
