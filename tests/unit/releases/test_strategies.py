"""Release strategies: the registry, the config keys that name them, and the rules they judge by."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.releases.strategies import Strategy, register_strategy, strategy_class, strategy_names
from orchestrator.releases.strategies.all_at_once import AllAtOnce


def test_the_built_in_strategies_register_themselves() -> None:
    assert strategy_names()[:2] == ("all-at-once", "waves")
    assert strategy_class("all-at-once") is AllAtOnce


def test_an_unknown_strategy_is_refused_with_the_known_names() -> None:
    with pytest.raises(ConfigError) as err:
        strategy_class("blue-green")
    assert "all-at-once" in str(err.value.hint) and "waves" in str(err.value.hint)


def test_a_second_class_cannot_take_a_registered_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        @register_strategy
        class Again(Strategy):
            name = "waves"
            summary = "a clash"
    with pytest.raises(TypeError, match="summary"):
        @register_strategy
        class NoSummary(Strategy):
            name = "no-summary"


def test_the_default_strategy_is_all_at_once() -> None:
    cfg = parse_config({})
    assert cfg.deploy.strategy == "all-at-once" and cfg.deploy.waves is None
    assert cfg.analysis.steps == [10, 50, 100]


def test_config_refuses_an_unknown_strategy_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"deploy": {"strategy": "canary"}})
    assert "deploy.strategy" in err.value.message and "all-at-once, waves" in err.value.message


def test_config_refuses_a_cloud_in_two_waves_and_an_empty_wave() -> None:
    with pytest.raises(ConfigError, match="two waves"):
        parse_config({"deploy": {"strategy": "waves", "waves": [["aws"], ["gcp", "aws"]]}})
    with pytest.raises(ConfigError, match="at least one cloud"):
        parse_config({"deploy": {"waves": [[]]}})
    cfg = parse_config({"deploy": {"strategy": "waves", "waves": [["aws"], ["gcp", "azure"]]}})
    assert cfg.deploy.waves == [["aws"], ["gcp", "azure"]]


def test_an_analysis_rule_on_an_unknown_metric_is_refused_at_load_with_the_known_names() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"analysis": {"require": ["error_rate<0.01", "live_macro_f2>=0.9"]}})
    text = err.value.message
    assert "analysis.require" in text and "live_macro_f2" in text
    for name in ("error_rate", "p95_ms", "class_drift_psi", "live_macro_f1", "live_class_<label>"):
        assert name in text
    cfg = parse_config({"analysis": {"require": ["error_rate<0.01", "p95_ms<50", "class_drift_psi<0.2",
                                                 "live_macro_f1>=0.9", "live_class_3_recall>=0.5"]}})
    assert len(cfg.analysis.require) == 5


def test_analysis_steps_must_grow_to_100() -> None:
    for bad in ([50, 10, 100], [10, 50], [0, 100], []):
        with pytest.raises(ConfigError, match="steps"):
            parse_config({"analysis": {"steps": bad}})


def _mco(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_deploy_strategy_on_the_command_line_is_checked_before_anything_happens(tmp_path: Path,
                                                                                 digits_bundle: Any) -> None:
    cfg: dict[str, Any] = {"project": {"name": "t", "state_dir": "state"},
                           "clouds": {"aws": {"provider": "aws", "cluster": {"context": "kind-mco-aws"}}}}
    path = tmp_path / "mco.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = _mco("deploy", str(digits_bundle.path), "--strategy", "sideways", "--config", str(path), "-o", "json",
                cwd=tmp_path)
    assert proc.returncode != 0
    err = json.loads(proc.stdout)
    assert err["kind"] == "ConfigError" and "sideways" in err["error"] and "waves" in err["hint"]
    assert not (tmp_path / "state" / "releases.db").exists()
