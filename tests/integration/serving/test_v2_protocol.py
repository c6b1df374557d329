"""The Open Inference Protocol (V2) over REST on a real `mco serve` process: health, metadata,
inference equal to /v1/predict, and the protocol's error body with a 4xx for every client mistake."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.integration.serving.test_hostile_clients import ROW
from tests.integration.serving.test_model_server import _holdout, served

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(digits_bundle):
    with served(digits_bundle.path, "--max-body-bytes", "65536") as client:
        yield client


def _infer_body(rows: np.ndarray | list, datatype: str = "FP32", shape: list[int] | None = None) -> dict:
    arr = np.asarray(rows)
    return {"id": "r1", "inputs": [{"name": "X", "shape": shape or list(arr.shape), "datatype": datatype,
                                    "data": arr.reshape(-1).tolist()}]}


def test_health_and_metadata_come_from_the_card(server, digits_bundle):
    name = digits_bundle.card["name"]
    assert server.get("/v2/health/live").json() == {"live": True}
    assert server.get("/v2/health/ready").json() == {"ready": True}
    assert server.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    meta = server.get(f"/v2/models/{name}").json()
    assert meta["name"] == name and meta["versions"] == [digits_bundle.card["version"]]
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert meta["outputs"][1]["shape"] == [-1, 10]
    version = digits_bundle.card["version"]
    assert server.get(f"/v2/models/{name}/versions/{version}").json() == meta
    assert server.get("/v2").json()["name"] == "mco"


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT64"])
def test_infer_gives_the_same_labels_and_probabilities_as_v1(server, digits_bundle, datatype):
    X, _ = _holdout(digits_bundle)
    batch = X[:64] if datatype != "INT64" else X[:64].astype(np.int64)  # digits are integers 0..16
    v1 = server.post("/v1/predict", json={"instances": batch.tolist()}).json()
    resp = server.post(f"/v2/models/{digits_bundle.card['name']}/infer", json=_infer_body(batch, datatype))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_name"] == digits_bundle.card["name"] and body["id"] == "r1"
    label, proba = body["outputs"]
    assert label == {"name": "label", "shape": [64], "datatype": "INT64", "data": v1["predictions"]}
    assert proba["name"] == "probabilities" and proba["shape"] == [64, 10] and proba["datatype"] == "FP64"
    assert np.asarray(proba["data"]).reshape(64, 10).tolist() == v1["probabilities"]


def test_nested_data_and_output_selection(server, digits_bundle):
    X, _ = _holdout(digits_bundle)
    body = {"inputs": [{"name": "X", "shape": [2, 64], "datatype": "FP32", "data": X[:2].tolist()}],
            "outputs": [{"name": "label"}]}
    resp = server.post(f"/v2/models/{digits_bundle.card['name']}/infer", json=body)
    assert resp.status_code == 200, resp.text
    assert [o["name"] for o in resp.json()["outputs"]] == ["label"]
    assert "id" not in resp.json()


ZEROS = [[0.0] * 64]
MISTAKES = {
    "wrong shape": (_infer_body(np.zeros((1, 63))), 400, "[N, 64]"),
    "1-d shape": (_infer_body(np.zeros(64)), 400, "[N, 64]"),
    "wrong datatype": (_infer_body(ZEROS, "BOOL"), 400, "datatype BOOL"),
    "floats declared INT64": (_infer_body([[0.5] * 64], "INT64"), 400, "not integers"),
    "strings in FP32": ({"inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP32", "data": ["1"] * 64}]},
                        400, "not numbers"),
    "booleans in FP32": ({"inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP32", "data": [True] * 64}]},
                         400, "not numbers"),
    "nulls in FP32": ({"inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP32", "data": [None] * 64}]},
                      400, "not numbers"),
    "too few elements": (_infer_body(ZEROS, shape=[2, 64]), 400, "has 64 elements; its shape [2, 64] needs 128"),
    "too many elements": (_infer_body([[0.0] * 64] * 3, shape=[2, 64]), 400, "needs 128"),
    "ragged data": ({"inputs": [{"name": "X", "shape": [2, 64], "datatype": "FP32", "data": [[0] * 64, [0] * 3]}]},
                    400, "ragged"),
    "overflows float32": (_infer_body([[1e39] * 64], "FP64"), 400, "float32"),
    "no inputs": ({"inputs": []}, 400, "non-empty"),
    "not an object": ([1, 2], 400, '"inputs"'),
    "two tensors": ({"inputs": [_infer_body(ZEROS)["inputs"][0]] * 2}, 400, "one input tensor"),
    "negative dimension": (_infer_body(ZEROS, shape=[-1, 64]), 400, "non-negative"),
    "no data": ({"inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP32"}]}, 400, "no data"),
    "unknown output": ({**_infer_body(ZEROS), "outputs": [{"name": "logits"}]}, 400, "unknown output"),
}


@pytest.mark.parametrize("name", list(MISTAKES))
def test_client_mistakes_get_the_protocol_error_body(server, digits_bundle, name):
    body, status, fragment = MISTAKES[name]
    resp = server.post(f"/v2/models/{digits_bundle.card['name']}/infer", content=json.dumps(body).encode(),
                       headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    assert set(resp.json()) == {"error"} and fragment in resp.json()["error"], resp.text


def test_unknown_model_and_version_are_404(server, digits_bundle):
    for path in ("/v2/models/nope/infer", f"/v2/models/{digits_bundle.card['name']}/versions/99/infer"):
        resp = server.post(path, json=_infer_body(ZEROS))
        assert resp.status_code == 404 and "digits-multinomial" in resp.json()["error"]
    assert server.get("/v2/models/nope").status_code == 404
    assert server.get("/v2/models/nope/ready").json()["error"]
    assert server.get("/v2/nothing").json() == {"error": "Not Found"}


V2_POISON = {
    "integer 10**400": ("1" + "0" * 400, "digits"),
    "5000-digit integer": ("7" * 5000, "digits"),
    "5000-digit exponent": ("1e" + "9" * 5000, "digits"),
    "arrays 2000 deep": ("[" * 2000 + "]" * 2000, "levels deep"),
    "objects 2000 deep": ('{"a": ' * 2000 + "1" + "}" * 2000, "levels deep"),
    "NaN": ("NaN", "NaN"),
    "10**99 overflows float32": ("1" + "0" * 99, "float32"),
}


@pytest.mark.parametrize("name", list(V2_POISON))
def test_poison_inputs_are_400_and_the_server_keeps_serving(server, digits_bundle, name):
    value, fragment = V2_POISON[name]
    body = ('{"inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP64", "data": [' + value + ", " + ROW
            + "]}]}").encode()
    url = f"/v2/models/{digits_bundle.card['name']}/infer"
    resp = server.post(url, content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert fragment in resp.json()["error"]
    assert server.post(url, json=_infer_body(ZEROS)).status_code == 200


def test_bad_bytes_binary_extension_and_oversized_bodies(server, digits_bundle):
    url = f"/v2/models/{digits_bundle.card['name']}/infer"
    assert server.post(url, content=b"\xff\xfe").status_code == 400
    resp = server.post(url, content=b"{}", headers={"inference-header-content-length": "2"})
    assert resp.status_code == 400 and "binary" in resp.json()["error"]
    big = json.dumps(_infer_body(np.full((400, 64), 0.123))).encode()  # ~ 160 KB > 64 KiB
    assert server.post(url, content=big).status_code == 413
    assert server.get(url).status_code == 405
