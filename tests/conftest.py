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


def write_mixed_csv(path: Path, *, rows: int = 600, seed: int = 7) -> Path:
    """A table like the ones people bring: numbers and categories, gaps, imbalanced classes.

    Three tiers (about 70 / 22 / 8 %), two numeric columns (``age`` has gaps), two
    categorical ones (``colour`` has gaps written as "" and "NA"), and a few rows whose
    label is missing (the trainer drops and reports them).
    """
    import csv

    import numpy as np

    rng = np.random.default_rng(seed)
    colours = {"bronze": ["red", "red", "blue", "green"], "silver": ["blue", "blue", "green", "red"],
               "gold": ["green", "green", "green", "blue"]}
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["age", "income", "colour", "city", "tier"])
        for i in range(rows):
            tier = str(rng.choice(["bronze", "silver", "gold"], p=[0.7, 0.22, 0.08]))
            base = {"bronze": 30, "silver": 45, "gold": 60}[tier]
            age = f"{rng.normal(base, 8):.1f}" if rng.random() > 0.08 else ""
            income = f"{rng.normal(base * 1000, 9000):.0f}"
            colour = str(rng.choice(colours[tier])) if rng.random() > 0.05 else ("NA" if i % 2 else "")
            city = str(rng.choice(["paris", "oslo", "lima"]))
            writer.writerow([age, income, colour, city, "" if i % 97 == 13 else tier])
    return path


@pytest.fixture(scope="session")
def mixed_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mixed_csv(tmp_path_factory.mktemp("table") / "customers.csv")


@pytest.fixture(scope="session")
def table_bundle(mixed_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """`mco model train --data` on the mixed table, with CV and a search (the issue's acceptance run)."""
    import subprocess
    import sys

    from orchestrator.model.bundle import load_bundle

    out = tmp_path_factory.mktemp("table-bundle") / "bundle"
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "model", "train", "--data", str(mixed_csv),
                           "--label-column", "tier", "--cv", "5", "--search", "C=0.1,1,10", "--out", str(out),
                           "--output", "json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return load_bundle(out)
