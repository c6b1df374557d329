"""The three real storage emulators, started once for this folder, and per-test projects whose
release state lives in them (``state.backend: objectstore``), each under its own service name."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.config import MCOConfig, load_config
from tests.integration.storage.conftest import Emulators, running_emulators

STORES = ["aws", "gcp", "azure"]
_names = itertools.count(1)


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    with running_emulators(tmp_path_factory.mktemp("state-emulators")) as emus:
        yield emus


@pytest.fixture
def all_up(emulators: Emulators) -> Iterator[Emulators]:
    """Every emulator running before and after the test (a test may stop one)."""
    for cloud in STORES:
        emulators.restart(cloud)
    yield emulators
    for cloud in STORES:
        emulators.restart(cloud)


def write_project(emulators: Emulators, workdir: Path, service: str, *, ttl: float = 60.0,
                  backend: str = "objectstore", stores: list[str] | None = None) -> Path:
    """A project config in ``workdir`` whose state is in the emulators' buckets."""
    base = yaml.safe_load(emulators.config_path.read_text())
    data = {"project": {"name": service, "state_dir": str(workdir / ".mco")},
            "clouds": {c: base["clouds"][c] for c in STORES},
            "state": {"backend": backend, "stores": stores or STORES, "lease_ttl_s": ttl}}
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "mco.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def project(all_up: Emulators, tmp_path: Path) -> Callable[..., MCOConfig]:
    """``project(ttl=2)``: a fresh service (its own state prefix) and its config."""
    service = f"svc{os.getpid()}-{next(_names)}"

    def make(*, ttl: float = 60.0, workdir: str = "a", **kw: object) -> MCOConfig:
        return load_config(write_project(all_up, tmp_path / workdir, service, ttl=ttl, **kw))  # type: ignore[arg-type]

    return make
