"""Routers calling routers: two real routers (aws, gcp), each in front of its own cloud's real model
server and of the other cloud's router. A request that came through one router (``x-mco-hop``) is
served by the other's own cloud only, never spilled back: no ping-pong, and a bounded answer."""

from __future__ import annotations

import time

import httpx
import pytest

from orchestrator.config import RouterRetryConfig, RouterTargetConfig
from orchestrator.net import free_port
from orchestrator.router.headers import HOP_HEADER
from tests.integration.router.conftest import TOKEN, router_config, wait_until

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"instances": [[0.0] * 64]}


def _pair(proxies, start_router):  # type: ignore[no-untyped-def]
    """aws and gcp routers: own model first, then the other cloud's router (checked on /readyz/local)."""
    ports = {"aws": free_port(), "gcp": free_port()}
    models = {"aws": proxies[0].url, "gcp": proxies[1].url}
    routers = {}
    for own, other in (("aws", "gcp"), ("gcp", "aws")):
        targets = [RouterTargetConfig(name=own, url=models[own]),
                   RouterTargetConfig(name=other, url=f"http://127.0.0.1:{ports[other]}", priority=1,
                                      health_path="/readyz/local")]
        cfg = router_config([], port=ports[own], targets=targets, policy="locality", cloud=own, name=f"router-{own}",
                            retries=RouterRetryConfig(per_try_timeout_s=0.5, attempts=3, deadline_s=2.0))
        routers[own] = start_router(cfg)
    return routers


def _overall(router) -> dict:  # type: ignore[no-untyped-def]
    return httpx.get(f"{router.url}/admin/status", headers=AUTH, timeout=5).json()["overall"]


def test_a_spilled_request_is_served_by_the_other_cloud_and_never_comes_back(proxies, start_router) -> None:
    routers = _pair(proxies, start_router)
    aws, gcp = routers["aws"], routers["gcp"]
    with httpx.Client(timeout=10) as client:
        wait_until(lambda: client.get(f"{aws.url}/readyz").json()["healthy_targets"] == ["aws", "gcp"])
        # all healthy: locality, each router serves from its own cloud
        assert {client.post(f"{aws.url}/v1/predict", json=BODY).headers["x-mco-cloud"] for _ in range(10)} == {"aws"}

        # aws's model goes away: aws's router spills to gcp's router, which serves from gcp
        proxies[0].set_mode("refuse")
        wait_until(lambda: client.get(f"{aws.url}/readyz/local").status_code == 503)
        spilled = [client.post(f"{aws.url}/v1/predict", json=BODY) for _ in range(20)]
        assert {r.status_code for r in spilled} == {200}
        assert {r.headers["x-mco-cloud"] for r in spilled} == {"gcp"} and \
            {r.headers["x-mco-router"] for r in spilled} == {"router-aws"}

        # a request that already came through a router, sent to gcp with its model down: gcp's
        # router does not spill it to aws (whose router is up), it answers 503 at once
        proxies[0].set_mode("pass")
        proxies[1].set_mode("refuse")
        wait_until(lambda: client.get(f"{gcp.url}/readyz/local").status_code == 503)
        wait_until(lambda: client.get(f"{gcp.url}/readyz").json()["healthy_targets"] == ["aws"])
        t0 = time.monotonic()
        hopped = client.post(f"{gcp.url}/v1/predict", json=BODY, headers={HOP_HEADER: "router-elsewhere"})
        assert hopped.status_code == 503 and hopped.headers["retry-after"] == "1", hopped.text
        assert "own cloud (gcp) only" in hopped.json()["error"]
        assert time.monotonic() - t0 < 0.5
        # without the header the same router spills to aws as usual
        direct = client.post(f"{gcp.url}/v1/predict", json=BODY)
        assert direct.status_code == 200 and direct.headers["x-mco-cloud"] == "aws"
        # a header naming the router itself is a loop
        loop = client.post(f"{gcp.url}/v1/predict", json=BODY, headers={HOP_HEADER: "router-aws, router-gcp"})
        assert loop.status_code == 508


def test_with_both_models_down_the_routers_answer_an_error_in_bounded_time_without_ping_pong(
        proxies, start_router) -> None:
    routers = _pair(proxies, start_router)
    aws, gcp = routers["aws"], routers["gcp"]
    with httpx.Client(timeout=10) as client:
        wait_until(lambda: client.get(f"{aws.url}/readyz").json()["healthy_targets"] == ["aws", "gcp"])
        before_aws, before_gcp = _overall(aws)["requests"], _overall(gcp)["requests"]
        proxies[0].set_mode("refuse")
        proxies[1].set_mode("refuse")
        wait_until(lambda: client.get(f"{aws.url}/readyz/local").status_code == 503
              and client.get(f"{gcp.url}/readyz/local").status_code == 503)
        sent = 10
        for _ in range(sent):
            t0 = time.monotonic()
            resp = client.post(f"{aws.url}/v1/predict", json=BODY)
            assert resp.status_code >= 500 and time.monotonic() - t0 < 2.5, (resp.status_code, resp.text)
        after_aws, after_gcp = _overall(aws), _overall(gcp)
        # aws's router answered exactly the client's requests: none came back from gcp's router
        assert after_aws["requests"] - before_aws == sent
        assert after_aws["client_errors"]["hop_loop"] == 0 and after_gcp["client_errors"]["hop_loop"] == 0
        # gcp's router saw at most one try per attempt of aws's, and served them locally or refused them
        assert after_gcp["requests"] - before_gcp <= sent * 3
        assert after_gcp["client_errors"]["hop_no_local"] == after_gcp["requests"] - before_gcp
