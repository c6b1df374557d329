"""Fetch-at-startup images: the model comes from the cloud's bucket, verified before the server is ready.

The bucket here is the `local` provider (a directory) bind-mounted read-only into the
container: the same pull code as S3/GCS/Azure, without an SDK in the image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import PackagingConfig, parse_config
from orchestrator.model.bundle import Bundle
from tests.integration.images.conftest import wait_ready

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, digits_bundle: Bundle) -> Path:
    from orchestrator.artifacts.push import push_bundle

    root = tmp_path_factory.mktemp("bucket") / "store"
    cfg = parse_config({"clouds": {"disk": {"provider": "local", "storage": {"bucket": str(root), "prefix": ""}}}})
    results = push_bundle(cfg, digits_bundle)
    assert results["disk"].ok, results["disk"].error
    for dirpath, _dirs, files in os.walk(root.parent.parent):  # the server runs as uid 10001
        Path(dirpath).chmod(0o755)
        for name in files:
            (Path(dirpath) / name).chmod(0o644)
    return root


@pytest.fixture(scope="module")
def fetch_image(docker_engine: Any, digits_bundle: Bundle) -> Any:
    from orchestrator.packaging.build import build_image

    return build_image(digits_bundle.path,
                       packaging=PackagingConfig(model_source="fetch", fetch_extras=[]))


def _run(container: Callable[..., Any], image: str, store: Path) -> tuple[Any, int]:
    env = {"MCO_STORAGE": json.dumps({"provider": "local", "storage": {"bucket": "/bucket", "prefix": ""}})}
    return container(image, read_only=True, tmpfs={"/tmp": "size=64m"}, environment=env,
                     volumes={str(store): {"bind": "/bucket", "mode": "ro"}})


def test_fetch_image_has_no_model_and_serves_the_fetched_one(fetch_image: Any, store: Path, docker_engine: Any,
                                                             container: Callable[..., Any],
                                                             digits_bundle: Bundle) -> None:
    assert fetch_image.image.endswith(f":{digits_bundle.digest[:16]}-fetch")
    env = docker_engine.api.inspect_image(fetch_image.image_id)["Config"]["Env"]
    assert "MCO_MODEL_SOURCE=fetch" in env and f"MCO_MODEL_DIGEST=sha256:{digits_bundle.digest}" in env
    ctr, port = _run(container, fetch_image.image, store)
    assert wait_ready(port, ctr).json()["model_digest"] == digits_bundle.digest
    assert "fetching bundle" in ctr.logs().decode()


def test_fetch_image_refuses_a_corrupted_object_in_the_bucket(fetch_image: Any, store: Path,
                                                              container: Callable[..., Any],
                                                              digits_bundle: Bundle) -> None:
    stored = next(p for p in store.rglob("model.onnx") if ".mco-meta" not in p.parts)
    original = stored.read_bytes()
    try:
        data = bytearray(original)
        data[len(data) // 3] ^= 0x10
        stored.write_bytes(bytes(data))
        ctr, _port = _run(container, fetch_image.image, store)
        assert ctr.wait(timeout=60)["StatusCode"] == 3
        logs = ctr.logs().decode(errors="replace")
        assert "refusing to start" in logs and "model.onnx" in logs
    finally:
        stored.write_bytes(original)


def test_fetch_image_without_storage_config_says_what_to_set(fetch_image: Any, container: Callable[..., Any]) -> None:
    ctr, _port = container(fetch_image.image, read_only=True, tmpfs={"/tmp": "size=16m"})
    assert ctr.wait(timeout=60)["StatusCode"] == 3
    assert "MCO_STORAGE is not set" in ctr.logs().decode(errors="replace")
