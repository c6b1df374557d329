"""Fixtures for image tests: a real Docker engine, one built image, three real local registries."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.model.bundle import Bundle

MCO = [sys.executable, "-m", "orchestrator.cli.main"]


def run_mco(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MCO, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "COLUMNS": "300", **(env or {})})  # no wrapped messages


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    """The real engine; without one these tests fail (make setup starts one)."""
    from orchestrator.errors import Unreachable
    from orchestrator.packaging.engine import docker_client

    try:
        client = docker_client()
    except Unreachable as exc:
        pytest.fail(f"these tests need a Docker engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def built(docker_engine: Any, digits_bundle: Bundle) -> Iterator[Any]:
    """The image every test uses. A session tag keeps it alive when a later build moves its own tag."""
    from orchestrator.packaging.build import build_image

    image = build_image(digits_bundle.path)
    keep = f"mco-test/built:{os.getpid()}"
    docker_engine.api.tag(image.image_id, "mco-test/built", str(os.getpid()))
    yield image
    try:
        docker_engine.api.remove_image(keep)
    except Exception:  # still used by a container, or already gone
        pass


@pytest.fixture
def container(docker_engine: Any) -> Iterator[Callable[..., tuple[Any, int]]]:
    """Start containers on 127.0.0.1:<free port>; every one is removed afterwards."""
    from orchestrator.net import free_port

    started: list[Any] = []

    def start(image: str, **kwargs: Any) -> tuple[Any, int]:
        port = free_port()
        ctr = docker_engine.containers.run(image, detach=True, ports={"8080/tcp": ("127.0.0.1", port)},
                                           mem_limit="512m", nano_cpus=1_000_000_000, **kwargs)
        started.append(ctr)
        return ctr, port

    yield start
    for ctr in started:
        try:
            ctr.remove(force=True)
        except Exception:  # already gone
            pass


def wait_ready(port: int, ctr: Any, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0)
            if resp.status_code == 200:
                return resp
        except httpx.HTTPError:
            pass
        ctr.reload()
        if ctr.status == "exited":
            raise AssertionError(f"container exited: {ctr.logs().decode(errors='replace')[-1000:]}")
        time.sleep(0.2)
    raise AssertionError(f"not ready within {timeout} s: {ctr.logs().decode(errors='replace')[-1000:]}")


@pytest.fixture(scope="session")
def local_registries(tmp_path_factory: pytest.TempPathFactory, docker_engine: Any) -> Iterator[Path]:
    """Three real registries (`mco local up registries` in a scratch dir); yields the config file."""
    from orchestrator.local.base import LocalContext, update_local_config
    from orchestrator.local.registries import RegistryStandIn

    root = tmp_path_factory.mktemp("registries")
    ctx = LocalContext(state_dir=root / ".mco" / "local", config_path=root / "mco.local.yaml")
    stand_in = RegistryStandIn()
    try:
        update_local_config(ctx.config_path, stand_in.up(ctx))
        yield ctx.config_path
    finally:
        stand_in.down(ctx)
