from __future__ import annotations

import pytest

from orchestrator.cli.router import _parse_target
from orchestrator.config import RouterConfig, RouterTargetConfig, parse_config
from orchestrator.errors import ConfigError
from orchestrator.router.export import render
from orchestrator.router.settings import read_token, targets_from_config


def test_router_section_parses_and_rejects_typos():
    cfg = parse_config({"router": {"policy": "latency", "targets": [
        {"name": "aws", "url": "http://127.0.0.1:9001/", "pricing_key": "aws/us-east-1"}]}})
    assert cfg.router.policy == "latency" and cfg.router.targets[0].url == "http://127.0.0.1:9001"
    with pytest.raises(ConfigError) as err:
        parse_config({"router": {"polcy": "latency"}})
    assert "router.polcy" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"router": {"targets": [{"name": "a", "url": "127.0.0.1:9001"}]}})
    assert "not an http(s) URL" in str(err.value)


def test_targets_also_come_from_clouds_with_an_endpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no release history here
    cfg = parse_config({
        "clouds": {
            "aws": {"provider": "aws", "priority": 0, "pricing_key": "aws/us-east-1",
                    "cluster": {"context": "kind-aws", "endpoint": "http://127.0.0.1:30081"}},
            "gcp": {"provider": "gcp", "priority": 1, "cluster": {"context": "kind-gcp"}},  # no endpoint: skipped
            "azure": {"provider": "azure", "priority": 2,
                      "cluster": {"context": "kind-azure", "endpoint": "http://127.0.0.1:30083"}},
        },
        "router": {"targets": [{"name": "azure", "url": "http://10.0.0.1:80", "priority": 5, "allow_insecure_http": True}]},
    })
    targets = {t.name: t for t in targets_from_config(cfg)}
    assert set(targets) == {"aws", "azure"}
    assert targets["aws"].pricing_key == "aws/us-east-1" and targets["aws"].url == "http://127.0.0.1:30081"
    assert targets["azure"].url == "http://10.0.0.1:80"  # router.targets wins


def test_token_from_env_then_file(tmp_path, monkeypatch):
    cfg = RouterConfig(token_file=tmp_path / "tok")
    monkeypatch.delenv("MCO_ROUTER_TOKEN", raising=False)
    with pytest.raises(ConfigError):
        read_token(cfg)
    (tmp_path / "tok").write_text("from-file-" + "x" * 32 + "\n")
    (tmp_path / "tok").chmod(0o600)  # a token file others can read is refused (test_secret_files.py)
    assert read_token(cfg) == "from-file-" + "x" * 32
    monkeypatch.setenv("MCO_ROUTER_TOKEN", "from-env")
    assert read_token(cfg) == "from-env"


def test_cli_target_option_parses_and_explains_mistakes():
    t = _parse_target("gcp=http://127.0.0.1:9002,priority=3,weight=2,pricing=gcp/us-central1", 0)
    assert (t.name, t.priority, t.weight, t.pricing_key) == ("gcp", 3, 2, "gcp/us-central1")
    with pytest.raises(ConfigError, match="NAME=URL"):
        _parse_target("gcp", 0)
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        _parse_target("gcp=http://127.0.0.1:1,colour=red", 0)


def _cfg(policy: str) -> RouterConfig:
    return RouterConfig(port=8088, policy=policy, targets=[
        RouterTargetConfig(name="aws", url="http://127.0.0.1:9001", priority=0, weight=3, pricing_key="aws/eu-west-1"),
        RouterTargetConfig(name="gcp", url="http://127.0.0.1:9002", priority=1, pricing_key="gcp/us-central1"),
        RouterTargetConfig(name="azure", url="https://model.example.com", priority=2, pricing_key="azure/eastus"),
    ])


def test_haproxy_export_maps_priorities_checks_and_retries():
    text = render(_cfg("failover"), "haproxy")
    assert "balance first" in text
    assert "server aws 127.0.0.1:9001 check\n" in text
    assert "server gcp 127.0.0.1:9002 check backup" in text
    assert "server azure model.example.com:443 check ssl verify required" in text
    assert "rise 2 fall 2" in text and "fastinter 200ms" in text and "timeout server 500ms" in text
    assert "retries 1" in text and "option redispatch 1" in text
    weighted = render(_cfg("weighted"), "haproxy")
    assert "balance roundrobin" in weighted and "server aws 127.0.0.1:9001 check weight 3" in weighted
    assert "backup" not in weighted
    cost = render(_cfg("cost"), "haproxy")
    servers = [line.split()[1] for line in cost.splitlines() if line.strip().startswith("server ")]
    assert servers[0] == "azure"  # cheapest first, the rest are backups


def test_export_refuses_unknown_formats_and_path_prefixes():
    with pytest.raises(ConfigError, match="unknown export format"):
        render(_cfg("failover"), "nginx")
    cfg = RouterConfig(targets=[RouterTargetConfig(name="a", url="http://127.0.0.1:9001/v2")])
    with pytest.raises(ConfigError, match="URL path"):
        render(cfg, "haproxy")
