"""``--workers N``: real router processes sharing one port, their counters added up on read."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.router.process import RouterProcess
from tests.integration.router.conftest import TOKEN, router_config

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _predict(client: httpx.Client, url: str) -> httpx.Response:
    return client.post(f"{url}/v1/predict", json={"instances": [[0.0] * 64]})


def test_two_workers_share_the_port_and_add_up(servers, tmp_path: Path) -> None:
    cfg = router_config([s.url for s in servers])
    with RouterProcess(cfg, token=TOKEN, state_dir=tmp_path, workers=2) as router:
        deadline = time.monotonic() + 10
        status = {}
        while time.monotonic() < deadline:  # both workers listening and reachable from each other
            status = httpx.get(f"{router.url}/admin/status", headers=AUTH, timeout=5).json()
            if len(status.get("workers", [])) == 2 and all(w["reachable"] for w in status["workers"]):
                break
            time.sleep(0.2)
        assert [w["reachable"] for w in status["workers"]] == [True, True]
        pids = {w["pid"] for w in status["workers"]}
        assert len(pids) == 2

        n = 60
        for _ in range(n):  # a fresh connection each time: the kernel spreads them over the workers
            with httpx.Client(timeout=5) as client:
                assert _predict(client, router.url).status_code == 200
        # every status read, whichever worker answers it, counts every request
        for _ in range(4):
            doc = httpx.get(f"{router.url}/admin/status", headers=AUTH, timeout=5).json()
            assert doc["targets"][0]["requests"] == n, doc["targets"][0]
            assert doc["overall"]["requests"] == n
            assert doc["targets"][0]["healthy_workers"] == 2
            assert doc["targets"][0]["p95_ms"] is not None
        served = [w for w in doc["workers"] if w["saturation"] is not None]
        assert len(served) == 2
        metrics = httpx.get(f"{router.url}/metrics", timeout=5).text
        line = next(x for x in metrics.splitlines() if x.startswith('mco_router_target_requests_total{target="aws"}'))
        assert float(line.split()[-1]) == n

        # both workers took connections (SO_REUSEPORT spreads them); the supervisor serves none
        assert all(w["requests"] > 0 for w in doc["workers"]), doc["workers"]
        assert sum(w["requests"] for w in doc["workers"]) == n
        assert router.pid not in pids
        # a killed worker is restarted by the supervisor; clients keep being served meanwhile
        victim = next(iter(pids))
        os.kill(victim, signal.SIGKILL)
        errors = dropped = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with httpx.Client(timeout=5) as client:
                try:
                    if _predict(client, router.url).status_code != 200:
                        errors += 1  # an answer other than 200: never acceptable
                except httpx.TransportError:
                    dropped += 1
            doc = httpx.get(f"{router.url}/admin/status", headers=AUTH, timeout=5).json()
            now = {w["pid"] for w in doc["workers"] if w["reachable"]}
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.1)
        assert len(now) == 2 and victim not in now, doc["workers"]
        # The kernel resets the connections still queued at a SO_REUSEPORT socket when its
        # process dies (kill -9 leaves no time to drain it): one such connection, if the kill
        # lands while it waits, is what SO_REUSEPORT costs; never an error answer.
        assert errors == 0 and dropped <= 1, (errors, dropped)
