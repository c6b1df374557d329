"""``wait_for_endpoint`` against a real model server: a cloud is deployed only once the
address clients use answers with the new release."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import RolloutFailed
from orchestrator.kube.rollout import wait_for_endpoint
from orchestrator.net import free_port
from orchestrator.testing.model_server import ModelServerProcess


@pytest.fixture(scope="module")
def server(digits_bundle: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServerProcess]:
    proc = ModelServerProcess(digits_bundle.path, tmp_path_factory.mktemp("endpoint") / "server.log").start()
    yield proc
    proc.stop()


def test_returns_once_the_endpoint_serves_the_release(server: ModelServerProcess, digits_bundle: Any) -> None:
    took = wait_for_endpoint(server.url, f"sha256:{digits_bundle.digest}", timeout_s=10)
    assert 0 <= took < 5


def test_an_endpoint_serving_another_model_fails_naming_what_it_serves(server: ModelServerProcess,
                                                                       digits_bundle: Any) -> None:
    started = time.monotonic()
    with pytest.raises(RolloutFailed) as info:
        wait_for_endpoint(server.url, "0" * 64, timeout_s=1.0)
    assert info.value.reason == "EndpointNotServing"
    assert f"model {digits_bundle.digest[:12]}" in info.value.message
    assert time.monotonic() - started < 5


def test_a_dead_endpoint_fails_within_the_timeout(tmp_path: Path) -> None:
    with pytest.raises(RolloutFailed) as info:
        wait_for_endpoint(f"http://127.0.0.1:{free_port()}", "0" * 64, timeout_s=0.5)
    assert info.value.reason == "EndpointNotServing"
    assert "ConnectError" in info.value.message
    assert info.value.hint and "endpoint" in info.value.hint


def test_waiting_stops_when_the_deploy_gives_up(tmp_path: Path) -> None:
    with pytest.raises(RolloutFailed) as info:
        wait_for_endpoint(f"http://127.0.0.1:{free_port()}", "0" * 64, timeout_s=30, cancelled=lambda: True)
    assert info.value.reason == "Timeout"
