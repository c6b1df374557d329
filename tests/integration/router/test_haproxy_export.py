"""`mco router export --format haproxy|envoy`: HAProxy (from Debian) accepts the config and fails over with it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from orchestrator.net import free_port, port_open
from orchestrator.router.headers import CLOUD_HEADER
from orchestrator.testing.traffic import run_load
from tests.integration.router.conftest import CLOUDS, MCO

# Timing on a shared 2-core machine: one rerun separates load noise from a real failure.
pytestmark = pytest.mark.flaky(reruns=1)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def write_mco_yaml(path: Path, urls: list[str]) -> Path:
    doc = {"router": {
        "targets": [{"name": name, "url": url, "priority": i, "pricing_key": key}
                    for i, ((name, key), url) in enumerate(zip(CLOUDS, urls))],
        "health": {"interval_s": 0.5, "fast_recheck_s": 0.1, "timeout_s": 0.3},
    }}
    path.write_text(yaml.safe_dump(doc))
    return path


def export(config: Path, fmt: str, out: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MCO, "router", "export", "--format", fmt, "--config", str(config), "--port", str(port),
                           "--out", str(out)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def haproxy_binary() -> str:
    if not Path(HAPROXY).exists():
        pytest.fail("haproxy is not installed: run `make setup` (scripts/setup/40-haproxy.sh)")
    return HAPROXY


@pytest.mark.slow
def test_exported_haproxy_config_is_valid_and_fails_over(servers, haproxy_binary, tmp_path: Path):
    port = free_port()
    config = write_mco_yaml(tmp_path / "mco.yaml", [s.url for s in servers])
    cfg_file = tmp_path / "haproxy.cfg"
    done = export(config, "haproxy", cfg_file, port)
    assert done.returncode == 0, done.stderr
    text = cfg_file.read_text()
    assert "server gcp" in text and "backup" in text and "http-check send meth GET uri /readyz" in text

    check = subprocess.run([haproxy_binary, "-c", "-f", str(cfg_file)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Configuration file is valid" in check.stdout

    proc = subprocess.Popen([haproxy_binary, "-db", "-f", str(cfg_file)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, "haproxy did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        first = httpx.post(url + "/v1/predict", json={"instances": [[0.0] * 64]}, timeout=5)
        assert first.status_code == 200 and first.headers[CLOUD_HEADER] == "aws"
        too_big = httpx.post(url + "/v1/predict", content=b"x" * (2 << 20), timeout=5)
        assert too_big.status_code == 413

        result = asyncio.run(run_load(url + "/v1/predict", rate=200, duration=5.0, events={1.5: servers[0].kill9}))
        before = {s.cloud for s in result.samples if s.sent < 1.4 and s.status == 200}
        tail = [s for s in result.samples if s.sent > 4.0]
        assert before == {"aws"}
        assert tail and all(s.status == 200 and s.cloud == "gcp" for s in tail), result.summary()
        moved = result.moved_after(1.5, "aws")
        assert moved is not None and moved < 3.0, result.summary()
    finally:
        proc.terminate()
        proc.wait(10)


def test_exported_envoy_config_carries_the_same_policy(tmp_path: Path):
    config = write_mco_yaml(tmp_path / "mco.yaml", ["http://127.0.0.1:9001", "http://127.0.0.1:9002",
                                                    "http://127.0.0.1:9003"])
    out = tmp_path / "envoy.yaml"
    done = export(config, "envoy", out, 10000)
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(out.read_text())
    cluster = doc["static_resources"]["clusters"][0]
    levels = {lb["endpoint"]["hostname"]: ep["priority"] for ep in cluster["load_assignment"]["endpoints"]
              for lb in ep["lb_endpoints"]}
    assert levels == {"aws": 0, "gcp": 1, "azure": 2}
    assert cluster["health_checks"][0]["http_health_check"]["path"] == "/readyz"
    assert cluster["outlier_detection"]["split_external_local_origin_errors"] is True
    route = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["retry_policy"]["num_retries"] == 1 and route["retry_policy"]["per_try_timeout"] == "0.500s"
    assert cluster["circuit_breakers"]["thresholds"][0]["retry_budget"]["budget_percent"]["value"] == 20.0


def test_export_without_targets_is_a_clear_error(tmp_path: Path):
    (tmp_path / "mco.yaml").write_text("router: {}\n")
    done = export(tmp_path / "mco.yaml", "haproxy", tmp_path / "x.cfg", 10000)
    assert done.returncode != 0
    assert "no targets" in done.stderr and "Traceback" not in done.stderr
    bad = subprocess.run([MCO, "router", "export", "--format", "nginx", "--config", str(tmp_path / "mco.yaml"),
                          "--target", "a=http://127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown export format 'nginx'" in bad.stderr
