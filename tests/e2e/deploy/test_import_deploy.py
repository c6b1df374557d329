"""A model trained outside mco (a scikit-learn random forest, converted with skl2onnx here) is
imported, packaged and deployed on the three kind clusters like a trained bundle.

Run alone, under the clusters' lock:
    flock /tmp/mco-kind.lock .venv/bin/pytest tests/e2e/deploy/test_import_deploy.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.e2e.deploy.conftest import MCO, mco_json

pytestmark = [pytest.mark.cluster, pytest.mark.docker, pytest.mark.slow]


def _imported_forest(root: Path) -> tuple[Path, Any, np.ndarray]:
    import subprocess

    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=3, stratify=y)
    forest = RandomForestClassifier(n_estimators=20, max_depth=3, random_state=0).fit(X_train, y_train)
    (root / "forest.onnx").write_bytes(to_onnx(forest, X_train[:1]).SerializeToString())
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    with open(root / "holdout.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*names, "species"])
        writer.writerows([*(repr(float(v)) for v in row), int(label)] for row, label in zip(X_test, y_test))
    proc = subprocess.run([*MCO, "model", "import", str(root / "forest.onnx"), "--data", str(root / "holdout.csv"),
                           "--label-column", "species", "--out", str(root / "bundle"), "--name", "iris-forest",
                           "--output", "json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    accuracy = json.loads(proc.stdout)["accuracy"]
    assert accuracy == pytest.approx(float(np.mean(forest.predict(X_test) == y_test)))
    return root / "bundle", forest, X_test


def test_an_imported_forest_is_packaged_pushed_and_deployed(deploy_config: Path, tmp_path: Path) -> None:
    from orchestrator.model.bundle import load_bundle
    from tests.integration.images.conftest import run_mco

    bundle_dir, forest, X_test = _imported_forest(tmp_path)
    bundle = load_bundle(bundle_dir)
    package = run_mco("package", str(bundle_dir), "--output", "json", timeout=900)
    assert package.returncode == 0, package.stderr
    assert json.loads(package.stdout)

    # pushed like a trained bundle: the image to the three local registries, by digest
    workdir = tmp_path / "push"
    workdir.mkdir()
    up = run_mco("local", "up", "registries", "--output", "json", cwd=workdir, timeout=120)
    assert up.returncode == 0, up.stderr
    try:
        pushed = run_mco("push", str(bundle_dir), "--config", "mco.local.yaml", "--output", "json", cwd=workdir)
        assert pushed.returncode == 0, pushed.stderr
        result = json.loads(pushed.stdout)
        assert result["bundle_digest"] == bundle.digest
        assert set(result["clouds"]) == {"aws", "gcp", "azure"}
        assert all(c["image_digest"].startswith("sha256:") for c in result["clouds"].values())
    finally:
        down = run_mco("local", "down", "registries", cwd=workdir, timeout=120)
        assert down.returncode == 0, down.stderr

    out = mco_json("deploy", str(bundle_dir), config=deploy_config)
    assert out["status"] == "deployed", out
    names = bundle.card["input_schema"]["feature_names"]
    rows = X_test[:10]
    for cloud, info in out["clouds"].items():
        assert info["status"] == "deployed", (cloud, info)
        served = httpx.post(f"{info['endpoint']}/v1/predict", json={"instances": rows.tolist()}, timeout=10)
        assert served.status_code == 200, served.text
        body = served.json()
        assert body["model_digest"].removeprefix("sha256:") == bundle.digest
        assert body["predictions"] == forest.predict(rows).tolist()
        assert np.allclose(body["probabilities"], forest.predict_proba(rows), atol=1e-5)
        named = httpx.post(f"{info['endpoint']}/v1/predict",
                           json={"instances": [dict(zip(names, map(float, r))) for r in rows]}, timeout=10)
        assert named.status_code == 200 and named.json()["predictions"] == body["predictions"]
        card = httpx.get(f"{info['endpoint']}/v1/model", timeout=10).json()
        assert card["source"] == "imported" and card["bundle_digest"] == bundle.digest
