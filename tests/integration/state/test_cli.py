"""``mco state …`` and ``mco history`` on the objectstore backend, as a user runs them, and
``mco state migrate`` of a SQLite history of 20 releases."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.config import MCOConfig
from orchestrator.errors import LeaseLost
from orchestrator.releases.state.objectstore import ObjectBackend, ObjectHistory
from orchestrator.releases.store import CloudPlan, ReleaseStore, state_dir_for
from tests.integration.state.test_history import PLAN, deploy_once
from tests.integration.storage.conftest import Emulators


def _mco(cfg: MCOConfig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli.main", *args, "--config", str(cfg.source),
                           "-o", "json"], capture_output=True, text=True, timeout=120)


def test_lock_shows_the_holder_and_unlock_force_is_recorded(project: Callable[..., MCOConfig]) -> None:
    cfg = project()
    assert json.loads(_mco(cfg, "state", "lock").stdout)["held"] is False
    backend = ObjectBackend(cfg)
    try:
        lease = backend.lock(purpose="deploy")
        lease.acquire()
        shown = json.loads(_mco(cfg, "state", "lock").stdout)
        assert shown["held"] and shown["holder"]["purpose"] == "deploy"
        assert {"holder", "host", "since", "until", "fence"} <= set(shown["holder"])
        refused = _mco(cfg, "state", "unlock")
        assert refused.returncode == 1 and "--force" in json.loads(refused.stdout)["hint"]
        broke = _mco(cfg, "state", "unlock", "--force")
        assert broke.returncode == 0, broke.stderr
        record = json.loads(broke.stdout)["record"]
        assert json.loads(_mco(cfg, "state", "lock").stdout)["held"] is False
        view = backend.read_log()
        unlock = view.records[record - 1]
        assert unlock.type == "unlock" and unlock.data["broke"]["purpose"] == "deploy"
        assert unlock.fence > lease.fence_number  # the broken holder is fenced from here on
        with pytest.raises(LeaseLost):
            ObjectHistory(backend).begin(kind="deploy", model_digest="e" * 64, clouds={"aws": PLAN})
        lease.release()
    finally:
        backend.close()


def test_verify_names_a_lagging_store_and_repair_mends_it(project: Callable[..., MCOConfig],
                                                         all_up: Emulators) -> None:
    cfg = project()
    backend = ObjectBackend(cfg)
    try:
        all_up.kill("azure")
        deploy_once(backend)
    finally:
        backend.close()
    all_up.restart("azure")
    lag = _mco(cfg, "state", "verify")
    assert lag.returncode == 1
    azure = next(s for s in json.loads(lag.stdout)["stores"] if s["store"] == "azure")
    assert azure["missing"] and not azure["in_sync"]
    fixed = _mco(cfg, "state", "verify", "--repair")
    assert fixed.returncode == 0, fixed.stdout
    assert json.loads(fixed.stdout)["repaired"]["azure"]
    table = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "state", "verify", "--config",
                            str(cfg.source)], capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "in sync" in table.stdout


def test_history_prints_with_two_stores_down_marked_possibly_stale(project: Callable[..., MCOConfig],
                                                                   all_up: Emulators) -> None:
    cfg = project()
    backend = ObjectBackend(cfg)
    try:
        deploy_once(backend)
    finally:
        backend.close()
    all_up.kill("aws")
    all_up.kill("gcp")
    out = _mco(cfg, "history")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["state"]["possibly_stale"] and data["state"]["unreachable"] == ["aws", "gcp"]
    assert [r["release"] for r in data["releases"]] == [1]
    table = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "history", "--config", str(cfg.source)],
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "possibly stale" in table.stderr


def test_migrate_copies_20_releases_with_their_manifests(project: Callable[..., MCOConfig]) -> None:
    cfg = project(backend="sqlite")
    with ReleaseStore(state_dir_for(cfg) / "releases.db", cfg.project.name) as sqlite:
        for i in range(20):
            plan = CloudPlan(model_digest=f"{i:064x}", image_ref=f"img@sha256:{i:064x}", image_digest=None,
                             overlay="kind", replicas=2, manifests=[{"kind": "Deployment", "n": i}])
            n = sqlite.begin(kind="rollback" if i % 5 == 4 else "deploy", model_digest=f"{i:064x}",
                             clouds={"aws": plan, "gcp": plan}, rollback_of=i - 1 if i % 5 == 4 else None)
            sqlite.update_cloud(n, "aws", status="deployed", ready_replicas=2)
            sqlite.update_cloud(n, "gcp", status="failed" if i % 7 == 3 else "deployed", reason="x")
            sqlite.finish(n)
        expected = [r.summary(manifests=True) for r in sqlite.list()]
    out = _mco(cfg, "state", "migrate", "--to", "objectstore")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert data["copied"] == 20 and data["equal"] and data["replicas_in_sync"]
    objcfg = project(backend="objectstore", workdir="elsewhere")
    backend = ObjectBackend(objcfg)
    try:
        assert [r.summary(manifests=True) for r in ObjectHistory(backend).list()] == expected
        assert ObjectHistory(backend).get(7).clouds["gcp"].manifests == [{"kind": "Deployment", "n": 6}]
    finally:
        backend.close()
    again = _mco(cfg, "state", "migrate", "--to", "objectstore")
    assert again.returncode == 1 and "already has 20" in json.loads(again.stdout)["error"]


def test_bad_state_config_is_refused_with_the_key(tmp_path: Path, all_up: Emulators) -> None:
    from tests.integration.state.conftest import write_project

    path = write_project(all_up, tmp_path, "bad", stores=["aws", "oracle"])
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "state", "lock", "--config", str(path),
                          "-o", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "state.stores names 'oracle'" in json.loads(out.stdout)["error"]
