"""`router.in_cluster`: each cloud's deploy target gets the router, its remote targets are the other
kind nodes; clusters that pull need a registry (and public HTTPS entries: test_cloud_routers.py)."""

from __future__ import annotations

import pytest

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.releases import routers
from orchestrator.releases.deployer import CloudTarget, DeploySettings, _render

ROUTER_IMAGE = "sha256:" + "7" * 64


def _cfg(in_cluster: bool = True, provider_cluster: dict | None = None) -> object:
    clouds = {c: {"provider": c, "pricing_key": k,
                  "cluster": provider_cluster or {"context": f"kind-mco-{c}", "kind_cluster": f"mco-{c}",
                                                  "node_port": 30080, "endpoint": "http://127.0.0.1:1808" + str(i)}}
              for i, (c, k) in enumerate((("aws", "aws/us-east-1"), ("gcp", "gcp/us-central1")))}
    return parse_config({"clouds": clouds, "router": {"in_cluster": in_cluster,
                                                      "retries": {"per_try_timeout_s": 1.5}}})


def _targets(cfg) -> list[CloudTarget]:  # type: ignore[no-untyped-def]
    return [CloudTarget(n, c.cluster, "kind", image_ref="sha256:" + "a" * 64) for n, c in cfg.clouds.items()]


def test_every_target_gets_a_router_pointing_at_the_other_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg()
    applied: list[tuple[str, str]] = []
    monkeypatch.setattr(routers, "_token", lambda cfg: "t" * 40)
    monkeypatch.setattr(routers, "_apply_secret", lambda t, token: applied.append((t.cloud, token)))
    out, errors = routers.with_routers(cfg, dict(cfg.clouds), _targets(cfg), router_image=ROUTER_IMAGE,
                                       addresses={"aws": "172.18.0.2", "gcp": "172.18.0.3"})
    assert errors == {} and [c for c, _ in applied] == ["aws", "gcp"]
    aws = next(t for t in out if t.cloud == "aws")
    assert aws.router is not None and aws.router.image == ROUTER_IMAGE and aws.router.replicas == 2
    assert [(r.name, r.url) for r in aws.router.remote_targets] == [("gcp", "http://172.18.0.3:30080")]
    objs = _render(aws, "b" * 64, DeploySettings(), None, None)
    config = next(o for o in objs if o["kind"] == "ConfigMap")["data"]["router.yaml"]
    assert "per_try_timeout_s: 1.5" in config and "t" * 40 not in config  # timings carry over; the token never


def test_off_by_default_and_a_cloud_cluster_needs_a_registry_and_a_public_entry() -> None:
    cfg = _cfg(in_cluster=False)
    targets = _targets(cfg)
    assert routers.with_routers(cfg, dict(cfg.clouds), targets) == (targets, {})
    # a cluster that pulls its images (not kind): refused, before any build, without a registry...
    eks = _cfg(provider_cluster={"context": "eks", "endpoint": "https://model.example.com"})
    with pytest.raises(ConfigError, match="cloud 'aws' has no registry for the router image") as err:
        routers.with_routers(eks, dict(eks.clouds), _targets(eks))
    assert "clouds.aws.registry" in (err.value.hint or "")
    # ...and without the other clouds' public router entries (tests/unit/releases/test_cloud_routers.py)


def test_the_token_secret_holds_the_token_base64_and_nothing_else() -> None:
    secret = routers.token_secret("mco", "s3cret-token")
    assert secret["data"] == {"token": "czNjcmV0LXRva2Vu"} and secret["metadata"]["name"] == "mco-router-token"


def test_a_new_token_rolls_the_router_pods_without_the_token_in_the_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.kube.router import ANNOTATION_TOKEN

    cfg = _cfg()
    monkeypatch.setattr(routers, "_apply_secret", lambda t, token: None)

    def template(token: str) -> dict:
        monkeypatch.setattr(routers, "_token", lambda cfg: token)
        out, _ = routers.with_routers(cfg, dict(cfg.clouds), _targets(cfg), router_image=ROUTER_IMAGE,
                                      addresses={"aws": "172.18.0.2", "gcp": "172.18.0.3"})
        objs = _render(out[0], "b" * 64, DeploySettings(), None, None)
        assert token not in str(objs)
        dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "mco-router")
        return dict(dep["spec"]["template"]["metadata"]["annotations"])

    first, same, other = template("k7" * 20), template("k7" * 20), template("q3" * 20)
    assert first == same  # the same token: the same pods
    assert first[ANNOTATION_TOKEN] != other[ANNOTATION_TOKEN]  # a new token: new pods, which read it
