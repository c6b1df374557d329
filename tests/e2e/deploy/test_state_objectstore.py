"""The acceptance of the replicated release state (issue 16) with real `mco deploy` runs on
the three kind clusters, the state on the three storage emulators.

Run under the kind lock: ``flock /tmp/mco-kind.lock .venv/bin/pytest -q tests/e2e/deploy/test_state_objectstore.py``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.deploy.conftest import MCO, mco, mco_json
from tests.integration.state.conftest import STORES, emulators  # noqa: F401  (re-exported fixture)
from tests.integration.storage.conftest import Emulators

pytestmark = [pytest.mark.cluster, pytest.mark.docker, pytest.mark.slow]

TTL = 5.0


def _unique_prefix(cfg: dict[str, Any], name: str) -> None:
    """The session's emulators are shared: each test keeps its state under a prefix of its own."""
    for cloud in STORES:
        cfg["clouds"][cloud]["storage"]["prefix"] = name


def _workdir(deploy_config: Path, emu: Emulators, name: str, *, prefix: str) -> Path:
    """A working directory of its own (its own project.state_dir), sharing the objectstore state."""
    cfg = yaml.safe_load(deploy_config.read_text())
    storage = yaml.safe_load(emu.config_path.read_text())["clouds"]
    for cloud in STORES:
        cfg["clouds"][cloud]["storage"] = storage[cloud]["storage"]
    _unique_prefix(cfg, prefix)
    cfg["state"] = {"backend": "objectstore", "stores": list(STORES), "lease_ttl_s": TTL}
    root = deploy_config.parent / name
    root.mkdir(exist_ok=True)
    cfg["project"]["state_dir"] = str(root / "state")
    path = root / "mco.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _start(*args: str, config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*MCO, *args, "--config", str(config), "--output", "json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_holder(proc: subprocess.Popen[str], config: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        holder = mco_json("state", "lock", config=config)["holder"]
        if holder is not None and holder["pid"] == proc.pid:
            return
        time.sleep(0.3)
    raise AssertionError(f"pid {proc.pid} never held the lock (exit code {proc.poll()})")


def _wait_for_rollout(proc: subprocess.Popen[str], config: Path, *, after: int, timeout: float = 300) -> None:
    """Until ``proc``'s release (numbered above ``after``) is in the history with a cloud still rolling out."""
    from orchestrator.config import load_config
    from orchestrator.releases.state import open_history

    # Read in this process, ten times a second: a CLI call per read (a second or two on a busy
    # machine) could miss a rollout of kind nodes that already hold the image.
    cfg = load_config(config)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        store = open_history(cfg, create=False)
        assert store is not None
        with store:
            latest = [r.summary() for r in store.list(limit=1)]
        if latest and latest[0]["release"] > after and any(c["status"] in ("pending", "applying")
                                                           for c in latest[0]["clouds"].values()):
            return
        time.sleep(0.1)
    raise AssertionError(f"pid {proc.pid}'s release never showed up rolling out (exit code {proc.poll()})")


@pytest.mark.timeout(3600)
def test_objectstore_state_acceptance(deploy_config: Path, digits_bundle: Any, second_bundle: Any,
                                      emulators: Emulators) -> None:  # noqa: F811
    a, b = (_workdir(deploy_config, emulators, "a", prefix="e2e-acceptance"),
            _workdir(deploy_config, emulators, "b", prefix="e2e-acceptance"))

    # Two deploys from two working directories: exactly one deploys, the other names the holder.
    first, second = _start("deploy", str(digits_bundle.path), config=a), _start("deploy", str(digits_bundle.path), config=b)
    outs = [p.communicate(timeout=900) for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    assert codes == [0, 1], outs
    loser = next(json.loads(o) for (o, _e), p in zip(outs, (first, second)) if p.returncode == 1)
    assert loser["kind"] == "LockHeld" and "is running" in loser["error"]
    # --wait queues behind a running deploy, then deploys.
    first = _start("deploy", str(second_bundle.path), config=a)
    _wait_for_holder(first, b)  # the queued deploy starts once the first holds the lock
    second = _start("deploy", str(digits_bundle.path), "--wait", "600", config=b)
    outs = [p.communicate(timeout=900) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, "\n".join(o + e for o, e in outs)
    assert mco_json("history", config=a)["releases"] == mco_json("history", config=b)["releases"]

    # A killed deploy: the next one gets the lock within TTL + 5 s; history marks the interrupted release.
    before = mco_json("history", config=a)["releases"][0]["release"]
    killed = _start("deploy", str(second_bundle.path), config=a)
    _wait_for_rollout(killed, a, after=before)  # killed in the middle of its rollout, not before it began
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    started = time.monotonic()
    lock_wait = subprocess.Popen([*MCO, "deploy", str(digits_bundle.path), "--wait", "120", "--config", str(b),
                                  "--output", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while True:  # one read per turn: the waiting deploy may take the lock and finish between two reads
        holder = mco_json("state", "lock", config=b)["holder"]
        if (holder is not None and holder["pid"] == lock_wait.pid) or lock_wait.poll() is not None:
            break
        assert time.monotonic() - started < TTL + 5 + 10, "the lock was not taken over in time"
        time.sleep(0.5)
    assert time.monotonic() - started < TTL + 5 + 10, "the lock was not taken over in time"
    assert lock_wait.wait(timeout=900) == 0
    history = mco_json("history", config=a)["releases"]
    killed_release = next(r for r in history if r["release"] == before + 1)
    # the clouds it had not finished are marked; the release is "partial" if some had finished
    assert any(c["status"] == "interrupted" for c in killed_release["clouds"].values()), killed_release

    # A paused holder: SIGSTOP past its lease, another deploy takes over, the first's writes are refused.
    before = mco_json("history", config=a)["releases"][0]["release"]
    paused = _start("deploy", str(second_bundle.path), config=a)
    _wait_for_rollout(paused, a, after=before)  # paused holding the lease, with history still to write
    paused.send_signal(signal.SIGSTOP)
    try:
        assert mco("deploy", str(digits_bundle.path), "--wait", "120", config=b).returncode == 0
    finally:
        paused.send_signal(signal.SIGCONT)
    out, _err = paused.communicate(timeout=600)
    assert paused.returncode == 1 and json.loads(out)["kind"] == "LeaseLost"

    # One store down: deploy and rollback work; verify shows the lag, repair mends it.
    emulators.kill("azure")
    # Azurite is also the azure cloud's bundle store here, so that cloud alone may fail to publish
    # (exit 1, "partial"); the state itself goes on with two stores of three.
    deployed = mco_json("deploy", str(second_bundle.path), config=a, ok=False)
    assert "error" not in deployed and all(deployed["clouds"][c]["status"] == "deployed"
                                                for c in ("aws", "gcp")), deployed
    rolled = mco_json("rollback", config=a, ok=False)
    assert "error" not in rolled and rolled.get("release", 0) > deployed["release"], rolled
    emulators.restart("azure")
    lag = mco_json("state", "verify", config=a, ok=False)
    assert not lag["in_sync"] and any(s["missing"] for s in lag["stores"] if s["store"] == "azure")
    assert mco_json("state", "verify", "--repair", config=a)["in_sync"]

    # Two stores down: deploy refused naming them, history still prints.
    emulators.kill("gcp")
    emulators.kill("azure")
    try:
        refused = mco_json("deploy", str(digits_bundle.path), config=a, ok=False)
        assert refused["kind"] == "StateUnavailable" and "gcp" in refused["error"] and "azure" in refused["error"]
        stale = mco_json("history", config=a)
        assert stale["state"]["possibly_stale"] and stale["releases"]
    finally:
        emulators.restart("gcp")
        emulators.restart("azure")


@pytest.mark.timeout(3600)
def test_migrate_then_rollback_from_the_objectstore(deploy_config: Path, digits_bundle: Any, second_bundle: Any,
                                                    emulators: Emulators) -> None:  # noqa: F811
    for bundle in (digits_bundle, second_bundle, digits_bundle):
        assert mco("deploy", str(bundle.path), config=deploy_config).returncode == 0
    objcfg = _workdir(deploy_config, emulators, "migrated", prefix="e2e-migrate")
    cfg = yaml.safe_load(objcfg.read_text())
    cfg["project"]["state_dir"] = yaml.safe_load(deploy_config.read_text())["project"]["state_dir"]
    cfg["state"]["backend"] = "sqlite"
    sqlite_cfg = objcfg.parent / "sqlite.yaml"
    sqlite_cfg.write_text(yaml.safe_dump(cfg))
    result = mco_json("state", "migrate", "--to", "objectstore", config=sqlite_cfg)
    assert result["equal"] and result["replicas_in_sync"]
    rolled = mco_json("rollback", "--to", "2", config=objcfg)
    assert rolled["status"] == "deployed" and rolled["rollback_of"] == 2
