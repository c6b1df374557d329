"""The model server as users run it: a real `mco serve` process on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest

from orchestrator.model.evaluate import read_labelled_csv
from orchestrator.model.export import OnnxModel
from orchestrator.net import free_port, port_open

MCO = [sys.executable, "-m", "orchestrator.cli.main"]


def _start(bundle_path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([*MCO, "serve", str(bundle_path), "--port", str(port), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None and not port_open("127.0.0.1", port):
        time.sleep(0.05)
    return proc, port


@contextmanager
def served(bundle_path, *extra: str) -> Iterator[httpx.Client]:
    """`mco serve` on a free port for the block, and a client of it."""
    proc, port = _start(bundle_path, *extra)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def server(digits_bundle):
    with served(digits_bundle.path, "--max-body-bytes", "65536") as client:
        yield client


def _holdout(bundle):
    card = bundle.card
    return read_labelled_csv(bundle.path / card["evaluation"]["data"], label_column="label",
                             n_features=64, feature_names=None, classes=card["classes"])


def test_predict_matches_in_process_model(server, digits_bundle):
    X, _ = _holdout(digits_bundle)
    batch = X[:64]
    resp = server.post("/v1/predict", json={"instances": batch.tolist()})
    assert resp.status_code == 200
    body = resp.json()
    labels, proba = OnnxModel(digits_bundle.model_path.read_bytes()).predict(batch)
    assert body["predictions"] == labels.tolist()
    assert np.allclose(body["probabilities"], proba, atol=1e-5)
    assert body["model_digest"] == digits_bundle.digest


def test_health_readiness_card_and_metrics(server, digits_bundle):
    assert server.get("/healthz").status_code == 200
    ready = server.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_sha256"] == digits_bundle.model_sha256
    assert server.get("/v1/model").json()["bundle_digest"] == digits_bundle.digest
    server.post("/v1/predict", json={"instances": [[0] * 64]})
    text = server.get("/metrics").text
    assert 'mco_model_requests_total{route="/v1/predict",status="200"}' in text
    assert "mco_model_request_seconds_bucket" in text
    assert "mco_model_predictions_total" in text


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 422, "not valid JSON"),
        (b"[1, 2]", 422, '"instances"'),
        (json.dumps({"instances": []}).encode(), 422, "non-empty"),
        (json.dumps({"instances": [[1, 2, 3]]}).encode(), 422, "expects 64"),
        (json.dumps({"instances": [["a"] * 64]}).encode(), 422, "not a number"),
        (json.dumps({"instances": [[True] * 64]}).encode(), 422, "not a number"),
        (json.dumps({"instances": [[None] * 64]}).encode(), 422, "not a number"),
        (b'{"instances": [[NaN' + b", 0" * 63 + b"]]}", 422, "NaN"),
        (json.dumps({"instances": [[1e39] * 64]}).encode(), 422, "float32"),
        (json.dumps({"instances": [0] * 64}).encode(), 422, "not a list"),
        (b"\xff\xfe", 422, "not valid JSON"),
    ],
)
def test_client_mistakes_are_4xx_with_a_message(server, body, status, fragment):
    resp = server.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status
    assert fragment in resp.json()["error"]


def test_body_over_the_limit_is_413(server):
    big = json.dumps({"instances": [[1.0] * 64] * 400}).encode()  # ~ 90 KB > 64 KiB
    assert server.post("/v1/predict", content=big).status_code == 413

    def chunks():  # no Content-Length: the limit holds for streamed bodies too
        for _ in range(20):
            yield b" " * 8192

    assert server.post("/v1/predict", content=chunks()).status_code == 413


def test_wrong_method_and_route(server):
    assert server.get("/v1/predict").status_code == 405
    assert server.get("/nope").status_code == 404


def test_tampered_model_refuses_to_start(digits_bundle, tmp_path):
    import shutil

    copy = shutil.copytree(digits_bundle.path, tmp_path / "b")
    with open(copy / "model.onnx", "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    proc, port = _start(copy)
    proc.wait(30)
    assert proc.returncode != 0
    err = proc.stderr.read()
    assert "model.onnx" in err and "sha256" in err and "Traceback" not in err
    assert not port_open("127.0.0.1", port)


def test_pinned_digest_must_match(digits_bundle):
    proc, _ = _start(digits_bundle.path, "--digest", "sha256:" + "0" * 64)
    proc.wait(30)
    assert proc.returncode != 0 and "was requested" in proc.stderr.read()
