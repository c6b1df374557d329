"""Which requirements go into the image, pinned to what the host runs."""

from __future__ import annotations

import importlib.metadata

import pytest

from orchestrator.errors import ConfigError
from orchestrator.packaging.wheelhouse import image_requirements, prepare_wheels


def names(reqs: list[str]) -> set[str]:
    return {r.split("==")[0].split(">=")[0].lower() for r in reqs}


def test_server_requirements_are_core_plus_serve_only() -> None:
    reqs = image_requirements(["serve"])
    got = names(reqs)
    assert {"onnxruntime", "starlette", "uvicorn", "numpy", "pydantic"} <= got
    assert not {"scikit-learn", "boto3", "matplotlib", "kubernetes", "pulumi", "docker"} & got
    assert reqs == sorted(reqs, key=str.lower)
    assert f"onnxruntime=={importlib.metadata.version('onnxruntime')}" in reqs


def test_fetch_extras_add_the_storage_sdks() -> None:
    got = names(image_requirements(["serve", "aws", "gcp", "azure"]))
    assert {"boto3", "google-cloud-storage", "azure-storage-blob", "azure-identity"} <= got


def test_unknown_fetch_extra_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fetch_extras"):
        prepare_wheels(fetch_extras=["ibm"])
