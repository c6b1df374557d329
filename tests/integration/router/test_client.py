"""``orchestrator.client`` against real routers and model servers on loopback."""

from __future__ import annotations

import time

import pytest

from orchestrator.client import Client
from orchestrator.errors import Unreachable
from orchestrator.net import free_port
from tests.integration.router.conftest import router_config

pytestmark = pytest.mark.slow
ROW = [[0.0] * 64]


def test_fails_over_to_the_next_entry_point_and_then_prefers_it(servers, proxies, start_router) -> None:
    router = start_router(router_config([p.url for p in proxies]))
    dead = f"http://127.0.0.1:{free_port()}"
    with Client([dead, router.url], deadline_s=2.0) as client:
        doc = client.predict(ROW)
        assert doc["predictions"] and client.last_entry == router.url
        assert [t["failure"].split(":")[0] for t in client.last_tries] == ["connect"]
        client.predict(ROW)
        assert client.last_tries == []  # the dead one is cooling: the router is asked first
        # a 4xx is the answer: passed back, never retried elsewhere
        resp = client.request("POST", "/v1/predict", json={"instances": [[1, 2]]})
        assert resp.status_code == 422 and client.last_tries == []


def test_every_entry_point_hanging_ends_at_the_deadline(proxies) -> None:
    for p in proxies:
        p.set_mode("hang")
    with Client([p.url for p in proxies], deadline_s=0.8, per_try_timeout_s=0.3) as client:
        t0 = time.monotonic()
        with pytest.raises(Unreachable) as err:
            client.predict(ROW)
        took = time.monotonic() - t0
    assert took < 0.8 + 0.3, took
    assert "timeout" in str(err.value) and "within 0.8 s" in str(err.value)


def test_a_non_repeatable_request_is_not_sent_twice(proxies, servers) -> None:
    proxies[0].set_mode("http503")
    with Client([proxies[0].url, servers[1].url], deadline_s=2.0) as client:
        resp = client.request("POST", "/v1/feedback", json={"id": "x", "label": 1})
        assert resp.status_code == 503 and len(client.last_tries) == 1


def test_hedging_answers_from_the_second_entry_point_when_the_first_is_slow(proxies, servers) -> None:
    proxies[0].set_mode("slow", delay=1.5)
    with Client([proxies[0].url, servers[1].url], deadline_s=3.0, per_try_timeout_s=2.0,
                hedge_after_s=0.05) as client:
        client.predict(ROW)  # warm both connections
        t0 = time.monotonic()
        client._async._preferred = 0  # start from the slow one again
        client._async._cooling.clear()
        client.predict(ROW)
        assert time.monotonic() - t0 < 1.0
        assert client.last_entry == servers[1].url
    with Client([proxies[0].url, servers[1].url], deadline_s=3.0, per_try_timeout_s=2.0) as plain:
        t0 = time.monotonic()
        plain.predict(ROW)
        assert time.monotonic() - t0 >= 1.4  # without hedging it waits for the slow one
