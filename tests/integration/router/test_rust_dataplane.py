"""What only the Rust data plane has: two processes, and a data plane that must not outlive
its control plane. (Its HTTP behaviour is tested with the Python one's tests, parametrized
over DATAPLANES.)"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from orchestrator.router.headers import CLOUD_HEADER
from tests.integration.router.conftest import TOKEN, router_config


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("dataplane", ["rust"])
def test_the_rust_process_forwards_and_stops_when_its_control_plane_is_killed(servers, start_router):
    router = start_router(router_config([s.url for s in servers]))
    pids = router.pids()
    assert len(pids) == 2, pids  # the control plane and mco-dataplane
    control, dataplane = pids
    assert "mco-dataplane" in open(f"/proc/{dataplane}/cmdline").read()
    resp = httpx.post(router.url + "/v1/predict", json={"instances": [[0.0] * 64]}, timeout=5)
    assert resp.status_code == 200 and resp.headers[CLOUD_HEADER] == "aws"
    status = httpx.get(router.url + "/admin/status", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert status["saturation"]["dataplane"] == "rust"
    assert next(t for t in status["targets"] if t["name"] == "aws")["requests"] == 1
    # a data plane nobody decides for must not go on routing on a stale table
    os.kill(control, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(dataplane) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(dataplane), "mco-dataplane outlived its control plane by 10 s"
