"""`router.in_cluster` on real clouds: the router image from each cloud's registry pinned by digest,
the other clouds' public HTTPS router entries as remote targets, the token from a Secret, a PDB and
2 replicas, in the aws, gcp and azure overlays; a missing or plain-HTTP entry is refused."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.kube.render import dump_yaml
from orchestrator.releases import routers
from orchestrator.releases.deployer import CloudTarget, DeploySettings, _render
from orchestrator.releases.store import CloudPlan, ReleaseStore

TOKEN = "cloud-router-token-" + "z" * 24
MODEL = "b" * 64
REGISTRIES = {"aws": "123456789012.dkr.ecr.us-east-1.amazonaws.com", "gcp": "us-central1-docker.pkg.dev",
              "azure": "mcoacr.azurecr.io"}
PRICING = {"aws": "aws/us-east-1", "gcp": "gcp/us-central1", "azure": "azure/eastus"}


def _ref(cloud: str, digit: str = "d") -> str:
    return f"{REGISTRIES[cloud]}/mco/mco-router@sha256:{digit * 64}"


def _cfg(**entries: list[str]) -> Any:
    clouds = {c: {"provider": c, "pricing_key": PRICING[c],
                  "registry": {"url": REGISTRIES[c], "repository": "mco"},
                  "cluster": {"context": f"{c}-prod", "endpoint": f"https://model.{c}.example.com"},
                  "router_urls": entries.get(c, [f"https://router.{c}.example.com"])}
              for c in REGISTRIES}
    return parse_config({"clouds": clouds, "router": {"in_cluster": True}})


def _targets(cfg: Any) -> list[CloudTarget]:
    return [CloudTarget(n, c.cluster, n, image_ref=f"{REGISTRIES[n]}/mco/digits@sha256:{'a' * 64}",
                        image_digest="sha256:" + "a" * 64) for n, c in cfg.clouds.items()]


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The Secret goes to each cluster through its API; here it is recorded instead."""
    applied: list[tuple[str, str]] = []
    monkeypatch.setattr(routers, "_token", lambda cfg: TOKEN)
    monkeypatch.setattr(routers, "_apply_secret", lambda t, token: applied.append((t.cloud, token)))
    return applied


def _rendered(cfg: Any, refs: dict[str, str] | None = None) -> dict[str, list[dict]]:
    out, errors = routers.with_routers(cfg, dict(cfg.clouds), _targets(cfg),
                                       router_refs=refs or {c: _ref(c) for c in cfg.clouds})
    assert errors == {}
    return {t.cloud: _render(t, MODEL, DeploySettings(), None, None) for t in out}


def _one(objs: list[dict], kind: str, name: str = "mco-router") -> dict:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"].startswith(name))


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_each_cloud_overlay_runs_the_router_from_its_registry_by_digest(cloud: str, no_cluster: list) -> None:
    objs = _rendered(_cfg())[cloud]
    dep = _one(objs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    image = pod["containers"][0]["image"]
    assert image == _ref(cloud) and image.startswith(REGISTRIES[cloud] + "/") and "@sha256:" in image
    assert ":" not in image.split("@")[0].rsplit("/", 1)[-1], "pinned by digest, never by a tag"
    assert dep["metadata"]["annotations"]["mco.dev/router-image"] == image
    assert dep["spec"]["replicas"] == 2
    assert _one(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert pod["containers"][0]["env"] == [{"name": "MCO_ROUTER_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "mco-router-token", "key": "token"}}}]
    model_pod = _one(objs, "Deployment", "mco-model")["spec"]["template"]["spec"]
    assert pod["securityContext"] == model_pod["securityContext"]
    # the cloud's own overlay shaped the model next to it (its node selector, its load balancer)
    assert model_pod.get("nodeSelector") or cloud != "aws"
    svc = _one(objs, "Service")
    assert svc["spec"]["type"] == "LoadBalancer" and "nodePort" not in svc["spec"]["ports"][0]
    assert TOKEN not in dump_yaml(objs)


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_remote_targets_are_the_other_clouds_public_https_entries(cloud: str, no_cluster: list) -> None:
    objs = _rendered(_cfg())[cloud]
    router = parse_config(yaml.safe_load(_one(objs, "ConfigMap")["data"]["router.yaml"])).router
    own, *remote = router.targets
    assert router.cloud == cloud and router.policy == "locality" and router.dataplane == "python"
    assert own.name == cloud and own.url == "http://mco-model.mco.svc.cluster.local:80"  # inside the cluster
    others = [c for c in REGISTRIES if c != cloud]
    assert [(t.name, t.url) for t in remote] == [(c, f"https://router.{c}.example.com") for c in others]
    assert all(not t.allow_insecure_http and t.health_path == "/readyz/local" for t in remote)
    assert [t.pricing_key for t in remote] == [PRICING[c] for c in others]
    egress = _one(objs, "NetworkPolicy")["spec"]["egress"]
    assert {"port": 443, "protocol": "TCP"} in egress[-1]["ports"]


def test_the_secret_goes_to_every_cluster_and_an_entry_port_is_let_out(no_cluster: list) -> None:
    cfg = _cfg(gcp=["https://router.gcp.example.com:8443"])
    objs = _rendered(cfg)
    assert sorted(no_cluster) == [(c, TOKEN) for c in sorted(REGISTRIES)]
    ports = [p["port"] for p in _one(objs["aws"], "NetworkPolicy")["spec"]["egress"][-1]["ports"]]
    assert 8443 in ports


def test_a_cloud_without_a_public_entry_is_refused_naming_the_key(no_cluster: list) -> None:
    cfg = _cfg(gcp=[])
    with pytest.raises(ConfigError, match=r"clouds\.gcp\.router_urls is empty") as err:
        routers.with_routers(cfg, dict(cfg.clouds), _targets(cfg), router_refs={c: _ref(c) for c in cfg.clouds})
    assert "https://router.gcp.example.com" in (err.value.hint or "")
    assert no_cluster == []  # refused before any cluster was touched


def test_a_plain_http_entry_is_refused_unless_on_loopback(no_cluster: list) -> None:
    with pytest.raises(ConfigError, match="router_urls"):
        _cfg(azure=["http://router.azure.example.com"])
    # a loopback stand-in may be plain HTTP
    cfg = _cfg(azure=["http://127.0.0.1:18088"])
    remote = parse_config(yaml.safe_load(_one(_rendered(cfg)["aws"], "ConfigMap")["data"]["router.yaml"])).router
    assert remote.targets[-1].url == "http://127.0.0.1:18088"
    # and a config built around the schema is still refused by the deploy
    sneaky = cfg.model_copy(deep=True)
    sneaky.clouds["azure"].router_urls[0] = "http://router.azure.example.com"
    with pytest.raises(ConfigError, match=r"clouds\.azure\.router_urls\[0\].*plain HTTP"):
        routers.public_entry(sneaky, "azure")


def test_a_failed_push_fails_that_cloud_only(no_cluster: list) -> None:
    cfg = _cfg()
    refs = {c: _ref(c) for c in ("aws", "azure")}  # gcp's push failed
    out, errors = routers.with_routers(cfg, dict(cfg.clouds), _targets(cfg), router_refs=refs)
    assert set(errors) == {"gcp"}
    assert {t.cloud: t.router is not None for t in out} == {"aws": True, "gcp": False, "azure": True}


def test_the_record_names_the_registry_image_and_a_rollback_source_restores_it(tmp_path, no_cluster: list) -> None:
    cfg = _cfg()
    store = ReleaseStore(tmp_path / "releases.db", "digits")
    for digit in ("1", "2"):
        rendered = _rendered(cfg, {c: _ref(c, digit) for c in cfg.clouds})
        plans = {c: CloudPlan(model_digest=MODEL, image_ref=f"{REGISTRIES[c]}/mco/digits@sha256:{'a' * 64}",
                              image_digest="sha256:" + "a" * 64, overlay=c, replicas=2, manifests=objs)
                 for c, objs in rendered.items()}
        n = store.begin(kind="deploy", model_digest=MODEL, clouds=plans)
        for c in plans:
            store.update_cloud(n, c, status="deployed")
        store.finish(n)
    current = store.current("gcp")
    assert current is not None and current.router_image == _ref("gcp", "2")
    assert current.summary()["router_image"] == _ref("gcp", "2")
    previous = store.previous("gcp", before=current.release)
    assert previous is not None and previous.router_image == _ref("gcp", "1")  # what `mco rollback` re-applies
    store.close()
