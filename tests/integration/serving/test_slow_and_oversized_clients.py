"""Slow and oversized clients against a real ``mco serve`` on loopback, over raw sockets.

Every test is bounded in time: the server runs with 1-2 s deadlines, and every socket has a timeout."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.serving.test_model_server import _start

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
IN_FLIGHT = 2


@pytest.fixture(scope="module")
def served(digits_bundle):
    proc, port = _start(digits_bundle.path, "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout",
                        str(BODY_TIMEOUT), "--max-requests-in-flight", str(IN_FLIGHT))
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    yield proc, port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # uvicorn waits for open connections; a failed test may leave some
        proc.kill()
        proc.wait(10)


@pytest.fixture
def port(served):
    return served[1]


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read until the server closes; (status, headers, body), or status 0 if it closed silently."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    if not data:
        return 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _still_serves(port: int) -> None:
    resp = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"instances": [[0] * 64]}, timeout=10)
    assert resp.status_code == 200


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


REQUEST = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def test_a_header_block_over_16_kib_is_431(port):
    sock = _connect(port)
    sock.sendall(REQUEST + b"X-Big: " + b"a" * 20_000)  # no end of headers yet
    status, _, body = _response(sock)
    assert status == 431 and "16384 bytes" in json.loads(body)["error"]
    _still_serves(port)


def test_too_many_headers_is_431(port):
    sock = _connect(port)
    sock.sendall(REQUEST + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"Content-Length: 2\r\n\r\n{}")
    status, _, body = _response(sock)
    assert status == 431 and "153 headers; at most 100" in json.loads(body)["error"]


def test_huge_headers_are_cut_off_early_and_memory_stays_flat(served):
    proc, port = served
    before = _rss_kib(proc.pid)
    socks = [_connect(port) for _ in range(4)]
    sent = dict.fromkeys(range(4), 0)
    chunk = b"a" * 65536
    for i, sock in enumerate(socks):  # each tries to send a 64 MB header
        sock.sendall(REQUEST + b"X-Big: ")
        try:
            while sent[i] < 64 << 20:
                sock.sendall(chunk)
                sent[i] += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
    assert all(n < 8 << 20 for n in sent.values()), sent  # the server closed long before 64 MB
    assert _rss_kib(proc.pid) - before < 32 * 1024
    _still_serves(port)


def test_half_sent_headers_get_408_within_the_deadline(port):
    sock = _connect(port)
    started = time.monotonic()
    sock.sendall(REQUEST[:30])
    status, _, body = _response(sock)
    assert status == 408 and "headers" in json.loads(body)["error"]
    assert time.monotonic() - started < HEADER_TIMEOUT + 2


def test_a_silent_connection_is_closed(port):
    sock = _connect(port)
    started = time.monotonic()
    status, _, _ = _response(sock)
    assert status == 408 and time.monotonic() - started < HEADER_TIMEOUT + 2


def test_a_body_declared_but_never_sent_gets_408(port):
    sock = _connect(port)
    started = time.monotonic()
    sock.sendall(REQUEST + b"Content-Length: 1000\r\n\r\n" + b'{"instances": [[')
    status, _, body = _response(sock)
    assert status == 408 and "body" in json.loads(body)["error"]
    assert BODY_TIMEOUT - 0.5 < time.monotonic() - started < BODY_TIMEOUT + 2


def test_a_slow_loris_crowd_is_cleared_and_good_clients_are_served(port):
    crowd = [_connect(port) for _ in range(200)]
    for sock in crowd:
        sock.sendall(REQUEST[:40])
    _still_serves(port)
    time.sleep(HEADER_TIMEOUT + 1.5)
    closed = 0
    for sock in crowd:
        sock.settimeout(2)
        closed += _response(sock)[0] == 408
    assert closed == len(crowd)


def test_requests_beyond_the_in_flight_limit_get_a_clear_503(port):
    holders = [_connect(port) for _ in range(IN_FLIGHT)]
    for sock in holders:  # in flight: headers in, body still coming
        sock.sendall(REQUEST + b"Content-Length: 1000\r\n\r\n{")
    time.sleep(0.3)
    resp = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"instances": [[0] * 64]}, timeout=10)
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1" and "requests in flight" in resp.json()["error"]
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200  # exempt
    for sock in holders:
        sock.close()
    time.sleep(0.3)
    _still_serves(port)


def test_keep_alive_requests_on_one_connection_are_not_refused(port):
    # A long-lived client connection (like the router's pool) sends many requests; the header
    # counter and deadline start again for each.
    body = json.dumps({"instances": [[0] * 64]}).encode()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for _ in range(50):
            assert client.post("/v1/predict", content=body).status_code == 200
        time.sleep(HEADER_TIMEOUT + 0.5)  # idle longer than the header deadline: keep-alive governs
        assert client.post("/v1/predict", content=body).status_code == 200
