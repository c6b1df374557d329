"""The control plane's side of the Rust data plane (router/rust.py), without the binary:
the table it hands over, the reports it folds in, and how a missing binary is said."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from orchestrator.config import RouterConfig, RouterTargetConfig
from orchestrator.errors import ConfigError, NotBuiltError
from orchestrator.router.rust import CRATE, RustLink, binary_key, check_supported, dataplane_table, find_binary
from orchestrator.router.state import Router


def _router(policy: str = "failover", weights: tuple[int, int, int] = (1, 1, 1),
            priorities: tuple[int, int, int] = (0, 1, 2)) -> Router:
    targets = [RouterTargetConfig(name=n, url=f"http://127.0.0.1:900{i}", priority=p, weight=w)
               for i, (n, w, p) in enumerate(zip(("aws", "gcp", "azure"), weights, priorities))]
    return Router(RouterConfig(policy=policy, targets=targets), token="t")


def test_the_table_carries_the_policys_order_and_the_settings() -> None:
    router = _router()
    table = dataplane_table(router)
    assert (table["order"], table["pick"], table["among"], table["all_down"]) == (["aws", "gcp", "azure"], "first",
                                                                                   [], False)
    assert table["settings"]["retry_allow"][0] == "POST /v1/predict"
    assert table["settings"]["max_headers"] == 100 and table["settings"]["deadline_s"] == router.cfg.retries.deadline
    # equal top priorities share by weight: the data plane draws the first among them
    shared = dataplane_table(_router(weights=(3, 1, 1), priorities=(0, 0, 1)))
    assert (shared["pick"], shared["among"]) == ("weighted", ["aws", "gcp"])
    assert dataplane_table(_router("latency"))["pick"] == "p2c"
    # an unhealthy target leaves the order; with none healthy, every target by priority (panic)
    router.balancer.sink("active").set_status("aws", False)
    assert dataplane_table(router)["order"] == ["gcp", "azure"]
    for name in ("gcp", "azure"):
        router.balancer.sink("active").set_status(name, False)
    panic = dataplane_table(router)
    assert panic["all_down"] and panic["order"] == ["aws", "gcp", "azure"]


def _report(runs: list[list[object]], **extra: object) -> bytes:
    aws = {"counts": {"40": 2}, "requests": 2 + sum(int(n) for k, n in runs if k != "ok"), "latency_sum_s": 0.004,
           "bytes_out": 200, "bytes_in": 100, "responses_4xx": 0, "retries": 0, "hedges": 0,
           "errors": {"connect": sum(int(n) for k, n in runs if k == "connect")}, "runs": runs, "ewma_s": 0.002}
    return json.dumps({"version": 0, "targets": {"aws": aws}, "overall": {}, "client_errors": {"shed_lag": 1},
                       **extra}).encode()


def test_reports_feed_stats_and_outlier_detection_in_order() -> None:
    async def run() -> None:
        router = _router()
        link = RustLink(router)
        assert link.handle(b"wrong", _report([["ok", 2]]))[0] == 401
        status, _, body = link.handle(link.secret.encode(), _report([["ok", 2]]))
        assert status == 200 and json.loads(body)["table"]["order"] == ["aws", "gcp", "azure"]
        aws = router.balancer.targets["aws"].stats
        assert (aws.requests, aws.bytes_out, aws.counts[40], aws.ewma_s) == (2, 200, 2, 0.002)
        assert router.client_errors["shed_lag"] == 1
        # two failures, a success, two failures: no run of 3 (the default threshold)
        link.handle(link.secret.encode(), _report([["connect", 2], ["ok", 1], ["connect", 2]]))
        assert router.balancer.targets["aws"].healthy
        # the table the data plane has is current: no table in the answer
        _, _, body = link.handle(link.secret.encode(), json.dumps({"version": link.version}).encode())
        assert json.loads(body)["table"] is None
        _, _, body = link.handle(link.secret.encode(), _report([["connect", 1]]))  # the third in a row
        assert not router.balancer.targets["aws"].healthy
        assert json.loads(body)["table"]["order"] == ["gcp", "azure"]
        assert [e.kind for e in router.events.since(0)][:2] == ["ejection", "failover"]
        router.passive.stop()

    asyncio.run(run())


def test_the_cache_key_is_the_build_scripts(tmp_path: Path) -> None:
    script = CRATE / "build.sh"
    key = subprocess.run(["bash", "-c", 'cd "$1" && LC_ALL=C cat Cargo.lock Cargo.toml $(LC_ALL=C ls src/*.rs) '
                          "| sha256sum | cut -c1-12", "_", str(CRATE)], capture_output=True, text=True, check=True)
    assert key.stdout.strip() == binary_key() and "sha256sum | cut -c1-12" in script.read_text()


def test_a_missing_binary_is_a_typed_error_naming_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MCO_DATAPLANE_BIN", raising=False)
    monkeypatch.setenv("MCO_CACHE", str(tmp_path))
    with pytest.raises(NotBuiltError) as err:
        find_binary()
    assert "56-dataplane-rs.sh" in (err.value.hint or "") and err.value.exit_code == 2
    monkeypatch.setenv("MCO_DATAPLANE_BIN", str(tmp_path / "nope"))
    with pytest.raises(NotBuiltError):
        find_binary()


def test_what_the_rust_data_plane_cannot_do_is_said_up_front() -> None:
    https = RouterConfig(targets=[RouterTargetConfig(name="aws", url="https://example.com")])
    with pytest.raises(ConfigError, match="plain HTTP only"):
        check_supported(https)
    with pytest.raises(ConfigError, match="workers"):
        check_supported(RouterConfig(workers=2))
    with pytest.raises(ConfigError, match="hop rule"):  # a router in a cloud must not spill what another sent
        check_supported(RouterConfig(cloud="aws"))


def test_the_long_poll_answers_when_the_candidates_change() -> None:
    async def run() -> None:
        router = _router()
        router.loop = asyncio.get_running_loop()
        link = RustLink(router)
        secret = link.secret.encode()
        _, _, body = await link.watch(secret, 0)  # the data plane has nothing yet: at once
        version = json.loads(body)["version"]
        _, _, body = await link.watch(secret, version, hold_s=0.05)  # nothing changed: none
        assert json.loads(body)["table"] is None
        waiting = asyncio.ensure_future(link.watch(secret, version))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        router.balancer.sink("active").set_status("aws", False)  # a failover
        _, _, body = await asyncio.wait_for(waiting, 1.0)
        assert json.loads(body)["table"]["order"] == ["gcp", "azure"]
        assert (await link.watch(b"wrong", 0))[0] == 401

    asyncio.run(run())
