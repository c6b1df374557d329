"""Fixtures for drills against the three local kind clusters (real nodes, real pods).

The clusters come from ``local_clusters`` (tests/e2e/clusters/conftest.py: brought up when
absent, deleted at the end unless they were already running). The object-store emulators
are started for the session (and stopped again unless they were running before). Each
session gets its own config and release history; the clusters' ``mco`` namespace is
overwritten.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.clusters.conftest import cluster_report, local_clusters  # noqa: F401  (re-exported fixture)


@pytest.fixture(scope="session")
def drill_config(local_clusters: dict[str, dict[str, Any]],  # noqa: F811
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """(config path, LocalContext) with the kind clusters and the object-store emulators."""
    from orchestrator.local.base import STAND_IN_ROUTER, LocalContext
    from orchestrator.local.clusters import ClusterStandIn
    from orchestrator.local.storage import StorageStandIn

    root = tmp_path_factory.mktemp("drills")
    ctx = LocalContext(config_path=root / "stand-ins.yaml")
    clusters = ClusterStandIn().up(ctx)  # idempotent: already up
    storage = StorageStandIn()
    storage_was_up = all(row["state"] == "running" for row in storage.status(ctx))
    stores = storage.up(ctx)
    cfg = {
        "project": {"name": "e2e-drills", "state_dir": str(root / "state")},
        # Rollouts here take seconds; a broken cluster should fail the session well inside CI's budget.
        "deploy": {"replicas": 1, "rollout_timeout_s": 120, "auto_rollback": True},
        "clouds": {cloud: {"provider": cloud, **clusters[cloud], **{k: v for k, v in stores[cloud].items()
                                                                    if k != "provider"}}
                   for cloud in clusters},
        "router": STAND_IN_ROUTER,  # as `mco local up` writes it
    }
    path = root / "mco.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    yield path, ctx
    if not storage_was_up:
        storage.down(ctx)


@pytest.fixture(scope="session")
def kind_drill_fleet(drill_config: tuple[Path, Any], digits_bundle: Any) -> Iterator[Any]:
    """A KindFleet with the digits model deployed (mco push + mco deploy) on every cluster."""
    from orchestrator.config import load_config
    from orchestrator.drills.kind_fleet import kind_fleet
    from orchestrator.errors import ClusterError

    path, ctx = drill_config
    cfg = load_config(path)
    try:
        with kind_fleet(cfg, bundle=digits_bundle, local_ctx=ctx) as (fleet, _bundle):
            yield fleet
    except ClusterError as exc:
        reports = [cluster_report(c.cluster.context) for c in cfg.clouds.values()]
        raise AssertionError(f"{exc}\n" + "\n".join(reports)) from exc
