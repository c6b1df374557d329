"""Model servers are reachable only through mco's routers: the cloud load balancers are internal
(or public and limited to configured ranges), and the NetworkPolicy admits router pods and the
configured ingress ranges only."""

from __future__ import annotations

import shutil

import pytest

from orchestrator.config import parse_config
from orchestrator.errors import ConfigError
from orchestrator.kube.render import (
    ReleaseValues,
    default_manifests_dir,
    render_release,
)

IMAGE = "reg.example/mco/digits@sha256:" + "a" * 64
MODEL = "b" * 64
INTERNAL = {
    "aws": ("service.beta.kubernetes.io/aws-load-balancer-scheme", "internal"),
    "gcp": ("networking.gke.io/load-balancer-type", "Internal"),
    "azure": ("service.beta.kubernetes.io/azure-load-balancer-internal", "true"),
}
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


def _objs(overlay: str, **values: object) -> dict[str, dict]:
    objs = render_release(overlay, ReleaseValues(image=IMAGE, model_digest=MODEL, **values))  # type: ignore[arg-type]
    return {o["kind"]: o for o in objs}


def _sources(policy: dict) -> tuple[list[str], list[dict]]:
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    cidrs = [p["ipBlock"]["cidr"] for p in rule["from"] if "ipBlock" in p]
    pods = [p for p in rule["from"] if "podSelector" in p]
    return cidrs, pods


@pytest.mark.parametrize("cloud", sorted(INTERNAL))
def test_cloud_load_balancers_are_internal_by_default(cloud):
    service = _objs(cloud)["Service"]
    key, value = INTERNAL[cloud]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["metadata"]["annotations"][key] == value
    assert "loadBalancerSourceRanges" not in service["spec"]


@pytest.mark.parametrize("cloud", sorted(INTERNAL))
def test_source_ranges_from_config_make_a_limited_public_load_balancer(cloud):
    cfg = parse_config({"clouds": {cloud: {"provider": cloud, "cluster": {
        "context": "c", "load_balancer_source_ranges": ["203.0.113.0/24"]}}}})
    ranges = tuple(cfg.clouds[cloud].cluster.load_balancer_source_ranges)
    service = _objs(cloud, load_balancer_source_ranges=ranges)["Service"]
    assert service["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    key, value = INTERNAL[cloud]
    assert service["metadata"]["annotations"].get(key) != value


@pytest.mark.parametrize("overlay", ["aws", "gcp", "azure", "kind"])
def test_the_network_policy_admits_routers_and_private_ranges_only(overlay):
    cidrs, pods = _sources(_objs(overlay)["NetworkPolicy"])
    assert cidrs == PRIVATE and "0.0.0.0/0" not in cidrs
    assert pods == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "mco-router"}}}]


def test_ingress_cidrs_from_config_replace_the_private_ranges():
    cidrs, pods = _sources(_objs("aws", ingress_cidrs=("10.20.0.0/16",))["NetworkPolicy"])
    assert cidrs == ["10.20.0.0/16"] and len(pods) == 1


@pytest.mark.parametrize("key", ["ingress_cidrs", "load_balancer_source_ranges"])
def test_a_bad_range_is_a_config_error(key):
    with pytest.raises(ConfigError, match=f"cluster.{key}"):
        parse_config({"clouds": {"aws": {"provider": "aws", "cluster": {"context": "c", key: ["10.0.0.0/33"]}}}})


def test_a_public_load_balancer_without_ranges_is_refused(tmp_path):
    manifests = tmp_path / "manifests"
    shutil.copytree(default_manifests_dir(), manifests)
    service = manifests / "overlays" / "aws" / "service.yaml"
    service.write_text(service.read_text().replace("aws-load-balancer-scheme: internal",
                                                   "aws-load-balancer-scheme: internet-facing"))
    with pytest.raises(ConfigError, match="open to anyone"):
        render_release("aws", ReleaseValues(image=IMAGE, model_digest=MODEL), manifests_dir=manifests)
    objs = render_release("aws", ReleaseValues(image=IMAGE, model_digest=MODEL,
                                               load_balancer_source_ranges=("198.51.100.7/32",)),
                          manifests_dir=manifests)
    (svc,) = [o for o in objs if o["kind"] == "Service"]
    assert svc["spec"]["loadBalancerSourceRanges"] == ["198.51.100.7/32"]
