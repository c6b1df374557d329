"""Prometheus's own checker on both servers' /metrics, after real traffic through the router."""

from __future__ import annotations

import math
import shutil
import subprocess

import httpx
import pytest

from tests.integration.router.conftest import router_config

pytestmark = pytest.mark.timeout(120)


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `bash scripts/setup/41-promtool.sh` installs Debian's prometheus package"
    return path


def _check(text: str) -> None:
    out = subprocess.run([_promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    # promtool's lint also reports style problems on stdout while exiting 0: none either
    assert out.stdout.strip() == "" and out.stderr.strip() == "", out.stdout + out.stderr


def _sums(text: str) -> dict[str, float]:
    sums = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if not line.startswith("#") and name.split("{")[0].endswith("_sum"):
            sums[name] = float(value)
    return sums


def test_promtool_accepts_both_metrics_and_no_sum_is_nan(servers, start_router):
    router = start_router(router_config([s.url for s in servers]))
    rows = {"instances": [[0.0] * 64, [1.0] * 64]}
    with httpx.Client(timeout=10) as client:
        for _ in range(20):
            assert client.post(router.url + "/v1/predict", json=rows).status_code == 200
        assert client.post(router.url + "/v1/predict", json={"instances": [[1, 2]]}).status_code == 422
        for url in (router.url, servers[0].url):
            text = client.get(url + "/metrics").text
            _check(text)
            sums = _sums(text)
            assert sums, f"{url}/metrics has no _sum"
            assert not any(math.isnan(v) for v in sums.values()), sums
        router_sums = _sums(client.get(router.url + "/metrics").text)
    assert router_sums['mco_router_target_latency_seconds_sum{target="aws"}'] > 0
