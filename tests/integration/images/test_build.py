"""`mco package`: a real image build, run with real Docker, checked from outside."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.model.bundle import Bundle
from tests.integration.images.conftest import run_mco, wait_ready

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROW = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0,
       0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]


def test_package_prints_image_json_and_rebuild_reuses_every_layer(built: Any, digits_bundle: Bundle) -> None:
    from orchestrator.packaging.build import build_image

    proc = run_mco("package", str(digits_bundle.path), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"image", "image_id", "size_bytes", "build_seconds"}
    assert out["image"] == f"mco/{digits_bundle.name}:{digits_bundle.digest[:16]}"
    assert out["image_id"].startswith("sha256:")
    assert 50e6 < out["size_bytes"] < 400e6
    # Rebuild: every step from the cache, the very same image. (While other work edits mco's
    # source, its layer may change between runs; then the next run must be the warm one.)
    previous = out["image_id"]
    for _ in range(3):
        again = build_image(digits_bundle.path)
        if again.cached_steps == again.steps and again.image_id == previous:
            break
        previous = again.image_id
    assert again.cached_steps == again.steps, "a rebuild of an unchanged bundle reuses every layer"
    assert again.image_id == previous
    assert again.build_seconds < 10


def test_image_metadata_non_root_labels_healthcheck(built: Any, docker_engine: Any,
                                                     digits_bundle: Bundle) -> None:
    attrs = docker_engine.api.inspect_image(built.image_id)
    cfg = attrs["Config"]
    assert cfg["User"] == "10001:10001"
    labels = cfg["Labels"]
    assert labels["dev.mco.bundle.digest"] == f"sha256:{digits_bundle.digest}"
    assert labels["dev.mco.version"] and labels["org.opencontainers.image.version"] == labels["dev.mco.version"]
    assert cfg["Healthcheck"]["Test"][0] == "CMD"
    assert f"MCO_MODEL_DIGEST=sha256:{digits_bundle.digest}" in cfg["Env"]


def test_container_serves_on_read_only_root_as_non_root(built: Any, container: Callable[..., Any],
                                                         digits_bundle: Bundle) -> None:
    ctr, port = container(built.image_id, read_only=True, cap_drop=["ALL"],
                          security_opt=["no-new-privileges"])
    ready = wait_ready(port, ctr).json()
    assert ready["model_digest"] == digits_bundle.digest
    resp = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"instances": [ROW]}, timeout=5)
    assert resp.status_code == 200
    assert resp.json()["predictions"] == [0]
    uid = ctr.exec_run(["/opt/mco/venv/bin/python", "-c", "import os; print(os.getuid())"]).output.decode().strip()
    assert uid == "10001"
    probe = ctr.exec_run(["/opt/mco/venv/bin/python", "-m", "orchestrator.packaging.healthcheck"])
    assert probe.exit_code == 0


def _tampered_image(docker_engine: Any, base: str, model_bytes: bytes) -> str:
    """A derived image whose model.onnx differs by one byte: what an attacker with push rights could make."""
    dockerfile = f"FROM {base}\nUSER 0\nCOPY model.onnx /opt/mco/model/model.onnx\nUSER 10001:10001\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile), ("model.onnx", model_bytes)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    image, _ = docker_engine.images.build(fileobj=buf, custom_context=True, tag="mco-test/tampered:latest",
                                          rm=True, pull=False)
    return str(image.id)


def test_tampered_model_in_image_never_becomes_ready(built: Any, docker_engine: Any, digits_bundle: Bundle,
                                                     container: Callable[..., Any]) -> None:
    data = bytearray(digits_bundle.model_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    image_id = _tampered_image(docker_engine, built.image, bytes(data))
    try:
        ctr, port = container(image_id)
        result = ctr.wait(timeout=60)
        logs = ctr.logs().decode(errors="replace")
        assert result["StatusCode"] == 3, logs
        assert "refusing to start" in logs and "model.onnx" in logs
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
    finally:
        docker_engine.images.remove("mco-test/tampered:latest", force=True)


def test_image_refuses_a_bundle_other_than_the_pinned_digest(built: Any, container: Callable[..., Any]) -> None:
    ctr, _port = container(built.image_id, environment={"MCO_MODEL_DIGEST": "sha256:" + "0" * 64})
    result = ctr.wait(timeout=60)
    logs = ctr.logs().decode(errors="replace")
    assert result["StatusCode"] == 3
    assert "was requested" in logs


def test_package_refuses_a_tampered_bundle(digits_bundle: Bundle, tmp_path: Path) -> None:
    from tests.conftest import copy_bundle

    bad = copy_bundle(digits_bundle, tmp_path / "bad")
    model = bad / "model.onnx"
    data = bytearray(model.read_bytes())
    data[100] ^= 0xFF
    model.write_bytes(bytes(data))
    proc = run_mco("package", str(bad))
    assert proc.returncode != 0
    assert "tampered" in proc.stderr or "sha256" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_docker_engine_says_how_to_start_one(digits_bundle: Bundle, tmp_path: Path) -> None:
    dead = tmp_path / "no-engine.sock"
    proc = run_mco("package", str(digits_bundle.path), "--output", "json",
                   env={"DOCKER_HOST": f"unix://{dead}"}, timeout=60)
    assert proc.returncode != 0
    stderr = " ".join(proc.stderr.split())  # rich wraps long lines
    assert "Traceback" not in stderr
    assert f"cannot reach the Docker engine at unix://{dead}" in stderr
    assert "10-docker.sh" in stderr and "DOCKER_HOST" in stderr
    assert json.loads(proc.stdout)["kind"] == "Unreachable"
