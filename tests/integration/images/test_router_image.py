"""The router image: built offline from the router's dependencies only, run read-only as non-root,
with its config mounted and its token from the environment, routing to a real model server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from orchestrator.net import free_port, port_open

pytestmark = [pytest.mark.docker, pytest.mark.slow]
TOKEN = "router-image-test-token-0123456789abcdef"


def test_the_router_image_is_small_and_routes(docker_engine: Any, digits_bundle, tmp_path: Path) -> None:
    from orchestrator.packaging.dockerfile import ROUTER_CONFIG
    from orchestrator.packaging.router_image import build_router_image
    from orchestrator.testing.model_server import ModelServerProcess

    image = build_router_image(client=docker_engine)
    names = {r.split("==")[0].lower() for r in image.requirements}
    assert {"uvloop", "httptools", "prometheus-client"} <= names
    assert not names & {"scikit-learn", "onnxruntime", "boto3", "google-cloud-storage", "azure-storage-blob",
                        "matplotlib", "starlette", "uvicorn"}
    base = docker_engine.images.get("mco-base/bookworm:latest")
    added_mb = (image.size_bytes - int(base.attrs["Size"])) / 1e6
    assert added_mb < 150, f"the router adds {added_mb:.0f} MB to the base image"
    print(f"router image {image.image}: {image.size_bytes / 1e6:.0f} MB, {added_mb:.0f} MB over the base")

    server = ModelServerProcess(digits_bundle.path, tmp_path / "model.log").start()
    port = free_port()
    cfg = {"router": {"host": "127.0.0.1", "port": port, "name": "router-in-image", "cloud": "aws",
                      "policy": "locality", "targets": [{"name": "aws", "url": server.url}]}}
    conf = tmp_path / "router.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    conf.chmod(0o644)
    box = docker_engine.containers.run(
        image.image_id, detach=True, network_mode="host", read_only=True, user="10001:10001",
        environment={"MCO_ROUTER_TOKEN": TOKEN}, cap_drop=["ALL"], security_opt=["no-new-privileges"],
        volumes={str(conf): {"bind": ROUTER_CONFIG, "mode": "ro"}}, tmpfs={"/tmp": "size=16m"})
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            box.reload()
            assert box.status == "running", box.logs().decode()[-2000:]
            assert time.monotonic() < deadline, box.logs().decode()[-2000:]
            time.sleep(0.2)
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"instances": [[0.0] * 64]}, timeout=10)
        assert resp.status_code == 200 and resp.headers["x-mco-router"] == "router-in-image"
        assert resp.headers["x-mco-cloud"] == "aws"
        assert httpx.get(f"http://127.0.0.1:{port}/readyz/local", timeout=5).status_code == 200
        status = httpx.get(f"http://127.0.0.1:{port}/admin/status", timeout=5,
                           headers={"Authorization": f"Bearer {TOKEN}"})
        assert status.status_code == 200
        assert TOKEN not in box.logs().decode()
        # the code the image carries has no model runtime
        probe = docker_engine.containers.run(image.image_id, entrypoint=["/opt/mco/venv/bin/python", "-c",
                                             "import importlib.util as u; print(u.find_spec('onnxruntime'), "
                                             "u.find_spec('sklearn'))"], remove=True)
        assert probe.decode().split() == ["None", "None"]
    finally:
        box.remove(force=True)
        server.stop()


def test_the_router_image_is_reused_while_its_inputs_are_unchanged(docker_engine: Any) -> None:
    from orchestrator.packaging.router_image import LABEL_ROUTER_KEY, build_router_image

    first = build_router_image(client=docker_engine)
    again = build_router_image(client=docker_engine)
    assert again.cached and again.image_id == first.image_id and again.image == first.image
    key = docker_engine.images.get(first.image_id).labels[LABEL_ROUTER_KEY]
    assert len(key) == 64
    # another image under the router's name (its key label does not match) is not taken for it
    repository, tag = first.image.rsplit(":", 1)
    docker_engine.images.get("mco-base/bookworm:latest").tag(repository, tag)
    rebuilt = build_router_image(client=docker_engine)
    assert not rebuilt.cached
    assert docker_engine.images.get(rebuilt.image).labels[LABEL_ROUTER_KEY] == key
