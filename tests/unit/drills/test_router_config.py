"""The drill's router: the config's timeouts, checks and retries; the drill's own targets, port and policy."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import parse_config
from orchestrator.drills.fleet import FleetTarget
from orchestrator.drills.runner import _router_config


class _Deployed:
    """What a fleet reports as deployed: the only part of a fleet the router config reads."""

    def targets(self) -> list[FleetTarget]:
        return [FleetTarget(cloud="aws", url="http://127.0.0.1:30001", priority=1, pricing_key="aws/us-east-1"),
                FleetTarget(cloud="gcp", url="http://127.0.0.1:30002", priority=2, pricing_key="gcp/us-central1")]


def test_the_configured_router_settings_are_drilled_with_the_drills_own_targets(tmp_path: Path) -> None:
    configured = parse_config({"router": {
        "host": "0.0.0.0", "port": 9000, "policy": "cost", "token_env": "PROD_TOKEN",
        "targets": [{"name": "prod", "url": "https://prod.example.com"}],
        "retries": {"per_try_timeout_s": 1.5, "attempts": 3}, "health": {"timeout_s": 1.0},
        "outlier": {"consecutive_local_failures": 5}}}).router
    cfg = _router_config(_Deployed(), "failover", tmp_path, configured)
    assert (cfg.retries.per_try_timeout_s, cfg.retries.attempts) == (1.5, 3)
    assert cfg.health.timeout_s == 1.0 and cfg.outlier.consecutive_local_failures == 5
    # loopback, a free port, the scenario's policy, the deployed targets, events in the run dir
    assert cfg.host == "127.0.0.1" and cfg.port not in (0, 9000) and cfg.policy == "failover"
    assert [t.name for t in cfg.targets] == ["aws", "gcp"] and cfg.token_env == "MCO_ROUTER_TOKEN"
    assert cfg.events_file == tmp_path / "router-events.jsonl"


def test_without_a_configured_router_the_defaults_apply(tmp_path: Path) -> None:
    cfg = _router_config(_Deployed(), "latency", tmp_path, None)
    assert cfg.retries.per_try_timeout_s == 0.5 and cfg.policy == "latency"
