"""Fixtures for `mco deploy` / `mco rollback` against the three local kind clusters.

The clusters come from ``local_clusters`` (tests/e2e/clusters/conftest.py: brought up when
absent, deleted at the end unless they were already running). Each test session gets its
own config and state directory, so the history starts empty; the clusters' ``mco``
namespace is shared with whatever ran there before and is overwritten.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.clusters.conftest import local_clusters  # noqa: F401  (re-exported fixture)

MCO = [sys.executable, "-m", "orchestrator.cli.main"]


@pytest.fixture
def deploy_config(local_clusters: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """An mco config with the three kind clusters and a fresh state directory, one per test:
    a test's history holds its own releases only, whatever ran before it."""
    from orchestrator.local.base import LocalContext
    from orchestrator.local.clusters import ClusterStandIn

    root = tmp_path_factory.mktemp("deploy")
    sections = ClusterStandIn().up(LocalContext(config_path=root / "clusters.yaml"))  # idempotent: already up
    cfg = {
        "project": {"name": "e2e-digits", "state_dir": str(root / "state")},
        # One replica per cluster: three clusters and two releases share two cores.
        "deploy": {"replicas": 1, "rollout_timeout_s": 120, "auto_rollback": True},
        "clouds": {cloud: {"provider": cloud, **sec} for cloud, sec in sections.items()},
    }
    path = root / "mco.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def mco(*args: str, config: Path, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MCO, *args, "--config", str(config)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def mco_json(*args: str, config: Path, ok: bool = True, timeout: float = 900) -> dict[str, Any]:
    proc = mco(*args, "--output", "json", config=config, timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"mco {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not JSON from mco {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}") from exc


def model_digest_at(endpoint: str, *, timeout: float = 60) -> str:
    """The bundle digest the endpoint serves, from /v1/model (retried while pods switch)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"{endpoint}/v1/model", timeout=5)
            if resp.status_code == 200:
                return str(resp.json()["bundle_digest"])
            last = resp.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"{endpoint}/v1/model did not answer: {last}")


def wait_serving(endpoint: str, digest: str, *, timeout: float = 90) -> None:
    """Until every answer (the Service balances over pods) comes from ``digest``."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        answers = {model_digest_at(endpoint) for _ in range(4)}
        if answers == {digest}:
            return
        seen = ", ".join(sorted(a[:12] for a in answers))
        time.sleep(1)
    raise AssertionError(f"{endpoint} still serves {seen}, not only {digest[:12]}")


@pytest.fixture(scope="session")
def second_bundle(bundle_factory: Any) -> Any:
    return bundle_factory(dataset="digits", strategy="ovr")


@pytest.fixture
def paused_node() -> Iterator[list[str]]:
    """Node containers a test pauses; always unpaused afterwards."""
    paused: list[str] = []
    yield paused
    for name in paused:
        subprocess.run(["docker", "unpause", name], capture_output=True, timeout=60)
