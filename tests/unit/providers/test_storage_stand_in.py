"""What `mco local up storage` writes: valid config, loopback endpoints, no secret; started first."""

from __future__ import annotations

from pathlib import Path

import yaml

from orchestrator.config import parse_config
from orchestrator.local.base import LocalContext, update_local_config
from orchestrator.local.registry import STAND_INS
from orchestrator.local.storage import StorageStandIn


def test_storage_is_started_first() -> None:
    assert next(iter(STAND_INS)) == "storage"


def test_sections_are_valid_loopback_emulator_config_without_secrets(tmp_path: Path) -> None:
    ctx = LocalContext(state_dir=tmp_path / "state", config_path=tmp_path / "mco.local.yaml")
    stand_in = StorageStandIn()
    update_local_config(ctx.config_path, stand_in.sections(ctx))
    text = ctx.config_path.read_text()
    cfg = parse_config(yaml.safe_load(text))
    assert set(cfg.clouds) == {"aws", "gcp", "azure"}
    for name, cloud in cfg.clouds.items():
        assert cloud.provider == name and cloud.storage is not None
        assert cloud.storage.credentials == "emulator"
        assert cloud.storage.endpoint and cloud.storage.endpoint.startswith("http://127.0.0.1:")
    assert cfg.clouds["azure"].storage.endpoint.endswith("/devstoreaccount1")  # type: ignore[union-attr]
    lowered = text.lower().replace("pricing_key", "")  # a price catalog entry, not a credential
    assert "key" not in lowered and "secret" not in lowered and "password" not in lowered
    # Ports are remembered, so a restart keeps the written config valid.
    assert stand_in.sections(ctx) == StorageStandIn().sections(ctx)


def test_the_router_gets_stand_in_timeouts_and_a_users_own_router_section_is_kept(tmp_path: Path) -> None:
    ctx = LocalContext(state_dir=tmp_path / "state", config_path=tmp_path / "mco.local.yaml")
    update_local_config(ctx.config_path, StorageStandIn().sections(ctx))
    cfg = parse_config(yaml.safe_load(ctx.config_path.read_text()))
    assert cfg.router.retries.per_try_timeout_s == 1.5 and cfg.router.health.timeout_s == 1.0
    data = yaml.safe_load(ctx.config_path.read_text())
    data["router"] = {"retries": {"per_try_timeout_s": 0.2}}
    ctx.config_path.write_text(yaml.safe_dump(data))
    update_local_config(ctx.config_path, StorageStandIn().sections(ctx), remove=("cluster",))
    cfg = parse_config(yaml.safe_load(ctx.config_path.read_text()))
    assert cfg.router.retries.per_try_timeout_s == 0.2 and cfg.router.health.timeout_s == 0.5


def test_clusters_that_publish_their_routers_port_turn_routers_in_the_clusters_on(tmp_path: Path) -> None:
    from orchestrator.local.clusters import ClusterSpec, ClusterStandIn

    ctx = LocalContext(state_dir=tmp_path / "state", config_path=tmp_path / "mco.local.yaml")
    update_local_config(ctx.config_path, StorageStandIn().sections(ctx))  # `mco local up` starts storage first
    clusters = ClusterStandIn()
    sections = {c: ClusterSpec(c, 40000 + i, router_host_port=40010 + i).section()
                for i, c in enumerate(("aws", "gcp", "azure"))}
    update_local_config(ctx.config_path, sections, router=clusters.router_defaults(sections))
    cfg = parse_config(yaml.safe_load(ctx.config_path.read_text()))
    assert cfg.router.in_cluster is True
    assert cfg.router.retries.per_try_timeout_s == 1.5  # the stand-in timeouts stay
    assert all(cfg.clouds[c].router_urls for c in ("aws", "gcp", "azure"))  # what the global entry checks
    # clusters made before routers ran in them publish no router port: no routers asked for
    old = {c: ClusterSpec(c, 40000).section() for c in ("aws", "gcp", "azure")}
    assert clusters.router_defaults(old) == {}
    assert StorageStandIn().router_defaults(StorageStandIn().sections(ctx)) == {}


def test_a_users_in_cluster_false_is_kept_when_the_clusters_come_up_again(tmp_path: Path) -> None:
    from orchestrator.local.clusters import ClusterSpec, ClusterStandIn

    path = tmp_path / "mco.local.yaml"
    path.write_text(yaml.safe_dump({"router": {"in_cluster": False}}))
    sections = {c: ClusterSpec(c, 40000, router_host_port=40010).section() for c in ("aws", "gcp", "azure")}
    update_local_config(path, sections, router=ClusterStandIn().router_defaults(sections))
    assert parse_config(yaml.safe_load(path.read_text())).router.in_cluster is False
