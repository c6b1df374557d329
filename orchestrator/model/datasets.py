"""Datasets that ship with scikit-learn, and a reproducible way to make them imbalanced."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrator.errors import MissingExtraError, ModelError

__all__ = ["DATASETS", "Dataset", "load_dataset", "make_imbalanced"]

DATASETS = ("digits", "wine", "iris")


@dataclass(frozen=True)
class Dataset:
    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    description: str


def load_dataset(name: str) -> Dataset:
    try:
        from sklearn import datasets as skd
    except ImportError as exc:
        raise MissingExtraError("scikit-learn", "train", purpose="training") from exc
    loaders = {"digits": skd.load_digits, "wine": skd.load_wine, "iris": skd.load_iris}
    if name not in loaders:
        raise ModelError(f"unknown dataset '{name}'", hint=f"choose one of: {', '.join(DATASETS)}")
    raw = loaders[name]()
    names = [str(n) for n in getattr(raw, "feature_names", [])] or [f"f{i}" for i in range(raw.data.shape[1])]
    first_line = str(raw.DESCR).strip().splitlines()[0].strip(". ")
    return Dataset(name, raw.data.astype(np.float32), raw.target.astype(np.int64), names,
                   f"scikit-learn {name} dataset ({first_line})")


def make_imbalanced(ds: Dataset, *, ratio: float, seed: int) -> Dataset:
    """Keep ``ratio**rank`` of each class (rank 0 keeps all), so later classes are rarer.

    With ratio 0.6 on ten digit classes the last class keeps about 1 % of its rows:
    enough to see what class weighting buys.
    """
    if not 0.0 < ratio <= 1.0:
        raise ModelError(f"imbalance ratio must be in (0, 1], got {ratio}")
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    for rank, label in enumerate(np.unique(ds.y)):
        idx = np.flatnonzero(ds.y == label)
        n = max(8, round(len(idx) * ratio**rank))
        keep.append(np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False)))
    rows = np.sort(np.concatenate(keep))
    return Dataset(ds.name, ds.X[rows], ds.y[rows], ds.feature_names,
                   ds.description + f", made imbalanced (ratio {ratio} per class rank)")
