"""Fixtures for drills on the embedded local runtime: three real model servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.drills.fleet import LocalFleet
from orchestrator.local.runtime import LocalRuntime
from orchestrator.model.bundle import Bundle


@pytest.fixture
def local_runtime(tmp_path: Path, digits_bundle: Bundle) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(tmp_path / "runtime")
    try:
        rt.deploy(digits_bundle)
        yield rt
    finally:
        rt.down()


@pytest.fixture
def local_fleet(local_runtime: LocalRuntime) -> LocalFleet:
    return LocalFleet(local_runtime)
