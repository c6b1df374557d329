"""Fixtures every test folder may use: trained model bundles (real training, real ONNX)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.model.bundle import Bundle


@pytest.fixture(scope="session")
def bundle_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Bundle]:
    """Train (once per distinct spec per session) and return a bundle."""
    from orchestrator.model.train import TrainSpec, train_bundle

    cache: dict[TrainSpec, Bundle] = {}

    def make(**spec_fields: object) -> Bundle:
        spec = TrainSpec(**spec_fields)  # type: ignore[arg-type]
        if spec not in cache:
            out = tmp_path_factory.mktemp(f"bundle-{spec.dataset}-{spec.strategy}")
            cache[spec] = train_bundle(spec, out / "bundle")
        return cache[spec]

    return make


@pytest.fixture(scope="session")
def digits_bundle(bundle_factory: Callable[..., Bundle]) -> Bundle:
    return bundle_factory(dataset="digits", strategy="multinomial")


def copy_bundle(bundle: Bundle, dest: Path) -> Path:
    import shutil

    shutil.copytree(bundle.path, dest)
    return dest
