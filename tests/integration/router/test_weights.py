"""Traffic shares through the admin API: what a waves deploy moves, on a real router."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from orchestrator.config import RouterRetryConfig
from tests.integration.router.conftest import TOKEN, router_config

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CALM = {"retries": RouterRetryConfig(per_try_timeout_s=2.0, connect_timeout_s=2.0, hedge=False)}
ROW = {"instances": [[0.0] * 64]}


def _shares(client: httpx.Client, url: str, n: int) -> Counter[str]:
    return Counter(client.post(url + "/v1/predict", json=ROW).headers["x-mco-cloud"] for _ in range(n))


@pytest.mark.timeout(120)
def test_a_clouds_share_moves_in_steps_and_the_release_label_follows(servers, start_router) -> None:
    cfg = router_config([s.url for s in servers], policy="weighted", **CALM)
    cfg = cfg.model_copy(update={"targets": [t.model_copy(update={"weight": 100}) for t in cfg.targets]})
    router = start_router(cfg)
    with httpx.Client(timeout=10) as client:
        put = lambda body: client.put(router.url + "/admin/weights", json=body, headers=AUTH)  # noqa: E731
        before = client.get(router.url + "/admin/weights", headers=AUTH).json()
        assert before["weights"] == {"aws": 100, "gcp": 100, "azure": 100} and before["policy"] == "weighted"
        resp = put({"weights": {"aws": 0}, "releases": {"aws": "2", "gcp": "1", "azure": "1"}})
        assert resp.status_code == 200 and resp.json()["releases"]["aws"] == "2"
        assert _shares(client, router.url, 200)["aws"] == 0
        put({"weights": {"aws": 10}})
        share = _shares(client, router.url, 630)["aws"] / 630
        assert 0.01 < share < 0.12  # 10 of 210: 4.8 %
        put({"weights": {"aws": 100}})
        share = _shares(client, router.url, 300)["aws"] / 300
        assert 0.2 < share < 0.48
        live = client.get(router.url + "/admin/live", headers=AUTH).json()
        assert {(g["cloud"], g["release"]) for g in live["groups"]} == {("aws", "2"), ("gcp", "1"), ("azure", "1")}
        status = client.get(router.url + "/admin/status", headers=AUTH).json()
        assert sum(t["requests"] for t in status["targets"]) >= 1130  # stats survived the weight changes
        events = client.get(router.url + "/admin/events", headers=AUTH).json()["events"]
        changed = [e for e in events if e["kind"] == "weights_changed"]
        assert [e["detail"]["weights"]["aws"] for e in changed] == [0, 10, 100]
        for bad in ({"weights": {"oracle": 1}}, {"weights": {"aws": -1}}, {"weights": {"aws": 1.5}},
                    {"weights": {"aws": True}}, {"releases": {"aws": ""}}, {}, {"other": 1}, []):
            resp = put(bad)
            assert resp.status_code == 400, (bad, resp.text)
        assert "oracle" in put({"weights": {"oracle": 1}}).json()["error"]
        assert client.put(router.url + "/admin/weights", json={"weights": {"aws": 1}}).status_code == 401


@pytest.mark.timeout(120)
def test_a_drained_cloud_gets_no_hedge_and_no_first_retry(proxies, start_router) -> None:
    """A waves deploy drains a cloud (weight 0) while it changes release: hedges, which go to
    the second candidate, must not reach it even when the others are slow enough to be hedged.
    (Before, the rest came by priority, and aws, first by priority, took every hedge.)"""
    cfg = router_config([p.url for p in proxies], policy="weighted",
                        retries=RouterRetryConfig(per_try_timeout_s=2.0, connect_timeout_s=2.0, hedge=True,
                                                  hedge_min_delay_s=0.01))
    cfg = cfg.model_copy(update={"targets": [t.model_copy(update={"weight": 0 if t.name == "aws" else 100})
                                             for t in cfg.targets]})
    router = start_router(cfg)
    for slow in proxies[1:]:
        slow.set_mode("slow", delay=0.05)  # every answer past the hedge delay: each request is hedged
    with httpx.Client(timeout=10) as client:
        answered = _shares(client, router.url, 150)
        status = client.get(router.url + "/admin/status", headers=AUTH).json()
    by_name = {t["name"]: t for t in status["targets"]}
    assert answered["aws"] == 0 and sum(answered.values()) == 150
    assert by_name["aws"]["requests"] == 0, by_name["aws"]
    # hedges fired (past the slow clouds' recent p95), and went to the other slow cloud, not aws
    assert by_name["gcp"]["hedges"] + by_name["azure"]["hedges"] > 0


@pytest.mark.timeout(120)
def test_a_release_label_counts_only_the_model_it_names(servers, start_router) -> None:
    """After a rollout, a kept-alive connection can still reach an old pod: answers from
    another model than the one a release label names are grouped apart, not judged as it."""
    cfg = router_config([s.url for s in servers], policy="weighted", **CALM)
    cfg = cfg.model_copy(update={"targets": [t.model_copy(update={"weight": 100 if t.name == "aws" else 0})
                                             for t in cfg.targets]})
    router = start_router(cfg)
    with httpx.Client(timeout=10) as client:
        put = lambda body: client.put(router.url + "/admin/weights", json=body, headers=AUTH)  # noqa: E731
        live = lambda: {(g["cloud"], g["release"]): g["requests"]  # noqa: E731
                        for g in client.get(router.url + "/admin/live", headers=AUTH).json()["groups"]}
        serving = client.post(router.url + "/v1/predict", json=ROW).json()["model_digest"]
        assert put({"releases": {"aws": "2"}, "models": {"aws": "f" * 64}}).status_code == 200  # not what aws runs
        for _ in range(30):
            assert client.post(router.url + "/v1/predict", json=ROW).status_code == 200
        groups = live()
        assert ("aws", "2") not in groups and groups[("aws", serving[:12])] == 31
        assert put({"models": {"aws": "sha256:" + serving.removeprefix("sha256:")}}).status_code == 200
        groups = live()
        assert groups[("aws", "2")] == 30 and groups[("aws", serving[:12])] == 1  # the one sent before the label
        assert put({"models": {"aws": ""}}).status_code == 400
        assert put({"models": {"oracle": serving}}).status_code == 400
