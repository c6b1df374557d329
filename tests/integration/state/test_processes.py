"""Several mco processes against the three real emulators: a race for the lock, a holder killed
with SIGKILL, a holder paused with SIGSTOP past its lease, and a bounded randomized run with
stores stopped and started under it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.config import MCOConfig
from orchestrator.releases.state.objectstore import ObjectBackend, ObjectHistory
from tests.integration.state.conftest import STORES
from tests.integration.storage.conftest import Emulators

WORKER = [sys.executable, "-m", "orchestrator.testing.state_worker"]


def _worker(cfg: MCOConfig, *args: str) -> subprocess.Popen[str]:
    assert cfg.source is not None
    return subprocess.Popen([*WORKER, args[0], "--config", str(cfg.source), *args[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})


def _wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no '{prefix}' line from the worker (rc={proc.poll()}); stderr: "
                         f"{proc.stderr.read() if proc.stderr else ''}")


def _history(cfg: MCOConfig) -> tuple[ObjectBackend, ObjectHistory]:
    backend = ObjectBackend(cfg)
    return backend, ObjectHistory(backend)


def test_two_processes_race_and_exactly_one_wins(project: Callable[..., MCOConfig]) -> None:
    a, b = project(workdir="a"), project(workdir="b")
    start = f"{time.time() + 10:.3f}"  # both are past their imports by then, even on a loaded machine
    procs = [_worker(cfg, "ops", "--count", "1", "--start-at", start, "--hold", "3") for cfg in (a, b)]
    outs = [json.loads(p.communicate(timeout=90)[0].strip().splitlines()[-1]) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 1], outs
    winner = next(o for o in outs if "ack" in o)
    loser = next(o for o in outs if "fail" in o)
    assert loser["fail"] == "LockHeld" and "another deploy" in loser["message"] and "pid" in loser["message"]
    backend, history = _history(a)
    try:
        assert [r.model_digest for r in history.list()] == [winner["tag"]]
    finally:
        backend.close()


def test_a_killed_holder_loses_the_lock_within_ttl(project: Callable[..., MCOConfig]) -> None:
    ttl = 3.0
    a, b = project(ttl=ttl, workdir="a"), project(ttl=ttl, workdir="b")
    holder = _worker(a, "hold", "--seconds", "60")
    _wait_line(holder, "held")
    # The next deploy queues (--wait) behind the holder, as a second engineer's would.
    nxt = _worker(b, "ops", "--count", "1", "--wait", str(ttl + 30), "--poll", "0.2", "--start-at",
                  f"{time.time():.3f}")
    _wait_line(nxt, '{"ready"')
    time.sleep(1)
    holder.kill()  # SIGKILL: no release, no goodbye
    holder.wait()
    killed_at = time.monotonic()
    out = json.loads(_wait_line(nxt, '{"ack"', timeout=ttl + 30))
    assert time.monotonic() - killed_at < ttl + 5, "the next deploy got the lock too late"
    nxt.wait(timeout=30)
    backend, history = _history(b)
    try:
        first, second = history.get(1), history.get(out["ack"])
        assert first.status == "interrupted" and first.clouds["aws"].reason == "deploy interrupted"
        assert second.status == "in_progress" and second.number == 2
    finally:
        backend.close()


def test_a_paused_holder_cannot_write_after_takeover(project: Callable[..., MCOConfig]) -> None:
    ttl = 2.0
    a, b = project(ttl=ttl, workdir="a"), project(ttl=ttl, workdir="b")
    paused = _worker(a, "hold", "--seconds", "60")
    old_fence = int(_wait_line(paused, "held").split()[1])
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        nxt = _worker(b, "hold", "--seconds", "1", "--wait", str(ttl + 30))
        new_fence = int(_wait_line(nxt, "held", timeout=ttl + 30).split()[1])
        assert _wait_line(nxt, "done", timeout=60) == "done"
        nxt.wait(timeout=30)
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    assert _wait_line(paused, "fenced", timeout=30).startswith("fenced")
    assert paused.wait(timeout=30) == 3
    assert new_fence > old_fence
    backend = ObjectBackend(b)
    try:
        view = backend.read_log()
        takeover = next(r.seq for r in view.records if r.type == "lease" and r.fence == new_fence)
        assert all(r.fence >= new_fence for r in view.records if r.seq >= takeover), \
            "a record of the paused holder landed after the takeover"
        assert backend.folded().fenced == []
        assert ObjectHistory(backend).get(2).status == "deployed"
    finally:
        backend.close()


@pytest.mark.slow
def test_randomized_lock_and_append_with_stores_stopped_and_started(project: Callable[..., MCOConfig],
                                                                   all_up: Emulators, tmp_path: Path) -> None:
    """Four processes, 50 lock-and-append operations each, while one store at a time is killed
    and started again at random. Every acknowledged release must be in the final history, once,
    and every replica must end up holding the same linear log."""
    budget_s = 480.0  # about 280 s on this 2-core machine at load average 13-16
    procs_n, per_proc = 4, 50
    cfgs = [project(ttl=5.0, workdir=f"w{i}") for i in range(procs_n)]
    rng = random.Random(int(os.environ.get("MCO_STATE_SEED", "16")))
    stop = threading.Event()
    chaos: list[str] = []

    def churn() -> None:
        while not stop.wait(rng.uniform(2.0, 5.0)):
            victim = rng.choice(STORES)
            all_up.kill(victim)
            chaos.append(f"kill {victim}")
            if stop.wait(rng.uniform(1.0, 3.0)):
                break
            all_up.restart(victim)
            chaos.append(f"start {victim}")

    started = time.monotonic()
    procs = [_worker(cfg, "ops", "--count", str(per_proc), "--wait", "60", "--poll", "0.1") for cfg in cfgs]
    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    outputs = []
    try:
        for proc in procs:
            out, _err = proc.communicate(timeout=max(5.0, budget_s - (time.monotonic() - started)))
            outputs.append(out)
    finally:
        stop.set()
        thread.join(timeout=30)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for cloud in STORES:
        all_up.restart(cloud)
    lines = [json.loads(line) for out in outputs for line in out.splitlines()
             if line.startswith("{") and '"ready"' not in line]
    acked = {line["tag"]: line["ack"] for line in lines if "ack" in line}
    assert len(lines) == procs_n * per_proc
    assert len(acked) >= procs_n * per_proc // 2, f"too few operations succeeded: {len(acked)}; chaos: {chaos}"
    backend = ObjectBackend(cfgs[0])
    try:
        report = backend.verify(repair=True)
        assert report["in_sync"], report
        history = ObjectHistory(backend).list()
        by_tag = {}
        for r in history:
            assert r.model_digest not in by_tag, f"release {r.model_digest} recorded twice"
            by_tag[r.model_digest] = r.number
        lost = {t: n for t, n in acked.items() if by_tag.get(t) != n}
        assert not lost, f"acknowledged releases lost or renumbered: {lost}; chaos: {chaos}"
        assert sorted(r.number for r in history) == list(range(1, len(history) + 1))
        logs = [backend.replicas.stores[c].versions(backend.replicas.root + "log/") for c in STORES]
        assert len({frozenset(k for k in log) for log in logs}) == 1, "replicas hold different records"
    finally:
        backend.close()
    assert time.monotonic() - started < budget_s + 60
