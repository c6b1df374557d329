"""`mco serve` on a bundle trained on a table: rows as named objects or as arrays, mixed types."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.model.evaluate import read_labelled_data
from orchestrator.model.export import OnnxModel
from tests.integration.serving.test_model_server import served


@pytest.fixture(scope="module")
def table_server(table_bundle):
    with served(table_bundle.path) as client:
        yield client


def test_named_rows_get_the_bundles_own_answers(table_server, table_bundle):
    rows = [{"age": 41, "income": 52000, "colour": "red", "city": "oslo"},
            {"age": None, "income": 61000.5, "colour": None, "city": "lima"},  # gaps: imputed in the graph
            {"age": 25.5, "income": 20000, "colour": "purple", "city": "paris"}]  # unseen category: ignored
    resp = table_server.post("/v1/predict", json={"instances": rows})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_digest"] == table_bundle.digest
    assert len(body["predictions"]) == 3 and set(body["predictions"]) <= {"bronze", "silver", "gold"}
    assert np.allclose(np.sum(body["probabilities"], axis=1), 1.0, atol=1e-5)
    # arrays in schema order give the same answers
    arrays = [[r["age"], r["income"], r["colour"], r["city"]] for r in rows]
    again = table_server.post("/v1/predict", json={"instances": arrays}).json()
    assert again["predictions"] == body["predictions"] and again["probabilities"] == body["probabilities"]


def test_the_holdout_served_equals_the_card(table_server, table_bundle):
    card = table_bundle.card
    data = read_labelled_data(card, table_bundle.path / card["evaluation"]["data"])
    names = [c["name"] for c in card["input_schema"]["columns"]]
    rows = []
    for i in range(len(data.y)):
        row = {}
        for name, column in zip(names, data.arrays):
            value = column[i]
            row[name] = (None if value == "" else str(value)) if column.dtype == object else \
                (None if np.isnan(value) else float(value))
        rows.append(row)
    body = table_server.post("/v1/predict", json={"instances": rows}).json()
    labels, proba = OnnxModel(table_bundle.model_path.read_bytes()).predict(data.feeds)
    assert body["predictions"] == labels.tolist()
    assert np.allclose(body["probabilities"], proba, atol=1e-5)
    accuracy = float(np.mean(np.asarray(body["predictions"]) == data.y))
    assert accuracy == pytest.approx(card["evaluation"]["report"]["accuracy"])


@pytest.mark.parametrize(("rows", "fragment"), [
    ([{"age": 41, "income": 1, "colour": "red"}], 'instance 0 has no column "city"'),
    ([{"age": 41, "income": 1, "colour": "red", "city": "oslo", "zip": "0150"}], 'unknown column "zip"'),
    ([{"age": "41", "income": 1, "colour": "red", "city": "oslo"}], 'column "age" is "41", not a number'),
    ([{"age": 41, "income": 1, "colour": True, "city": "oslo"}], 'column "colour" is true, not text'),
    ([[41, 1, "red"]], "instance 0 has 3 features; the model expects 4"),
    ([{"age": 41, "income": 1, "colour": "red", "city": "oslo"}, 7], "instance 1 is neither a list"),
])
def test_missing_or_unknown_columns_are_422_naming_them(table_server, rows, fragment):
    resp = table_server.post("/v1/predict", json={"instances": rows})
    assert resp.status_code == 422
    assert fragment in resp.json()["error"]


def test_named_rows_work_for_a_reference_bundle_too(digits_bundle):
    names = digits_bundle.card["input_schema"]["feature_names"]
    with served(digits_bundle.path) as client:
        row = [float(i % 16) for i in range(64)]
        named = client.post("/v1/predict", json={"instances": [dict(zip(names, row))]})
        plain = client.post("/v1/predict", json={"instances": [row]})
        assert named.status_code == 200 and named.json() == plain.json()
        missing = client.post("/v1/predict", json={"instances": [dict(zip(names[1:], row[1:]))]})
        assert missing.status_code == 422 and f'no column "{names[0]}"' in missing.json()["error"]


def test_v2_takes_one_tensor_per_column_and_answers_as_v1(table_server, table_bundle):
    rows = [{"age": 41, "income": 52000, "colour": "red", "city": "oslo"},
            {"age": 25.5, "income": 20000, "colour": "purple", "city": "paris"}]
    v1 = table_server.post("/v1/predict", json={"instances": rows}).json()
    inputs = [{"name": "age", "shape": [2], "datatype": "FP64", "data": [41, 25.5]},
              {"name": "income", "shape": [2, 1], "datatype": "INT64", "data": [52000, 20000]},
              {"name": "colour", "shape": [2], "datatype": "BYTES", "data": ["red", "purple"]},
              {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["oslo", "paris"]}]
    name = table_bundle.card["name"]
    meta = table_server.get(f"/v2/models/{name}").json()
    assert [i["name"] for i in meta["inputs"]] == ["age", "income", "colour", "city"]
    resp = table_server.post(f"/v2/models/{name}/infer", json={"inputs": inputs})
    assert resp.status_code == 200, resp.text
    label, proba = resp.json()["outputs"]
    assert label["datatype"] == "BYTES" and label["data"] == v1["predictions"]
    assert np.asarray(proba["data"]).reshape(2, -1).tolist() == v1["probabilities"]
    wrong = [dict(inputs[0], datatype="BYTES", data=["41", "25"])] + inputs[1:]
    resp = table_server.post(f"/v2/models/{name}/infer", json={"inputs": wrong})
    assert resp.status_code == 400 and "datatype BYTES" in resp.json()["error"]
    resp = table_server.post(f"/v2/models/{name}/infer", json={"inputs": inputs[:3]})
    assert resp.status_code == 400 and "city" in resp.json()["error"]
