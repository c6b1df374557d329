"""`mco router export --format envoy` checked against Envoy's own API: tools/envoycheck loads the
export with protojson (unknown fields and wrong types fail) and runs the API's validation rules
(``ValidateAll``, typed_config included), for every routing policy; broken exports must fail."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.router.balancer.policies import policy_names
from tests.integration.router.conftest import CLOUDS, MCO

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def envoycheck() -> str:
    """The checker binary, built once and cached by a hash of its source (`make setup` builds it)."""
    out = subprocess.run(["bash", str(ROOT / "tools/envoycheck/build.sh")], capture_output=True, text=True,
                         timeout=280)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def _export(tmp_path: Path, policy: str) -> dict:
    doc = {"router": {"policy": policy, "targets": [
        {"name": name, "url": f"http://127.0.0.1:{18080 + i}", "priority": i, "weight": 3 - i, "pricing_key": key}
        for i, (name, key) in enumerate(CLOUDS)]}}
    config = tmp_path / f"mco-{policy}.yaml"
    config.write_text(yaml.safe_dump(doc))
    out = tmp_path / f"envoy-{policy}.yaml"
    done = subprocess.run([MCO, "router", "export", "--format", "envoy", "--config", str(config), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(out.read_text())


def _check(envoycheck: str, tmp_path: Path, config: dict) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(config))
    return subprocess.run([envoycheck, str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("policy", policy_names())
def test_envoy_accepts_the_export_of_every_policy(envoycheck, tmp_path, policy):
    done = _check(envoycheck, tmp_path, _export(tmp_path, policy))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def _cluster(config: dict) -> dict:
    return config["static_resources"]["clusters"][0]


def _misspelled(config: dict) -> None:
    _cluster(config)["conect_timeout"] = _cluster(config).pop("connect_timeout")


def _port_over_65535(config: dict) -> None:
    endpoint = _cluster(config)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    endpoint["address"]["socket_address"]["port_value"] = 70000


def _wrong_type(config: dict) -> None:
    _cluster(config)["connect_timeout"] = 5  # a Duration is a string such as "5s"


def _unknown_typed_config(config: dict) -> None:
    listener = config["static_resources"]["listeners"][0]
    listener["filter_chains"][0]["filters"][0]["typed_config"]["@type"] = "type.googleapis.com/envoy.nope.v3.Nope"


def _invalid_inside_typed_config(config: dict) -> None:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["stat_prefix"] = ""  # the API requires a non-empty stat prefix


@pytest.mark.parametrize(("breakage", "fragment"), [
    (_misspelled, 'unknown field "conect_timeout"'),
    (_port_over_65535, "PortValue: value must be less than or equal to 65535"),
    (_wrong_type, "unexpected token 5"),
    (_unknown_typed_config, 'unable to resolve "type.googleapis.com/envoy.nope.v3.Nope"'),
    (_invalid_inside_typed_config, "HttpConnectionManager.StatPrefix"),
])
def test_a_broken_export_fails(envoycheck, tmp_path, breakage, fragment):
    config = copy.deepcopy(_export(tmp_path, "failover"))
    breakage(config)
    done = _check(envoycheck, tmp_path, config)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert fragment in done.stderr
