"""Locality first, x-mco-router, the router's own /readyz, and an all-down router's bounded 503."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest

from orchestrator.config import RouterRetryConfig
from orchestrator.net import free_port
from tests.integration.router.conftest import TOKEN, router_config, wait_until

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"instances": [[0.0] * 64]}


def test_locality_serves_from_the_own_cloud_and_spills_when_it_is_down(proxies, start_router) -> None:
    cfg = router_config([p.url for p in proxies], policy="locality", cloud="gcp", name="router-gcp-0")
    router = start_router(cfg)  # gcp is priority 1: locality, not priority, puts it first
    with httpx.Client(timeout=5) as client:
        answers = [client.post(f"{router.url}/v1/predict", json=BODY) for _ in range(30)]
        assert {r.status_code for r in answers} == {200}
        assert Counter(r.headers["x-mco-cloud"] for r in answers) == {"gcp": 30}
        assert {r.headers["x-mco-router"] for r in answers} == {"router-gcp-0"}
        assert client.get(f"{router.url}/readyz/local").status_code == 200

        proxies[1].set_mode("refuse")  # gcp's model goes away; its router stays up
        wait_until(lambda: client.get(f"{router.url}/readyz/local").status_code == 503)
        ready = client.get(f"{router.url}/readyz")
        assert ready.status_code == 200 and ready.json()["healthy_targets"] == ["aws", "azure"]
        spilled = [client.post(f"{router.url}/v1/predict", json=BODY) for _ in range(20)]
        assert {r.status_code for r in spilled} == {200}
        assert Counter(r.headers["x-mco-cloud"] for r in spilled) == {"aws": 20}  # spill in priority order

        status = client.get(f"{router.url}/admin/status", headers=AUTH).json()
        rows = {t["name"]: t for t in status["targets"]}
        assert status["router"] == "router-gcp-0" and status["cloud"] == "gcp"
        assert rows["gcp"]["local"] and rows["gcp"]["egress_usd"] == 0.0
        assert rows["aws"]["egress_gb"] > 0 and rows["aws"]["egress_usd"] > 0  # cross-cloud bytes are priced

        proxies[1].set_mode("pass")
        wait_until(lambda: client.get(f"{router.url}/readyz/local").status_code == 200)
        back = client.post(f"{router.url}/v1/predict", json=BODY)
        assert back.headers["x-mco-cloud"] == "gcp"


def test_a_router_whose_every_target_is_down_answers_503_within_its_deadline(proxies, start_router) -> None:
    for p in proxies:
        p.set_mode("hang")  # the worst case: accepted, never answered
    deadline_s = 1.2
    cfg = router_config([p.url for p in proxies],
                        retries=RouterRetryConfig(per_try_timeout_s=0.5, attempts=3, deadline_s=deadline_s))
    router = start_router(cfg)
    with httpx.Client(timeout=10) as client:
        for _ in range(3):
            t0 = time.monotonic()
            resp = client.post(f"{router.url}/v1/predict", json=BODY)
            took = time.monotonic() - t0
            assert resp.status_code == 503 and resp.headers["retry-after"] == "1", resp.text
            assert took < deadline_s + 0.4, took
            assert "x-mco-router" in resp.headers
        wait_until(lambda: client.get(f"{router.url}/readyz").status_code == 503)
    # refused everywhere (nothing listens): answered at once, still 503 + Retry-After once health knows
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    router2 = start_router(router_config(dead))
    with httpx.Client(timeout=10) as client:
        wait_until(lambda: client.get(f"{router2.url}/readyz").status_code == 503)
        t0 = time.monotonic()
        resp = client.post(f"{router2.url}/v1/predict", json=BODY)
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert time.monotonic() - t0 < 1.0
