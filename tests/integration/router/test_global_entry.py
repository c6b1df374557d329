"""The local global entry: HAProxy from Debian on loopback in front of real per-cloud routers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from orchestrator.local.base import LocalContext
from orchestrator.local.global_entry import GlobalEntry, GlobalEntryStandIn, render_global_entry
from orchestrator.testing.traffic import run_load
from tests.integration.router.conftest import router_config

pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=1)]  # timing on a shared 2-core machine
BODY = {"instances": [[0.0] * 64]}


def test_the_rendered_config_is_valid_haproxy(tmp_path: Path) -> None:
    cfg = tmp_path / "h.cfg"
    cfg.write_text(render_global_entry([("aws", "http://127.0.0.1:9001"), ("gcp", "http://127.0.0.1:9002")],
                                       port=9000))
    out = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "uri /readyz/local" in cfg.read_text()


def test_the_entry_leaves_a_cloud_whose_model_is_down_and_survives_a_router_crash(proxies, start_router,
                                                                                   tmp_path: Path) -> None:
    urls = [p.url for p in proxies]
    routers = {c: start_router(router_config(urls, policy="locality", cloud=c, name=f"router-{c}"))
               for c in ("aws", "gcp")}
    # what `mco local up` reads: each cloud's routers in mco.local.yaml
    ctx = LocalContext(state_dir=tmp_path / "state", config_path=tmp_path / "mco.local.yaml")
    ctx.config_path.write_text(yaml.safe_dump({"clouds": {c: {"provider": c, "router_urls": [r.url]}
                                                          for c, r in routers.items()}}))
    stand_in = GlobalEntryStandIn()
    stand_in.up(ctx)
    try:
        [row] = stand_in.status(ctx)
        assert row["state"] == "running"
        entry = row["url"]
        with httpx.Client(timeout=5) as client:
            # both routers take traffic, and each one is served by its own cloud (locality)
            answers = [client.post(f"{entry}/v1/predict", json=BODY) for _ in range(20)]
            assert {r.status_code for r in answers} == {200}
            pairs = Counter((r.headers["x-mco-router"], r.headers["x-mco-cloud"]) for r in answers)
            assert set(pairs) == {("router-aws", "aws"), ("router-gcp", "gcp")}, pairs

            # aws's model goes down, its router stays up: the entry's check (/readyz/local) sees it
            proxies[0].set_mode("refuse")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                seen = {client.post(f"{entry}/v1/predict", json=BODY).headers["x-mco-router"] for _ in range(6)}
                if seen == {"router-gcp"}:
                    break
                time.sleep(0.2)
            assert seen == {"router-gcp"}
            proxies[0].set_mode("pass")

        # a router crash under steady traffic: HAProxy retries the refused connects elsewhere
        time.sleep(2.0)  # aws back in the entry (rise 2)
        gcp_pid = routers["gcp"].pid
        assert gcp_pid is not None
        res = _load(entry, events={1.0: lambda: os.kill(gcp_pid, signal.SIGKILL)})
        assert not res.errors, Counter(str(e) for e in res.errors)
        assert res.by_cloud().get("aws", 0) > 0
    finally:
        stand_in.down(ctx)
    assert not GlobalEntry(ctx.dir_for("global-entry"), []).running()


def _load(url: str, events: dict) -> object:  # type: ignore[type-arg]
    import asyncio

    return asyncio.run(run_load(url + "/v1/predict", rate=100, duration=4, events=events))


def test_entry_routers_add_up_the_routers_and_skip_one_that_is_gone(servers, start_router) -> None:
    from orchestrator.drills.entry import EntryRouters
    from orchestrator.net import free_port
    from tests.integration.router.conftest import TOKEN

    urls = [s.url for s in servers]
    routers = [start_router(router_config(urls, policy="locality", cloud=c, name=f"router-{c}"))
               for c in ("aws", "gcp")]
    with httpx.Client(timeout=5) as client:
        for r in routers:
            for _ in range(3):
                assert client.post(f"{r.url}/v1/predict", json=BODY).status_code == 200
    view = EntryRouters([r.url for r in routers] + [f"http://127.0.0.1:{free_port()}"], TOKEN)
    status = view.status()
    assert sorted(status["routers"]) == ["router-aws", "router-gcp"]
    rows = {t["name"]: t for t in status["targets"]}
    assert rows["aws"]["requests"] == 3 and rows["gcp"]["requests"] == 3 and rows["aws"]["healthy"]
    routers[0].set_targets(routers[0].cfg.targets[:2])  # an event on one router
    events = view.events()
    assert any(e["kind"] == "targets_reloaded" and e["router"] == "router-aws" for e in events)
    assert [float(e["ts"]) for e in events] == sorted(float(e["ts"]) for e in events)
