"""Real model servers, fault proxies and routers on loopback for the router tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.config import (
    RouterConfig,
    RouterHealthConfig,
    RouterOutlierConfig,
    RouterRetryConfig,
    RouterTargetConfig,
)
from orchestrator.net import free_port
from orchestrator.router.process import RouterProcess
from orchestrator.testing.faults import FaultProxy
from orchestrator.testing.model_server import ModelServerProcess as ModelServer

MCO = str(Path(sys.executable).parent / "mco")
TOKEN = "test-router-token"
CLOUDS = (("aws", "aws/us-east-1"), ("gcp", "gcp/us-central1"), ("azure", "azure/eastus"))


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


DATAPLANES = ["python", "rust"]  # `@pytest.mark.parametrize("dataplane", DATAPLANES)`: a test runs on both


@pytest.fixture
def dataplane() -> str:
    """What forwards in ``start_router``'s routers: python unless a test is parametrized over DATAPLANES."""
    return "python"


def ensure_rust_dataplane() -> None:
    """The Rust data plane's binary, built now (cargo, incremental) if `make setup` has not."""
    import subprocess

    from orchestrator.errors import NotBuiltError
    from orchestrator.router.rust import CRATE, find_binary

    try:
        find_binary()
    except NotBuiltError:
        subprocess.run(["bash", str(CRATE / "build.sh")], check=True, stdout=subprocess.DEVNULL, timeout=1800)
        find_binary()


@pytest.fixture
def start_router(tmp_path: Path, dataplane: str) -> Iterator[Callable[..., RouterProcess]]:
    started: list[RouterProcess] = []
    if dataplane == "rust":
        ensure_rust_dataplane()

    def start(cfg: RouterConfig) -> RouterProcess:
        cfg = cfg.model_copy(update={"dataplane": dataplane})
        proc = RouterProcess(cfg, token=TOKEN, state_dir=tmp_path / f"router{len(started)}").start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def kinds(events: list[dict]) -> list[tuple[str, str | None]]:
    return [(e["kind"], e["target"]) for e in events]


def wait_until(cond: Callable[[], object], timeout: float = 8.0, step: float = 0.1) -> None:
    """Poll ``cond`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(step)
