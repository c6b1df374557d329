"""What the router does with requests themselves: pass-through, limits, headers, admin, reload, policies."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.config import RouterRetryConfig, RouterTargetConfig
from orchestrator.router.headers import CLOUD_HEADER
from orchestrator.testing.traffic import predict_body, run_load
from tests.integration.router.conftest import DATAPLANES, MCO, TOKEN, ensure_rust_dataplane, router_config

AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOOD = {"instances": [[0.0] * 64]}
# For tests of behaviour, not timing: no hedging (it would blur who answered) and a generous
# per-try timeout, so a stall of this shared machine is not mistaken for a failing cloud.
CALM = {"retries": RouterRetryConfig(per_try_timeout_s=2.0, connect_timeout_s=2.0, hedge=False)}


def target_row(status: dict, name: str) -> dict:
    return next(t for t in status["targets"] if t["name"] == name)


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_prediction_is_passed_through_byte_for_byte(servers, start_router):
    router = start_router(router_config([s.url for s in servers]))
    body = predict_body()
    direct = httpx.post(servers[0].url + "/v1/predict", content=body, headers={"content-type": "application/json"})
    via = httpx.post(router.url + "/v1/predict", content=body, headers={"content-type": "application/json"})
    assert via.status_code == 200 and via.content == direct.content
    assert via.headers[CLOUD_HEADER] == "aws"
    assert via.headers["content-type"] == direct.headers["content-type"]


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_upstream_4xx_is_passed_through_unchanged_and_never_retried(servers, start_router):
    # no hedging: a hedge copy (sent before any answer) must not be mistaken for a retry here
    router = start_router(router_config([s.url for s in servers], **CALM))
    bad = b'{"instances": [[1, 2, 3]]}'  # wrong number of features: the model server says 422
    direct = httpx.post(servers[0].url + "/v1/predict", content=bad)
    for _ in range(5):
        via = httpx.post(router.url + "/v1/predict", content=bad)
        assert via.status_code == direct.status_code == 422
        assert via.content == direct.content
    not_json = httpx.post(router.url + "/v1/predict", content=b"{not json")
    assert not_json.status_code == 422 and "not valid JSON" in not_json.json()["error"]
    status = httpx.get(router.url + "/admin/status", headers=AUTH).json()
    aws = target_row(status, "aws")
    assert aws["responses_4xx"] == 6 and aws["retries"] == 0 and sum(aws["errors"].values()) == 0
    assert target_row(status, "gcp")["requests"] == 0 and target_row(status, "azure")["requests"] == 0
    assert not aws["ejected"]


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_body_over_the_limit_gets_413_and_is_not_sent_upstream(servers, start_router):
    router = start_router(router_config([s.url for s in servers], max_body_bytes=1000))
    resp = httpx.post(router.url + "/v1/predict", content=b"x" * 1001)
    assert resp.status_code == 413 and "larger than 1000 bytes" in resp.json()["error"]

    def chunks():  # no Content-Length: the limit holds while streaming too
        for _ in range(5):
            yield b"y" * 400

    resp = httpx.post(router.url + "/v1/predict", content=chunks())
    assert resp.status_code == 413
    status = httpx.get(router.url + "/admin/status", headers=AUTH).json()
    assert all(t["requests"] == 0 for t in status["targets"])


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_hop_by_hop_headers_are_stripped_and_others_forwarded(proxies, start_router):
    router = start_router(router_config([p.url for p in proxies]))
    with socket.create_connection(("127.0.0.1", router.cfg.port)) as sock:
        body = json.dumps(GOOD).encode()
        sock.sendall(b"POST /v1/predict?trace=1 HTTP/1.1\r\nHost: example.test\r\n"
                     b"Connection: keep-alive, X-Drop-Me\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
                     b"Proxy-Authorization: Basic c2VjcmV0\r\nUpgrade: websocket\r\nX-Drop-Me: 1\r\n"
                     b"X-Request-Id: abc-123\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200")
    head = proxies[0].last_request_head().lower()
    assert head.startswith(b"post /v1/predict?trace=1 http/1.1")
    for dropped in (b"keep-alive: timeout", b"te: trailers", b"proxy-authorization", b"upgrade:", b"x-drop-me",
                    b"host: example.test"):
        assert dropped not in head, dropped
    assert b"x-request-id: abc-123" in head and b"content-type: application/json" in head


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_admin_calls_need_the_token(servers, start_router):
    router = start_router(router_config([s.url for s in servers]))
    for path in ("/admin/status", "/admin/events", "/admin/series", "/admin/targets"):
        assert httpx.get(router.url + path).status_code == 401
        assert httpx.get(router.url + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(router.url + path, headers=AUTH).status_code == 200
    assert httpx.put(router.url + "/admin/targets", json={"targets": []}).status_code == 401
    assert TOKEN not in router.log_path.read_text()


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_hot_reload_through_the_admin_api_and_sighup(servers, start_router):
    router = start_router(router_config([s.url for s in servers]))
    # admin API: gcp becomes the preferred cloud
    swapped = [RouterTargetConfig(name="gcp", url=servers[1].url, priority=0, pricing_key="gcp/us-central1"),
               RouterTargetConfig(name="aws", url=servers[0].url, priority=1, pricing_key="aws/us-east-1")]
    router.set_targets(swapped)
    assert httpx.post(router.url + "/v1/predict", json=GOOD).headers[CLOUD_HEADER] == "gcp"
    bad = httpx.put(router.url + "/admin/targets", headers=AUTH, json={"targets": [{"name": "x", "url": "ftp://x"}]})
    assert bad.status_code == 400 and "url" in bad.json()["error"]
    # SIGHUP: re-read the config file, now with azure alone
    router.reload([RouterTargetConfig(name="azure", url=servers[2].url, pricing_key="azure/eastus")])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        names = [t["name"] for t in router.status()["targets"]]
        if names == ["azure"]:
            break
        time.sleep(0.05)
    assert names == ["azure"]
    assert httpx.post(router.url + "/v1/predict", json=GOOD).headers[CLOUD_HEADER] == "azure"
    reloads = [e for e in router.events() if e["kind"] == "targets_reloaded"]
    assert [e["detail"]["targets"] for e in reloads] == [["gcp", "aws"], ["azure"]]


def _spread(router, n: int = 300) -> dict:
    result = asyncio.run(run_load(router.url + "/v1/predict", rate=150, duration=n / 150))
    assert result.errors == [], [(t["name"], t["errors"]) for t in router.status()["targets"]]
    return result.by_cloud()


@pytest.mark.slow
def test_weighted_policy_splits_by_weight(servers, start_router):
    cfg = router_config([s.url for s in servers], policy="weighted", **CALM)
    weights = {"aws": 6, "gcp": 3, "azure": 1}
    cfg = cfg.model_copy(update={"targets": [t.model_copy(update={"weight": weights[t.name]}) for t in cfg.targets]})
    spread = _spread(start_router(cfg), 600)
    assert spread["aws"] > spread["gcp"] > spread.get("azure", 0)
    assert 0.45 < spread["aws"] / 600 < 0.75


@pytest.mark.slow
def test_latency_policy_prefers_the_fast_cloud(proxies, start_router):
    proxies[0].set_mode("slow", delay=0.2)
    proxies[1].set_mode("slow", delay=0.2)
    spread = _spread(start_router(router_config([p.url for p in proxies], policy="latency", **CALM)), 450)
    # power of two choices over three clouds: azure is in the drawn pair 2/3 of the time and then wins
    assert spread["azure"] > 0.55 * 450 and spread["azure"] > max(spread.get("aws", 0), spread.get("gcp", 0)), spread


@pytest.mark.slow
def test_cost_policy_takes_the_cheapest_cloud_within_the_slo(proxies, start_router):
    # priorities say aws first; prices say azure (eastus), then gcp (us-central1), then aws (3 replicas)
    cfg = router_config([p.url for p in proxies], policy="cost", slo_p95_ms=250.0, **CALM)
    cfg = cfg.model_copy(update={"targets": [t.model_copy(update={"replicas": 3 if t.name == "aws" else 2})
                                             for t in cfg.targets]})
    router = start_router(cfg)
    spread = _spread(router, 300)
    assert max(spread, key=spread.get) == "azure", spread
    # azure breaks its SLO: the next cheapest within the SLO takes over
    proxies[2].set_mode("slow", delay=0.35)
    asyncio.run(run_load(router.url + "/v1/predict", rate=50, duration=3))  # lets the p95 window see it
    spread = _spread(router, 300)
    status = router.status()
    assert max(spread, key=spread.get) == "gcp", (spread, [(t["name"], t["window_10s"], t["cost_per_hour"])
                                                          for t in status["targets"]])


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_metrics_and_status_report_per_cloud_numbers(servers, start_router, tmp_path: Path):
    # counting, not timing, is under test here: no hedging and a generous per-try timeout
    router = start_router(router_config([s.url for s in servers],
                                        retries=RouterRetryConfig(per_try_timeout_s=3.0, connect_timeout_s=3.0, hedge=False)))
    result = asyncio.run(run_load(router.url + "/v1/predict", rate=50, duration=2.0))
    assert result.errors == []
    time.sleep(1.2)  # one sampler tick, so the 10 s window has a rate
    metrics = httpx.get(router.url + "/metrics").text
    assert 'mco_router_target_requests_total{target="aws"} 100.0' in metrics
    assert 'mco_router_target_healthy{target="gcp"} 1.0' in metrics
    assert "mco_router_target_cost_per_hour" in metrics
    env = {"MCO_ROUTER_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([MCO, "router", "status", "--url", router.url, "--output", "json"], env=env,
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    aws = target_row(status, "aws")
    assert aws["requests"] == 100 and aws["healthy"] is True
    assert set(aws["errors"]) == {"connect", "timeout", "reset", "http_5xx"}
    assert 0 < aws["p50_ms"] <= aws["p95_ms"] <= aws["p99_ms"]
    assert aws["cost_per_hour"] > 0 and aws["cost_per_1k_requests"] > 0
    assert target_row(status, "gcp")["cost_per_1k_requests"] is None  # no traffic: no per-request cost
    out = subprocess.run([MCO, "router", "report", "--url", router.url, "--out", str(tmp_path / "rep"),
                          "--output", "json"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    files = json.loads(out.stdout)
    assert Path(files["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "aws" in Path(files["html"]).read_text()
    bad = subprocess.run([MCO, "router", "status", "--url", router.url], env={**env, "MCO_ROUTER_TOKEN": "nope"},
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode != 0 and "refused the admin token" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_router_runs_in_process_too(servers, dataplane):
    from orchestrator.router.server import RouterServer

    if dataplane == "rust":
        ensure_rust_dataplane()
    cfg = router_config([s.url for s in servers], port=0, dataplane=dataplane)
    with RouterServer(cfg, token=TOKEN) as server:
        resp = httpx.post(server.url + "/v1/predict", json=GOOD, timeout=5)
        assert resp.status_code == 200 and resp.headers[CLOUD_HEADER] == "aws"
        server.set_targets([RouterTargetConfig(name="azure", url=servers[2].url)])
        resp = httpx.post(server.url + "/v1/predict", json=GOOD, timeout=5)
        assert resp.headers[CLOUD_HEADER] == "azure"
        assert server.router.status()["targets"][0]["name"] == "azure"
        assert server.router.status()["saturation"].get("dataplane", "python") == dataplane
