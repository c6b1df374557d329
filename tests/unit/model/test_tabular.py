"""`mco model train --data`: a mixed-type table in, one ONNX graph out, judged as scikit-learn would."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from orchestrator.errors import GateError
from orchestrator.model.export import OnnxModel
from orchestrator.model.schema import InputSchema, RowError
from orchestrator.model.tabular import spec_like, train_table
from tests.conftest import write_mixed_csv

MCO = [sys.executable, "-m", "orchestrator.cli.main"]
MISSING = {"", "na", "n/a", "nan", "null", "none"}


def _read_mixed(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """The test's own reading of the CSV: rows with a label, numbers as float32, gaps as NaN / ''."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    kept = [r for r in rows if r["tier"].strip()]
    X = np.empty((len(kept), 4), dtype=object)
    for i, r in enumerate(kept):
        X[i, 0] = np.float32(r["age"]) if r["age"].lower() not in MISSING else np.float32("nan")
        X[i, 1] = np.float32(r["income"])
        X[i, 2] = "" if r["colour"].lower() in MISSING else r["colour"]
        X[i, 3] = r["city"]
    return X, np.array([r["tier"] for r in kept]), len(rows) - len(kept)


def _sklearn_pipeline(C: float) -> Pipeline:
    prep = ColumnTransformer([
        ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), [0, 1]),
        ("categorical", Pipeline([("impute", SimpleImputer(missing_values="", strategy="constant",
                                                           fill_value="(missing)")),
                                  ("onehot", OneHotEncoder(handle_unknown="ignore"))]), [2, 3]),
    ])
    return Pipeline([("prep", prep), ("clf", LogisticRegression(C=C, max_iter=2000, random_state=42))])


def test_holdout_metrics_equal_the_same_sklearn_pipeline(table_bundle, mixed_csv):
    card = table_bundle.card
    X, y, n_unlabelled = _read_mixed(mixed_csv)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.25, random_state=42, stratify=y)
    C = card["search"]["chosen"]["C"]
    pipe = _sklearn_pipeline(C).fit(X[idx_train], y[idx_train])
    pred, proba = pipe.predict(X[idx_test]), pipe.predict_proba(X[idx_test])
    rep = card["evaluation"]["report"]
    assert rep["n_samples"] == len(idx_test)
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(y[idx_test], pred), abs=1e-12)
    for avg in ("macro", "weighted"):
        assert rep[avg]["f1"] == pytest.approx(skm.f1_score(y[idx_test], pred, average=avg), abs=1e-12)
        assert rep[avg]["recall"] == pytest.approx(skm.recall_score(y[idx_test], pred, average=avg), abs=1e-12)
    assert rep["roc_auc_ovr_macro"] == pytest.approx(skm.roc_auc_score(y[idx_test], proba, multi_class="ovr"),
                                                     abs=1e-6)
    assert rep["confusion_matrix"]["matrix"] == skm.confusion_matrix(y[idx_test], pred, labels=card["classes"]).tolist()

    # The bundle's ONNX graph (preprocessing included) equals predict_proba within 1e-5.
    model = OnnxModel(table_bundle.model_path.read_bytes())
    feeds = InputSchema.from_card(card).feeds([X[idx_test, j].astype(np.float32 if j < 2 else object)
                                               for j in range(4)])
    labels, onnx_proba = model.predict(feeds)
    assert np.max(np.abs(onnx_proba - proba)) < 1e-5
    assert labels.tolist() == pred.tolist()
    assert len(model.input_names) == 4, "one ONNX input per column"

    # Rows without a label were dropped, and said so.
    look = card["data_look"]
    assert look["rows_dropped"][0]["count"] == n_unlabelled > 0
    assert "tier" in look["rows_dropped"][0]["reason"]
    assert look["n_rows_used"] == len(y)


def test_search_and_cv_use_the_training_part_only_and_match_sklearn(table_bundle, mixed_csv):
    card = table_bundle.card
    X, y, _ = _read_mixed(mixed_csv)
    idx_train, _ = train_test_split(np.arange(len(y)), test_size=0.25, random_state=42, stratify=y)
    grid = GridSearchCV(_sklearn_pipeline(1.0), {"clf__C": [0.1, 1, 10]}, scoring="f1_macro",
                        cv=StratifiedKFold(5, shuffle=True, random_state=42)).fit(X[idx_train], y[idx_train])
    search = card["search"]
    assert search["space"] == {"C": [0.1, 1, 10]} and search["metric"] == "macro_f1" and search["mode"] == "grid"
    assert [c["params"]["C"] for c in search["candidates"]] == [0.1, 1, 10]
    assert [c["mean"] for c in search["candidates"]] == pytest.approx(list(grid.cv_results_["mean_test_score"]))
    assert search["chosen"] == {"C": grid.best_params_["clf__C"]}
    assert card["hyperparameters"]["C"] == grid.best_params_["clf__C"]

    cv = card["cross_validation"]
    assert cv["folds"] == 5 and len(cv["per_fold"]) == 5
    # every fold splits the training part; the hold-out is not in any fold
    assert all(f["n_train"] + f["n_validate"] == card["training_data"]["n_train"] for f in cv["per_fold"])
    assert sum(f["n_validate"] for f in cv["per_fold"]) == card["training_data"]["n_train"]
    f1s = [f["macro_f1"] for f in cv["per_fold"]]
    assert cv["summary"]["macro_f1"]["mean"] == pytest.approx(np.mean(f1s))
    assert cv["summary"]["macro_f1"]["std"] == pytest.approx(np.std(f1s))
    assert cv["summary"]["macro_f1"]["mean"] == pytest.approx(search["chosen_score"])


def test_card_records_schema_data_look_and_features(table_bundle):
    card = table_bundle.card
    assert card["source"] == "trained"
    assert card["input_schema"]["columns"] == [
        {"name": "age", "type": "float32", "input": "age"}, {"name": "income", "type": "float32", "input": "income"},
        {"name": "colour", "type": "string", "input": "colour"}, {"name": "city", "type": "string", "input": "city"}]
    look = card["data_look"]
    assert look["missing_values"]["age"] > 0 and look["missing_values"]["colour"] > 0
    assert look["missing_values"]["city"] == 0
    counts = look["class_counts"]
    assert look["imbalance_ratio"] == pytest.approx(max(counts.values()) / min(counts.values()), rel=1e-3)
    assert "--class-weight" in look["imbalance_note"]
    top = card["interpretability"]["top_features"]["classes"]
    assert set(top) == {"bronze", "gold", "silver"} and all(len(v) == 5 for v in top.values())
    assert card["model"]["onnx_vs_sklearn_max_abs_diff"] < 1e-5
    assert not list(table_bundle.path.rglob("*.pkl"))


def test_override_types_and_random_search(tmp_path, mixed_csv):
    proc = subprocess.run([*MCO, "model", "train", "--data", str(mixed_csv), "--label-column", "tier",
                           "--categorical", "income", "--drop", "city", "--search", "C=0.01..100",
                           "--search-random", "3", "--cv", "3", "--class-weight", "--out", str(tmp_path / "b"),
                           "--output", "json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["columns"] == {"age": "float32", "income": "string", "colour": "string"}
    card = json.loads((tmp_path / "b" / "card.json").read_text())
    assert card["search"]["mode"] == "random" and card["search"]["n_candidates"] == 3
    assert card["search"]["space"] == {"C": {"loguniform": [0.01, 100.0]}}
    assert all(0.01 <= c["params"]["C"] <= 100 for c in card["search"]["candidates"])
    assert card["cross_validation"]["folds"] == 3
    assert "class weights are on" in card["data_look"]["imbalance_note"]


def test_like_retrains_the_same_pipeline_and_gates_on_the_old_bundle(tmp_path, table_bundle):
    fresh = write_mixed_csv(tmp_path / "new.csv", rows=700, seed=11)
    proc = subprocess.run([*MCO, "model", "train", "--data", str(fresh), "--like", str(table_bundle.path),
                           "--out", str(tmp_path / "v2"), "--output", "json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    card = json.loads((tmp_path / "v2" / "card.json").read_text())
    assert card["version"] == "2" and card["name"] == table_bundle.name
    assert card["search"]["space"] == table_bundle.card["search"]["space"]
    assert card["recipe"]["search"] == table_bundle.card["recipe"]["search"]
    assert card["input_schema"]["columns"] == table_bundle.card["input_schema"]["columns"]
    assert card["replaces"]["bundle_digest"] == table_bundle.digest and card["replaces"]["passed"]

    # Data whose labels are noise: the retrained model is worse, nothing is written.
    noisy = tmp_path / "noisy.csv"
    lines = fresh.read_text().splitlines()
    rng = np.random.default_rng(0)
    body = [",".join(line.split(",")[:-1] + [str(rng.choice(["bronze", "silver", "gold"]))]) for line in lines[1:]]
    noisy.write_text("\n".join([lines[0], *body]) + "\n")
    spec = spec_like(table_bundle.card, noisy)
    with pytest.raises(GateError, match="worse than") as err:
        train_table(spec, tmp_path / "v3", replaces=table_bundle)
    assert "macro_f1" in str(err.value)
    assert not (tmp_path / "v3").exists()


def test_like_refuses_a_changed_schema(tmp_path, table_bundle):
    fresh = write_mixed_csv(tmp_path / "new.csv", rows=200, seed=3)
    lines = fresh.read_text().splitlines()
    fresh.write_text("\n".join(line.replace("city", "town", 1) if i == 0 else line
                               for i, line in enumerate(lines)) + "\n")
    proc = subprocess.run([*MCO, "model", "train", "--data", str(fresh), "--like", str(table_bundle.path),
                           "--out", str(tmp_path / "v2")], capture_output=True, text=True)
    assert proc.returncode != 0 and "'city'" in proc.stderr and "Traceback" not in proc.stderr


def test_rows_become_inputs_with_errors_naming_the_column(table_bundle):
    schema = InputSchema.from_card(table_bundle.card)
    feeds = schema.feeds_from_rows([{"age": 41, "income": 52000, "colour": "red", "city": "oslo"},
                                    [None, 30000.5, None, "lima"]])
    assert feeds["age"].dtype == np.float32 and np.isnan(feeds["age"][1, 0])
    assert feeds["colour"].tolist() == [["red"], [""]]
    with pytest.raises(RowError, match='no column "city"'):
        schema.feeds_from_rows([{"age": 41, "income": 1, "colour": "red"}])
    with pytest.raises(RowError, match='unknown column "color"'):
        schema.feeds_from_rows([{"age": 41, "income": 1, "color": "red", "city": "oslo"}])
    with pytest.raises(RowError, match='column "age" is "old", not a number'):
        schema.feeds_from_rows([{"age": "old", "income": 1, "colour": "red", "city": "oslo"}])
    with pytest.raises(RowError, match=r'column "colour" is 1\.5, not text'):
        schema.feeds_from_rows([[1, 1, 1.5, "oslo"]])


def test_parquet_trains_like_the_csv(tmp_path, mixed_csv):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    with open(mixed_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))

    def number(text: str) -> float | None:
        return None if text.lower() in MISSING else float(text)

    table = pa.table({
        "age": [number(r["age"]) for r in rows], "income": [int(r["income"]) for r in rows],
        "colour": [None if r["colour"].lower() in MISSING else r["colour"] for r in rows],
        "city": [r["city"] for r in rows], "tier": [r["tier"] or None for r in rows]})
    pq.write_table(table, tmp_path / "customers.parquet")
    from orchestrator.model.tabular import TableSpec

    from_csv = train_table(TableSpec(data=mixed_csv, label_column="tier"), tmp_path / "a")
    from_parquet = train_table(TableSpec(data=tmp_path / "customers.parquet", label_column="tier"), tmp_path / "b")
    assert from_parquet.card["input_schema"]["columns"] == from_csv.card["input_schema"]["columns"]
    assert from_parquet.card["data_look"]["missing_values"] == from_csv.card["data_look"]["missing_values"]
    assert from_parquet.card["evaluation"]["report"] == from_csv.card["evaluation"]["report"]
    assert from_parquet.model_sha256 == from_csv.model_sha256, "same cells, same model, byte for byte"
