"""Scenario table, default objectives, runtime choice and release variants (no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import parse_config
from orchestrator.drills.environments import choose_runtime, docker_available
from orchestrator.drills.scenarios import SCENARIOS, get_scenario, variant_bundle
from orchestrator.errors import ConfigError
from orchestrator.model.bundle import Bundle, load_bundle


def test_every_scenario_of_the_issue_exists_with_objectives() -> None:
    assert list(SCENARIOS) == ["cloud-outage", "pod-crash", "latency", "bad-release", "storage-outage",
                               "silent-bad-model", "region-loss", "router-crash"]
    region = get_scenario("region-loss")
    assert region.entry and region.policy == "locality"
    assert region.objectives("kind", "locality").max_rto_s == 5.0
    assert get_scenario("router-crash").entry and get_scenario("router-crash").objectives("kind", "locality").max_errors == 0
    for name in ("cloud-outage", "pod-crash"):
        for runtime in ("local", "kind"):
            obj = get_scenario(name).objectives(runtime, "failover")
            assert obj.max_errors == 0 and obj.max_rto_s and obj.max_failback_s
    latency = get_scenario("latency")
    assert latency.objectives("local", "latency").expect_traffic_moves is True
    assert latency.objectives("local", "cost").expect_traffic_moves is True
    assert latency.objectives("local", "failover").expect_traffic_moves is False


def test_unknown_scenario_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown drill scenario 'meteor'") as info:
        get_scenario("meteor")
    assert "cloud-outage" in str(info.value.hint)


def test_runtime_choice() -> None:
    empty = parse_config({})
    assert choose_runtime("local", empty) == ("local", None)
    with pytest.raises(ConfigError, match="unknown runtime"):
        choose_runtime("moon", empty)
    runtime, why = choose_runtime("auto", empty)
    assert runtime == "local" and why  # no clusters in an empty config: it always says why
    with pytest.raises(ConfigError, match="cannot use the kind clusters"):
        choose_runtime("kind", empty)
    ok, reason = docker_available()
    assert isinstance(ok, bool) and reason


def test_variants_are_new_releases_and_a_broken_one_still_verifies(digits_bundle: Bundle, tmp_path: Path) -> None:
    good = variant_bundle(digits_bundle, tmp_path / "good", version="2")
    bad = variant_bundle(digits_bundle, tmp_path / "bad", version="bad", break_model=True)
    assert len({digits_bundle.digest, good.digest, bad.digest}) == 3
    assert load_bundle(bad.path).digest == bad.digest  # every digest checks out...
    assert not (bad.path / "model.onnx").read_bytes().startswith(b"\x08")  # ...but it is no ONNX model
    assert digits_bundle.card["version"] != good.card["version"] == "2"
