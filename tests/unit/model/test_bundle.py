from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orchestrator.errors import IntegrityError, ModelError
from orchestrator.model.bundle import load_bundle
from orchestrator.model.train import TrainSpec, train_bundle
from tests.conftest import copy_bundle

MCO = [sys.executable, "-m", "orchestrator.cli.main"]


def test_card_holds_what_the_issue_lists(digits_bundle):
    card = digits_bundle.card
    for key in ("name", "version", "strategy", "classes", "input_schema", "training_data", "bundle_digest"):
        assert key in card
    assert card["input_schema"] == {**card["input_schema"], "n_features": 64, "dtype": "float32"}
    assert card["model"]["sha256"] == card["files"]["model.onnx"]
    assert {"plots/confusion_matrix.png", "plots/roc_ovr.png", "plots/per_class_prf.png"} <= set(card["files"])
    assert "pickle" not in json.dumps(card).lower()
    assert not list(digits_bundle.path.rglob("*.pkl")) and not list(digits_bundle.path.rglob("*.joblib"))


def test_training_is_reproducible(tmp_path, digits_bundle):
    again = train_bundle(TrainSpec(dataset="digits", strategy="multinomial"), tmp_path / "again")
    assert again.digest == digits_bundle.digest, "same data, seed and code give the same bundle digest"


@pytest.mark.parametrize("victim", ["model.onnx", "plots/roc_ovr.png", "data/holdout.csv"])
def test_tampered_file_is_detected(digits_bundle, tmp_path, victim):
    copy = copy_bundle(digits_bundle, tmp_path / "b")
    with open(copy / victim, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError, match=victim.split("/")[-1]):
        load_bundle(copy)


def test_edited_card_is_detected(digits_bundle, tmp_path):
    copy = copy_bundle(digits_bundle, tmp_path / "b")
    card = json.loads((copy / "card.json").read_text())
    card["evaluation"]["report"]["accuracy"] = 1.0
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(IntegrityError, match="modified"):
        load_bundle(copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(ModelError, match=r"no card.json"):
        load_bundle(tmp_path)
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_bundle(tmp_path)


def test_train_refuses_to_overwrite_a_foreign_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    proc = subprocess.run([*MCO, "model", "train", "--dataset", "iris", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "not an mco model bundle" in proc.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_evaluate_cli_on_new_csv(digits_bundle, tmp_path):
    # new data: the hold-out split with its rows reversed and columns in schema order
    rows = (digits_bundle.path / "data/holdout.csv").read_text().splitlines()
    header, body = rows[0], rows[1:][::-1]
    data = tmp_path / "new.csv"
    data.write_text("\n".join([header.replace(",label", ",digit"), *body]) + "\n")
    proc = subprocess.run([*MCO, "model", "evaluate", str(digits_bundle.path), "--data", str(data),
                           "--label-column", "digit", "--output", "json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for key in ("accuracy", "macro", "micro", "weighted", "per_class", "roc_auc_ovr_macro", "log_loss",
                "confusion_matrix"):
        assert key in report
    assert report["accuracy"] == pytest.approx(digits_bundle.card["evaluation"]["report"]["accuracy"])

    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n1,2,3\n")
    proc = subprocess.run([*MCO, "model", "evaluate", str(digits_bundle.path), "--data", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "expects 64" in proc.stderr and "Traceback" not in proc.stderr
