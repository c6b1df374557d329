"""`mco model import`: a classifier trained elsewhere becomes a bundle, judged like a trained one."""

from __future__ import annotations

import csv
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn import metrics as skm
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split

from orchestrator.errors import ModelError
from orchestrator.model.bundle import load_bundle
from orchestrator.model.export import OnnxModel
from orchestrator.model.importer import ImportSpec, import_onnx

MCO = [sys.executable, "-m", "orchestrator.cli.main"]


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """A random forest trained here, its ONNX export (skl2onnx's default ZipMap output) and a hold-out CSV."""
    root = tmp_path_factory.mktemp("wine")
    X, y = load_wine(return_X_y=True)
    X = X.astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=1, stratify=y)
    forest = RandomForestClassifier(n_estimators=25, max_depth=4, random_state=0).fit(X_train, y_train)
    (root / "forest.onnx").write_bytes(to_onnx(forest, X_train[:1]).SerializeToString())
    holdout = root / "holdout.csv"
    with open(holdout, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([f"f{i}" for i in range(X.shape[1])] + ["cultivar"])
        for row, label in zip(X_test, y_test):
            writer.writerow([repr(float(v)) for v in row] + [int(label)])
    return {"root": root, "forest": forest, "X_test": X_test, "y_test": y_test, "model": root / "forest.onnx",
            "holdout": holdout}


def test_random_forest_is_imported_and_judged_like_sklearn(wine, tmp_path):
    proc = subprocess.run([*MCO, "model", "import", str(wine["model"]), "--data", str(wine["holdout"]),
                           "--label-column", "cultivar", "--out", str(tmp_path / "b"), "--name", "wine-forest",
                           "--model-version", "7", "--output", "json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    bundle = load_bundle(tmp_path / "b")
    card = bundle.card
    assert card["source"] == "imported" and card["name"] == "wine-forest" and card["version"] == "7"
    assert card["imported"]["zipmap_removed"] is True and card["imported"]["classes_from"] == "the graph"
    assert card["imported"]["sha256"] != bundle.model_sha256, "the ZipMap was replaced; the original is recorded"
    assert card["classes"] == [0, 1, 2]

    forest, X_test, y_test = wine["forest"], wine["X_test"], wine["y_test"]
    pred, proba = forest.predict(X_test), forest.predict_proba(X_test)
    rep = card["evaluation"]["report"]
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(y_test, pred))
    assert rep["macro"]["f1"] == pytest.approx(skm.f1_score(y_test, pred, average="macro"))
    assert rep["confusion_matrix"]["matrix"] == skm.confusion_matrix(y_test, pred).tolist()
    labels, onnx_proba = OnnxModel(bundle.model_path.read_bytes()).predict(X_test)
    assert labels.tolist() == pred.tolist()
    assert np.max(np.abs(onnx_proba - proba)) < 1e-5

    # judged by the same gate as a trained bundle
    gate = subprocess.run([*MCO, "model", "gate", str(bundle.path), "--require", "macro_f1>=0.8"],
                          capture_output=True, text=True)
    assert gate.returncode == 0, gate.stdout + gate.stderr


def test_a_per_column_pipeline_is_imported(tmp_path, mixed_csv):
    """A forest behind a ColumnTransformer, exported with one input per column (text included)."""
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    with open(mixed_csv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["tier"]]
    X = np.empty((len(rows), 3), dtype=object)
    X[:, 0] = [np.float32(r["income"]) for r in rows]
    X[:, 1] = [r["colour"] if r["colour"] not in ("", "NA") else "" for r in rows]
    X[:, 2] = [r["city"] for r in rows]
    y = np.array([r["tier"] for r in rows])
    pipe = Pipeline([("prep", ColumnTransformer([
        ("num", SimpleImputer(strategy="median"), [0]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), [1, 2])])),
        ("rf", RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0))]).fit(X[:400], y[:400])
    onx = to_onnx(pipe, initial_types=[("income", FloatTensorType([None, 1])), ("colour", StringTensorType([None, 1])),
                                       ("city", StringTensorType([None, 1]))], options={"zipmap": False})
    (tmp_path / "m.onnx").write_bytes(onx.SerializeToString())
    holdout = tmp_path / "holdout.csv"
    with open(holdout, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["income", "colour", "city", "tier"])
        for row, label in zip(X[400:], y[400:]):
            writer.writerow([repr(float(row[0])), row[1], row[2], label])
    bundle = import_onnx(ImportSpec(tmp_path / "m.onnx", holdout, "tier"), tmp_path / "b")
    assert bundle.card["input_schema"]["layout"] == "columns"
    assert [c["type"] for c in bundle.card["input_schema"]["columns"]] == ["float32", "string", "string"]
    assert bundle.card["evaluation"]["report"]["accuracy"] == pytest.approx(
        skm.accuracy_score(y[400:], pipe.predict(X[400:])))


# ---- refusals: nothing is written ------------------------------------------------------

def _refused(model: Path, data: Path, out: Path, *fragments: str, label: str = "cultivar") -> None:
    with pytest.raises(ModelError) as err:
        import_onnx(ImportSpec(model, data, label), out)
    text = str(err.value)
    for fragment in fragments:
        assert fragment in text, text
    assert not out.exists(), "refused before a bundle is written"


def test_pickles_are_refused_with_the_way_to_convert(wine, tmp_path):
    pkl = tmp_path / "forest.pkl"
    pkl.write_bytes(pickle.dumps({"not": "loaded"}))
    proc = subprocess.run([*MCO, "model", "import", str(pkl), "--data", str(wine["holdout"]), "--label-column",
                           "cultivar", "--out", str(tmp_path / "b")], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    text = " ".join(proc.stderr.split())
    assert "never loads pickles" in text and "skl2onnx" in text and "to_onnx" in text
    for name in ("forest.joblib", "disguised.onnx"):  # by suffix, and by content whatever the name
        (tmp_path / name).write_bytes(pickle.dumps([1, 2, 3]))
        _refused(tmp_path / name, wine["holdout"], tmp_path / "b", "pickle", "skl2onnx")


def test_a_truncated_file_is_refused(wine, tmp_path):
    raw = wine["model"].read_bytes()
    (tmp_path / "cut.onnx").write_bytes(raw[: len(raw) // 2])
    proc = subprocess.run([*MCO, "model", "import", str(tmp_path / "cut.onnx"), "--data", str(wine["holdout"]),
                           "--label-column", "cultivar", "--out", str(tmp_path / "b")], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "not an ONNX model" in " ".join(proc.stderr.split()) or "checker" in proc.stderr
    assert not (tmp_path / "b").exists()


def test_a_regressor_is_not_a_classifier(wine, tmp_path):
    reg = LinearRegression().fit(wine["X_test"], wine["y_test"].astype(np.float32))
    (tmp_path / "reg.onnx").write_bytes(to_onnx(reg, wine["X_test"][:1]).SerializeToString())
    _refused(tmp_path / "reg.onnx", wine["holdout"], tmp_path / "b", "does not look like a classifier",
             "'variable' tensor(float32) [?, 1]")


def test_labels_without_probabilities_are_refused(wine, tmp_path):
    proto = onnx.load_model_from_string(wine["model"].read_bytes())
    keep = [o for o in proto.graph.output if o.name != "output_probability"]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)
    (tmp_path / "labels.onnx").write_bytes(proto.SerializeToString())
    _refused(tmp_path / "labels.onnx", wine["holdout"], tmp_path / "b", "no output of probabilities",
             "'output_label' tensor(int64)")


def _graph(path: Path, proba_node: onnx.NodeProto, proba_shape: list[object], *, domain: str = "") -> Path:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 13])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, [None])
    proba = helper.make_tensor_value_info("proba", TensorProto.FLOAT, proba_shape)
    nodes = [helper.make_node("ArgMax", ["X"], ["label"], axis=1, keepdims=0), proba_node]
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [label, proba]), opset_imports=opsets)
    path.write_bytes(model.SerializeToString())
    return path


def test_probabilities_of_the_wrong_shape_are_refused(wine, tmp_path):
    one_column = _graph(tmp_path / "narrow.onnx", helper.make_node("Slice", ["X", "s", "e", "a"], ["proba"]),
                        [None, 1])
    proto = onnx.load_model_from_string(one_column.read_bytes())
    proto.graph.initializer.extend([helper.make_tensor(n, TensorProto.INT64, [1], [v])
                                    for n, v in (("s", 0), ("e", 1), ("a", 1))])
    one_column.write_bytes(proto.SerializeToString())
    _refused(one_column, wine["holdout"], tmp_path / "b", "has shape [54, 1]", "at least two classes")
    wide = _graph(tmp_path / "wide.onnx", helper.make_node("Identity", ["X"], ["proba"]), [None, 13])
    _refused(wide, wine["holdout"], tmp_path / "b", "13 columns but there are 4 classes", "--classes")


def test_an_operator_onnxruntime_lacks_is_refused(wine, tmp_path):
    model = _graph(tmp_path / "custom.onnx", helper.make_node("Frobnicate", ["X"], ["proba"], domain="com.example"),
                   [None, 3], domain="com.example")
    _refused(model, wine["holdout"], tmp_path / "b", "onnxruntime cannot load", "Frobnicate")


def test_evaluate_and_serve_schema_of_an_imported_bundle(wine, tmp_path):
    bundle = import_onnx(ImportSpec(wine["model"], wine["holdout"], "cultivar"), tmp_path / "b")
    schema = bundle.card["input_schema"]
    assert schema["layout"] == "tensor" and schema["n_features"] == 13 and schema["dtype"] == "float32"
    assert schema["feature_names"] == [f"f{i}" for i in range(13)]
    proc = subprocess.run([*MCO, "model", "evaluate", str(bundle.path), "--output", "json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accuracy"] == bundle.card["evaluation"]["report"]["accuracy"]
