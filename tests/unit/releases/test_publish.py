"""The one publish rule: which clouds get the bundle and which the image (no upload needed to decide)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.releases.publish import destinations, publish

CFG = parse_config({"clouds": {
    "aws": {"provider": "aws", "storage": {"bucket": "b"}},
    "gcp": {"provider": "gcp", "registry": {"url": "127.0.0.1:5000"}},
    "azure": {"provider": "azure", "cluster": {"context": "kind-mco-azure", "kind_cluster": "mco-azure"}},
}})


def test_only_clouds_with_storage_or_a_registry_are_published_to() -> None:
    assert destinations(CFG) == ["aws", "gcp"]
    assert destinations(CFG, ["azure", "gcp"]) == ["gcp"]


def test_naming_a_cloud_with_nothing_to_receive_is_a_config_error(digits_bundle: Any) -> None:
    with pytest.raises(ConfigError, match="cloud 'azure' has neither storage nor a registry"):
        publish(CFG, digits_bundle, ["azure"])
    with pytest.raises(ConfigError, match="cloud 'nope' is not configured"):
        publish(CFG, digits_bundle, ["nope"])
