"""``mco router status --all``: two real routers (two clouds) read into one table router x cloud."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest

from orchestrator.net import free_port
from tests.integration.router.conftest import MCO, TOKEN, router_config

pytestmark = pytest.mark.slow


def test_status_all_reads_every_router_into_one_view(servers, start_router, tmp_path) -> None:
    urls = [s.url for s in servers]
    aws = start_router(router_config(urls, policy="locality", cloud="aws", name="router-aws"))
    gcp = start_router(router_config(urls, policy="locality", cloud="gcp", name="router-gcp"))
    with httpx.Client(timeout=5) as client:
        for _ in range(7):
            assert client.post(f"{aws.url}/v1/predict", json={"instances": [[0.0] * 64]}).status_code == 200
        for _ in range(5):
            assert client.post(f"{gcp.url}/v1/predict", json={"instances": [[0.0] * 64]}).status_code == 200
    gone = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "mco.yaml").write_text(f"clouds:\n  aws:\n    provider: local\n    router_urls: ['{aws.url}']\n")
    env = {**os.environ, "MCO_ROUTER_TOKEN": TOKEN}
    cmd = [MCO, "router", "status", "--all", "--config", str(tmp_path / "mco.yaml"),
           "--router", f"gcp={gcp.url}", "--router", f"azure={gone}"]
    out = subprocess.run([*cmd, "--output", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (doc["reachable"], doc["total"]) == (2, 3)
    rows = {r["cloud"]: r for r in doc["routers"]}
    assert rows["azure"]["reachable"] is False and "unreachable" in rows["azure"]["error"]
    by = {(r["router"], t["cloud"]): t for r in doc["routers"] if r["reachable"] for t in r["targets"]}
    assert by[("router-aws", "aws")]["requests"] == 7 and by[("router-aws", "aws")]["local"]
    assert by[("router-gcp", "gcp")]["requests"] == 5 and by[("router-aws", "gcp")]["requests"] == 0
    assert by[("router-aws", "aws")]["p95_ms"] is not None
    assert doc["totals"]["aws"]["requests"] == 7 and doc["totals"]["gcp"]["requests"] == 5
    table = subprocess.run(cmd, env={**env, "COLUMNS": "160"}, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and "router-aws" in table.stdout and "router-gcp" in table.stdout
    assert TOKEN not in table.stdout + table.stderr + out.stdout
    # a wrong token: every row says so, and the command fails
    bad = subprocess.run([*cmd, "--output", "json"], env={**env, "MCO_ROUTER_TOKEN": "wrong"}, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "token was refused" in bad.stdout
