"""What a hostile or careless client, a misbehaving upstream or the router's own overload can do.

Each test talks HTTP to a router child process in front of real servers on loopback, so it
holds for whichever data plane is current (issue 17 items 2, 3, 4, 9; issue 15 items 3, 4).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from orchestrator.config import RouterLimitsConfig, RouterRetryConfig
from orchestrator.testing.traffic import predict_body, run_load
from tests.integration.router.conftest import DATAPLANES, TOKEN, kinds, router_config

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CALM = RouterRetryConfig(per_try_timeout_s=2.0, connect_timeout_s=2.0, hedge=False)


class Upstream:
    """A small real HTTP/1.1 server on loopback whose answers a test controls.

    ``POST`` bodies containing ``poison`` get 500 (a query of death); ``/big`` answers
    ``big_bytes`` bytes; ``/conn`` answers with headers its ``Connection`` line names;
    every answer waits ``delay`` seconds. ``seen`` records (method, path, headers, body)."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.big_bytes = 0
        self.seen: list[tuple[str, str, list[tuple[str, str]], bytes]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                upstream.seen.append((self.command, self.path, list(self.headers.items()), body))
                if upstream.delay and self.path != "/readyz":
                    time.sleep(upstream.delay)
                status, extra, payload = 200, [], b'{"ok": true}'
                if b"poison" in body:
                    status, payload = 500, b'{"error": "the model failed on this input"}'
                elif self.path == "/big":
                    payload = b"x" * upstream.big_bytes
                elif self.path == "/conn":
                    extra = [("Connection", "X-Secret"), ("Connection", "X-Other"), ("X-Secret", "s"),
                             ("X-Other", "o"), ("X-Public", "p")]
                self.send_response(status)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024  # (the default, 5, drops connects under a burst)

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client (the router) that gave up on an answer is not news here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p, _, _ in self.seen if p != "/readyz" and (method is None or m == method)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstreams() -> Iterator[list[Upstream]]:
    started = [Upstream() for _ in range(3)]
    yield started
    for u in started:
        u.stop()


def raw(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the router closes it (or ``wait``)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(wait)
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the router answered before reading it all
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_oversized_and_too_many_headers_get_431_and_nothing_reaches_upstream(upstreams, start_router):
    router = start_router(router_config([u.url for u in upstreams], retries=CALM))
    port = router.cfg.port
    huge = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 << 20) + b"\r\n\r\n"
    reply = raw(port, huge)
    assert status_of(reply) == 431 and b"larger than 16384 bytes" in reply
    many = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"\r\n"
    reply = raw(port, many)
    assert status_of(reply) == 431 and b"more than 100 request headers" in reply
    assert upstreams[0].paths() == []
    assert httpx.get(router.url + "/v1/health").status_code == 200  # the router is fine
    errors = router.status()["overall"]["client_errors"]
    assert errors["header_too_large"] == 2
    assert all(not t["ejected"] for t in router.status()["targets"])


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_slow_headers_and_a_body_never_sent_are_cut_off_by_deadlines(upstreams, start_router):
    limits = RouterLimitsConfig(header_timeout_s=1.0, body_timeout_s=1.0)
    router = start_router(router_config([u.url for u in upstreams], retries=CALM, limits=limits))
    port = router.cfg.port
    # 50 clients that send half their headers and stop: each gets 408 after the deadline
    socks = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Half: ")
        socks.append(s)
    assert httpx.get(router.url + "/v1/health", timeout=5).status_code == 200  # others are served meanwhile
    t0 = time.monotonic()
    for s in socks:
        s.settimeout(5)
        reply = s.recv(65536)
        assert status_of(reply) == 408 and b"headers not received" in reply
        s.close()
    assert time.monotonic() - t0 < 3.0
    # a body declared as 1,000 bytes, 221 sent, then silence: 408, and nothing forwarded
    started = time.monotonic()
    reply = raw(port, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"{" * 221)
    assert status_of(reply) == 408 and b"body not received" in reply
    assert time.monotonic() - started < 3.0
    assert upstreams[0].paths("POST") == []
    errors = router.status()["overall"]["client_errors"]
    assert errors["header_timeout"] == 50 and errors["body_timeout"] == 1


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_a_body_cut_short_by_a_client_disconnect_is_never_forwarded(upstreams, start_router):
    router = start_router(router_config([u.url for u in upstreams], retries=CALM))
    with socket.create_connection(("127.0.0.1", router.cfg.port)) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"{" * 221)
    deadline = time.monotonic() + 5
    while router.status()["overall"]["client_errors"]["client_gone"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert router.status()["overall"]["client_errors"]["client_gone"] == 1
    time.sleep(0.3)
    assert [u.paths("POST") for u in upstreams] == [[], [], []]


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_concurrency_limit_answers_503_with_retry_after(upstreams, start_router):
    for u in upstreams:
        u.delay = 1.0
    router = start_router(router_config([u.url for u in upstreams], retries=CALM,
                                        limits=RouterLimitsConfig(max_concurrency=2)))

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as client:
            return await asyncio.gather(*[client.get(router.url + "/v1/health") for _ in range(6)])

    replies = asyncio.run(burst())
    codes = sorted(r.status_code for r in replies)
    assert codes == [200, 200, 503, 503, 503, 503], codes
    shed = next(r for r in replies if r.status_code == 503)
    assert shed.headers["retry-after"] == "1" and "concurrency limit (2 requests)" in shed.json()["error"]
    assert router.status()["overall"]["client_errors"]["shed_concurrency"] == 4


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_only_idempotent_and_allowed_requests_are_retried_or_hedged(upstreams, start_router):
    router = start_router(router_config([u.url for u in upstreams], retries=CALM))
    poison = json.dumps({"instances": "poison"}).encode()
    # POST /v1/explain is not in retries.retry_allow: one cloud, once (/v1/feedback the router
    # answers itself since issue 20: it is never forwarded)
    resp = httpx.post(router.url + "/v1/explain", content=poison)
    assert resp.status_code == 500 and resp.headers["x-mco-cloud"] == "aws"
    assert [u.paths("POST") for u in upstreams] == [["/v1/explain"], [], []]
    for verb in ("PUT", "DELETE", "PATCH"):
        assert httpx.request(verb, router.url + "/v1/predict", content=poison).status_code in (500, 501)
    assert upstreams[1].paths() == []
    # POST /v1/predict is allowed: the 500 is retried once, on gcp
    resp = httpx.post(router.url + "/v1/predict", content=poison)
    assert resp.status_code == 500 and resp.headers["x-mco-cloud"] == "gcp"
    assert upstreams[1].paths("POST") == ["/v1/predict"]
    # hedging: a slow POST that is not allowed is never copied to a second cloud
    router2 = start_router(router_config([u.url for u in upstreams],
                                         retries=RouterRetryConfig(per_try_timeout_s=0.8, hedge=True,
                                                                   hedge_min_delay_s=0.05)))
    upstreams[0].delay = 0.5  # over the hedge delay (a quarter of the per-try timeout while no p95 is known)
    before = len(upstreams[1].paths())
    assert httpx.post(router2.url + "/v1/explain", content=b"{}", timeout=5).headers["x-mco-cloud"] == "aws"
    assert len(upstreams[1].paths()) == before
    assert sum(t["hedges"] for t in router2.status()["targets"]) == 0
    # ... while an allowed one is hedged
    assert httpx.post(router2.url + "/v1/predict", content=b"{}", timeout=5).headers["x-mco-cloud"] == "gcp"
    assert sum(t["hedges"] for t in router2.status()["targets"]) == 1


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_every_connection_named_header_is_stripped_both_ways_and_xff_is_set(upstreams, start_router):
    router = start_router(router_config([u.url for u in upstreams], retries=CALM))
    request = (b"GET /conn HTTP/1.1\r\nHost: x\r\nConnection: X-A\r\nConnection: X-B, keep-alive\r\n"
               b"X-A: 1\r\nX-B: 2\r\nX-Keep: 3\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n")
    reply = raw(router.cfg.port, request)
    assert status_of(reply) == 200
    head = reply.split(b"\r\n\r\n", 1)[0].lower()
    assert b"x-secret" not in head and b"x-other" not in head and b"x-public: p" in head
    assert b"x-mco-cloud: aws" in head
    _, _, headers, _ = upstreams[0].seen[-1]
    names = [k.lower() for k, _ in headers]
    assert "x-a" not in names and "x-b" not in names and "connection" not in names and "x-keep" in names
    assert {k.lower(): v for k, v in headers}["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    httpx.get(router.url + "/v1/health")
    _, _, headers, _ = upstreams[0].seen[-1]
    assert {k.lower(): v for k, v in headers}["x-forwarded-for"] == "127.0.0.1"


def test_deeply_nested_admin_json_is_a_400(upstreams, start_router):
    router = start_router(router_config([u.url for u in upstreams], retries=CALM))
    body = b'{"targets": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    resp = httpx.put(router.url + "/admin/targets", headers=AUTH, content=body, timeout=10)
    assert resp.status_code == 400 and "nested too deeply" in resp.json()["error"]
    assert [t["name"] for t in router.status()["targets"]] == ["aws", "gcp", "azure"]


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_an_answer_over_the_cap_is_a_502_naming_it(upstreams, start_router):
    for u in upstreams:
        u.big_bytes = 3 << 20
    router = start_router(router_config([u.url for u in upstreams], retries=CALM,
                                        limits=RouterLimitsConfig(max_response_bytes=1 << 20)))
    resp = httpx.get(router.url + "/big", timeout=10)
    assert resp.status_code == 502 and "max_response_bytes (1048576 bytes)" in resp.json()["error"]
    assert upstreams[1].paths() == []  # not retried: every cloud would answer the same
    assert not any(t["ejected"] for t in router.status()["targets"])
    for u in upstreams:
        u.big_bytes = 1000
    assert httpx.get(router.url + "/big").status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_a_query_of_death_among_good_traffic_ejects_no_cloud(upstreams, start_router):
    # Calm timeouts: the upstreams share the test's own process (and GIL) with the load, and a
    # starved CI machine must not turn their slowness into the timeouts this test is not about.
    router = start_router(router_config([u.url for u in upstreams], retries=CALM))
    poison = json.dumps({"instances": "poison"}).encode()

    async def drive() -> tuple[object, list[int]]:
        codes: list[int] = []

        async def poison_stream() -> None:
            async with httpx.AsyncClient(timeout=10) as client:
                for _ in range(100):
                    codes.append((await client.post(router.url + "/v1/predict", content=poison)).status_code)
                    await asyncio.sleep(0.02)

        good, _ = await asyncio.gather(run_load(router.url + "/v1/predict", rate=300, duration=3.0,
                                                body=predict_body()), poison_stream())
        return good, codes

    good, codes = asyncio.run(drive())
    assert good.errors == [], (good.summary(), [(s.status, s.error) for s in good.errors[:5]], router.events())
    assert codes == [500] * 100  # answered with the upstream's own error, after two clouds at most
    story = kinds(router.events())
    assert not [k for k in story if k[0] in ("ejection", "health_down", "failover")], story
    assert not any(b"poison" in body for _, _, _, body in upstreams[2].seen)  # never tried on a third cloud


@pytest.mark.slow
# Known open defect (#15): on a starved CI machine some overload tries still end in 502 instead
# of a shed 503; one rerun until the data plane's overload handling is finished.
@pytest.mark.flaky(reruns=1)
@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_overload_sheds_with_503_and_ejects_no_healthy_cloud(upstreams, start_router):
    """Twice the router's capacity for 5 s: capacity here is 10 requests in flight over 50 ms answers."""
    for u in upstreams:
        u.delay = 0.05
    router = start_router(router_config([u.url for u in upstreams],
                                        limits=RouterLimitsConfig(max_concurrency=10)))
    capacity = 10 / 0.05
    over = asyncio.run(run_load(router.url + "/v1/predict", rate=2 * capacity, duration=5.0))
    statuses = {s.status for s in over.samples}
    assert statuses <= {200, 503}, over.summary()
    shed = [s for s in over.samples if s.status == 503]
    assert len(shed) > 0.2 * len(over.samples), over.summary()
    # shedding answers at once instead of queueing (bounded loosely: the load generator shares the machine)
    assert statistics.median(s.latency for s in shed) < 0.5, over.summary()
    story = kinds(router.events())
    assert not [k for k in story if k[0] in ("ejection", "health_down", "failover", "all_down")], story
    # the clouds serve as before once the load drops
    for u in upstreams:
        u.delay = 0.0
    after = asyncio.run(run_load(router.url + "/v1/predict", rate=100, duration=2.0))
    assert after.errors == [] and after.by_cloud().get("aws", 0) >= 0.8 * len(after.samples), after.summary()
    resp = httpx.post(router.url + "/v1/predict", content=b"{}")
    assert resp.status_code == 200


@pytest.mark.slow
@pytest.mark.flaky(reruns=1)  # timing on a shared 2-core machine; see the overload test above
def test_a_stall_of_the_router_itself_is_not_blamed_on_a_cloud(upstreams, start_router):
    """The router's process is frozen for 1.2 s (SIGSTOP) while tries are in flight: past their
    per-try timeout when it wakes. That is the router's fault: no cloud may be ejected."""
    for u in upstreams:
        u.delay = 0.03
    router = start_router(router_config([u.url for u in upstreams],
                                        retries=RouterRetryConfig(per_try_timeout_s=0.5, hedge=False)))
    pid = router.pid
    assert pid is not None

    def freeze() -> None:
        os.kill(pid, signal.SIGSTOP)
        threading.Timer(1.2, os.kill, (pid, signal.SIGCONT)).start()

    result = asyncio.run(run_load(router.url + "/v1/predict", rate=300, duration=3.0, events={1.0: freeze}))
    time.sleep(0.5)
    story = kinds(router.events())
    assert ("ejection", "aws") not in story, ([e["detail"] for e in router.events()], router.status()["saturation"])
    odd = collections.Counter((s.status, s.error) for s in result.samples if s.status not in (200, 503))
    assert not odd, (odd.most_common(5), result.summary())
    status = router.status()
    assert status["saturation"]["own_stall_timeouts"] >= 1
    after = asyncio.run(run_load(router.url + "/v1/predict", rate=100, duration=1.0))
    assert after.errors == [] and after.by_cloud().get("aws", 0) >= 0.8 * len(after.samples), after.summary()


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_open_inference_protocol_infer_is_retried_like_v1_predict(upstreams, start_router):
    router = start_router(router_config([u.url for u in upstreams], retries=CALM))
    poison = json.dumps({"inputs": "poison"}).encode()
    # POST /v2/models/*/infer is on the default allow-list: the 500 is retried once, on gcp
    resp = httpx.post(router.url + "/v2/models/digits/infer", content=poison)
    assert resp.status_code == 500 and resp.headers["x-mco-cloud"] == "gcp"
    assert upstreams[1].paths("POST") == ["/v2/models/digits/infer"]
    resp = httpx.post(router.url + "/v2/models/digits/versions/1/infer", content=poison)
    assert resp.status_code == 500 and resp.headers["x-mco-cloud"] == "gcp"
    # "*" is one segment: another POST under /v2 is sent once, to one cloud
    before = [len(u.paths("POST")) for u in upstreams]
    for path in ("/v2/models/a/b/infer", "/v2/models/digits/load"):
        assert httpx.post(router.url + path, content=poison).headers["x-mco-cloud"] == "aws"
    assert [len(u.paths("POST")) for u in upstreams] == [before[0] + 2, before[1], before[2]]
