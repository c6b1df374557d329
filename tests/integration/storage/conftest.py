"""The three real storage emulators (moto, fake-gcs-server, Azurite), started once for this folder.

They run exactly as `mco local up storage` runs them, on free loopback ports, with their
state under a temporary directory, and are stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.config import MCOConfig, load_config
from orchestrator.local.base import CLOUDS, LocalContext, update_local_config
from orchestrator.local.storage import StorageStandIn, azurite_binary
from orchestrator.model.bundle import Bundle, load_bundle, write_card
from tests.conftest import copy_bundle


@dataclass
class Emulators:
    ctx: LocalContext
    stand_in: StorageStandIn

    @property
    def config_path(self) -> Path:
        return self.ctx.config_path

    def config(self) -> MCOConfig:
        return load_config(self.config_path)

    def endpoint(self, cloud: str) -> str:
        return self.stand_in.emulator(self.ctx, cloud).endpoint

    def kill(self, cloud: str) -> None:
        self.stand_in.stop(self.ctx, cloud, kill=True)

    def restart(self, cloud: str) -> None:
        self.stand_in.start(self.ctx, cloud)


@contextlib.contextmanager
def running_emulators(root: Path) -> Iterator[Emulators]:
    """The three emulators, run as `mco local up storage` runs them, with their state under ``root``."""
    ctx = LocalContext(state_dir=root / "local", config_path=root / "mco.local.yaml")
    stand_in = StorageStandIn()
    if not azurite_binary(ctx.cache_dir).is_file():
        pytest.fail("the storage emulators are not installed: run `make setup` "
                    "(scripts/setup/20-storage-emulators.sh)")
    try:
        update_local_config(ctx.config_path, stand_in.up(ctx))
        yield Emulators(ctx, stand_in)
    finally:
        stand_in.down(ctx)


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    with running_emulators(tmp_path_factory.mktemp("storage-emulators")) as emus:
        yield emus


@pytest.fixture(scope="session")
def bundle_variant(digits_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Bundle]:
    """A copy of the digits bundle plus one random file of ``mib`` MiB: a new digest per ``tag``."""
    made: dict[str, Bundle] = {}

    def make(tag: str, mib: float = 0.01) -> Bundle:
        if tag not in made:
            root = copy_bundle(digits_bundle, tmp_path_factory.mktemp(f"variant-{tag}") / "bundle")
            with open(root / "data" / f"extra-{tag}.bin", "wb") as fh:
                fh.write(os.urandom(int(mib * 1024 * 1024)))
            card = json.loads((root / "card.json").read_text())
            write_card(root, card)
            made[tag] = load_bundle(root)
        return made[tag]

    return make


ALL_CLOUDS = list(CLOUDS)
