"""Request ids, kept predictions, feedback joins and live metrics, through a real router
in front of real model servers."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_digits

from orchestrator.config import RouterFeedbackConfig, RouterRetryConfig
from tests.integration.router.conftest import MCO, TOKEN, router_config

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CALM = {"retries": RouterRetryConfig(per_try_timeout_s=2.0, connect_timeout_s=2.0, hedge=False)}


def _predict(client: httpx.Client, url: str, row: list[float]) -> httpx.Response:
    return client.post(url + "/v1/predict", json={"instances": [row]})


def _group(live: dict[str, Any], cloud: str) -> dict[str, Any]:
    return next(g for g in live["groups"] if g["cloud"] == cloud)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_live_metrics_equal_sklearn_on_1000_labelled_requests(servers, start_router) -> None:
    router = start_router(router_config([s.url for s in servers], policy="weighted", **CALM))
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(3)
    rows = rng.choice(len(y), size=1000, replace=True)
    sent: list[tuple[str, str, int, int]] = []  # (request id, cloud, predicted, label)
    with httpx.Client(timeout=10) as client:
        for i in rows:
            resp = _predict(client, router.url, X[i].tolist())
            assert resp.status_code == 200
            rid = resp.headers["x-mco-request-id"]
            sent.append((rid, resp.headers["x-mco-cloud"], int(resp.json()["predictions"][0]), int(y[i])))
        assert len({s[0] for s in sent}) == 1000
        # a batch of 400, a wrapped batch of 300, and 300 one by one
        batch = [{"request_id": rid, "label": label} for rid, _, _, label in sent]
        assert client.post(router.url + "/v1/feedback", json=batch[:400]).json() == {"joined": 400}
        assert client.post(router.url + "/v1/feedback", json={"feedback": batch[400:700]}).json() == {"joined": 300}
        for item in batch[700:]:
            assert client.post(router.url + "/v1/feedback", json=item).status_code == 200
        live = client.get(router.url + "/admin/live?window_s=600", headers=AUTH).json()
    assert live["kept"] == 1000 and live["dropped"] == 0 and live["feedback_joined"] == 1000
    clouds = sorted({s[1] for s in sent})
    assert len(clouds) >= 2, "the weighted policy spreads the requests"
    for cloud in clouds:
        g = _group(live, cloud)
        mine = [s for s in sent if s[1] == cloud]
        y_true = [s[3] for s in mine]
        y_pred = [s[2] for s in mine]
        assert g["requests"] == len(mine) and g["feedback"] == len(mine)
        m = g["metrics"]
        assert m["live_accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
        labels = list(range(10))
        for avg in ("macro", "micro", "weighted"):
            p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg,
                                                             zero_division=0)
            assert (m[f"live_{avg}_precision"], m[f"live_{avg}_recall"], m[f"live_{avg}_f1"]) == \
                pytest.approx((p, r, f), abs=1e-12)
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        for k in labels:
            assert m[f"live_class_{k}_f1"] == pytest.approx(f[k], abs=1e-12)
            assert m[f"live_class_{k}_precision"] == pytest.approx(p[k], abs=1e-12)
            assert m[f"live_class_{k}_recall"] == pytest.approx(r[k], abs=1e-12)
        assert g["report"]["confusion_matrix"]["matrix"] == skm.confusion_matrix(y_true, y_pred,
                                                                                 labels=labels).tolist()
        assert m["error_rate"] == 0.0 and m["p50_ms"] > 0 and m["p99_ms"] >= m["p95_ms"] >= m["p50_ms"]
        assert m["class_drift_psi"] is not None and m["class_drift_psi"] < 0.2  # the same population as the holdout
    metrics = httpx.get(router.url + "/metrics").text
    assert "mco_router_kept_predictions" in metrics
    # scikit-learn computed those in the router's child process (monitoring/worker.py): the
    # router itself never loads it or SciPy, and stays small with 1,000 answers kept
    maps = Path(f"/proc/{router.pid}/maps").read_text()
    assert "/sklearn/" not in maps and "/scipy/" not in maps
    status = Path(f"/proc/{router.pid}/status").read_text()
    rss_mb = int(status.split("VmRSS:")[1].split()[0]) / 1024
    assert rss_mb < 100, rss_mb


@pytest.mark.timeout(120)
def test_bad_feedback_is_a_4xx_naming_what_is_wrong(servers, start_router) -> None:
    router = start_router(router_config([s.url for s in servers], feedback=RouterFeedbackConfig(keep=5), **CALM))
    X, _ = load_digits(return_X_y=True)
    with httpx.Client(timeout=10) as client:
        ids = [_predict(client, router.url, X[i].tolist()).headers["x-mco-request-id"] for i in range(8)]
        post = lambda body: client.post(router.url + "/v1/feedback", json=body)  # noqa: E731
        expired = post({"request_id": ids[0], "label": 0})
        assert expired.status_code == 404 and "expired" in expired.json()["error"]
        assert "3 older ones were dropped" in expired.json()["error"]
        unknown = post({"request_id": "feedface-1", "label": 0})
        assert unknown.status_code == 404 and "not issued by this router" in unknown.json()["error"]
        future = post({"request_id": ids[-1].rsplit("-", 1)[0] + "-ffff", "label": 0})
        assert future.status_code == 404
        bad_label = post({"request_id": ids[-1], "label": 11})
        assert bad_label.status_code == 422 and "not one of the model's classes" in bad_label.json()["error"]
        assert bad_label.json()["classes"] == [str(c) for c in range(10)]
        assert post({"request_id": ids[-1], "label": True}).status_code == 422
        malformed = post([{"request_id": ids[-1], "label": 1}, {"request_id": ids[-2]}])
        assert malformed.status_code == 422 and malformed.json()["item"] == 1 and "item 1" in malformed.json()["error"]
        # the batch is all or nothing: item 0 was not joined
        live = client.get(router.url + "/admin/live", headers=AUTH).json()
        assert live["feedback_joined"] == 0 and live["dropped"] == 3 and live["kept"] == 5
        for raw in (b"{", b"[]", b"null", b'"x"', b"[[[[1]]]]", b'{"request_id": 5, "label": 1}',
                    b'{"request_id": "a", "label": 1, "extra": 2}', b"[" * 100000):
            resp = client.post(router.url + "/v1/feedback", content=raw)
            assert 400 <= resp.status_code < 500, (raw[:40], resp.status_code, resp.text)
        assert client.get(router.url + "/v1/feedback").status_code == 405
        ok = post({"request_id": ids[-1], "label": "3"})
        assert ok.status_code == 200 and ok.json() == {"joined": 1}
        assert client.get(router.url + "/admin/live", headers=AUTH).json()["feedback_joined"] == 1


@pytest.mark.timeout(120)
def test_shifted_traffic_crosses_the_drift_threshold_logs_an_event_and_raises_the_gauge(servers, start_router,
                                                                                       tmp_path) -> None:
    router = start_router(router_config([s.url for s in servers], **CALM,
                                        feedback=RouterFeedbackConfig(refresh_s=0.3, window_s=60)))
    X, y = load_digits(return_X_y=True)
    zeros = X[y == 0]
    with httpx.Client(timeout=10) as client:
        for row in zeros[:120]:  # only one class: far from the holdout's ten
            assert _predict(client, router.url, row.tolist()).status_code == 200
        deadline = time.monotonic() + 20
        drift: list[dict[str, Any]] = []
        while not drift and time.monotonic() < deadline:
            time.sleep(0.3)
            events = client.get(router.url + "/admin/events", headers=AUTH).json()["events"]
            drift = [e for e in events if e["kind"] == "drift"]
        assert drift and drift[0]["target"] == "aws" and drift[0]["detail"]["metric"] == "class_drift_psi"
        assert drift[0]["detail"]["value"] > 0.2
        live = client.get(router.url + "/admin/live", headers=AUTH).json()
        assert "class_drift_psi" in _group(live, "aws")["drift"]
        assert _group(live, "aws")["class_distribution"]["0"] > 0.95
        gauge = [ln for ln in client.get(router.url + "/metrics").text.splitlines()
                 if ln.startswith("mco_router_drift_over_threshold") and "class_drift_psi" in ln]
        assert gauge and gauge[0].endswith(" 1.0")
    # `mco monitor --output json` shows it, and its report draws drift and live F1 over time
    (tmp_path / "mco.yaml").write_text("project: {name: t}\n")
    proc = subprocess.run([MCO, "monitor", "--config", str(tmp_path / "mco.yaml"), "--url", router.url,
                           "--report", str(tmp_path / "report"), "--output", "json"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "MCO_ROUTER_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    row = next(r for r in doc["rows"] if r["cloud"] == "aws")
    assert "class_drift_psi" in row["drifting"] and row["class_drift_psi"] > 0.2
    assert row["class_shift"]["0"]["live"] > 0.95 and row["class_shift"]["0"]["training"] < 0.2
    assert (tmp_path / "report" / "monitor-report.png").stat().st_size > 10_000
    assert "class_drift_psi" in (tmp_path / "report" / "monitor-report.html").read_text()
