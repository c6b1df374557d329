"""Real model servers, fault proxies and routers on loopback for the router tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from orchestrator.config import (RouterConfig, RouterHealthConfig, RouterOutlierConfig, RouterRetryConfig,
                                 RouterTargetConfig)
from orchestrator.local.processes import free_port, port_open
from orchestrator.router.process import RouterProcess
from orchestrator.router.faults import FaultProxy

MCO = str(Path(sys.executable).parent / "mco")
TOKEN = "test-router-token"
CLOUDS = (("aws", "aws/us-east-1"), ("gcp", "gcp/us-central1"), ("azure", "azure/eastus"))


class ModelServer:
    """``mco serve BUNDLE --port P`` as a child process that a test may kill -9 and restart."""

    def __init__(self, bundle: Path, log: Path) -> None:
        self.bundle = bundle
        self.port = free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([MCO, "serve", str(self.bundle), "--port", str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.ready():
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, f"model server on {self.port} did not become ready"
            time.sleep(0.05)

    def ready(self) -> bool:
        if not port_open("127.0.0.1", self.port):
            return False
        try:
            return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None


@pytest.fixture(scope="session")
def model_servers(digits_bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ModelServer]]:
    logs = tmp_path_factory.mktemp("model-server-logs")
    servers = [ModelServer(digits_bundle.path, logs / f"{name}.log") for name, _ in CLOUDS]
    try:
        for s in servers:
            s.start()
        yield servers
    finally:
        for s in servers:
            s.stop()


@pytest.fixture
def servers(model_servers: list[ModelServer]) -> list[ModelServer]:
    """The three servers, (re)started if an earlier test killed one."""
    for s in model_servers:
        s.start()
    return model_servers


@pytest.fixture
def proxies(servers: list[ModelServer]) -> Iterator[list[FaultProxy]]:
    """A fault proxy in front of each model server, all passing traffic."""
    started = [FaultProxy(s.port).start() for s in servers]
    yield started
    for p in started:
        p.stop()


def router_config(urls: list[str], **overrides: object) -> RouterConfig:
    """Fast settings for tests: short ejections so recovery fits in a few seconds."""
    targets = [RouterTargetConfig(name=name, url=url, priority=i, pricing_key=key)
               for i, ((name, key), url) in enumerate(zip(CLOUDS, urls))]
    fields: dict[str, object] = {
        "port": free_port(), "targets": targets,
        "health": RouterHealthConfig(interval_s=0.5, timeout_s=0.5, fast_recheck_s=0.1, jitter_s=0.05),
        "outlier": RouterOutlierConfig(base_ejection_s=1.0, max_ejection_s=10.0),
        "retries": RouterRetryConfig(per_try_timeout_s=0.5),
    }
    fields.update(overrides)
    return RouterConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
def start_router(tmp_path: Path) -> Iterator[Callable[..., RouterProcess]]:
    started: list[RouterProcess] = []

    def start(cfg: RouterConfig) -> RouterProcess:
        proc = RouterProcess(cfg, token=TOKEN, state_dir=tmp_path / f"router{len(started)}").start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def kinds(events: list[dict]) -> list[tuple[str, str | None]]:
    return [(e["kind"], e["target"]) for e in events]
