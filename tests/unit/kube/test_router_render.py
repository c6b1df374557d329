"""The router's objects for one cluster: 2 replicas, a PDB, the model's security context, the token
from a Secret, targets = the own model Service in-cluster, then the other clouds."""

from __future__ import annotations

import pytest
import yaml

from orchestrator.config import RouterTargetConfig, parse_config
from orchestrator.errors import ConfigError
from orchestrator.kube.render import ReleaseValues, dump_yaml, render_release
from orchestrator.kube.router import ROUTER_NODE_PORT, RouterValues, render_router

IMAGE = "sha256:" + "c" * 64
MODEL_IMAGE = "sha256:" + "a" * 64
TOKEN = "never-in-a-manifest-0123456789abcdef"


def _model(overlay: str = "kind") -> list[dict]:
    return render_release(overlay, ReleaseValues(image=MODEL_IMAGE, model_digest="b" * 64, cloud="aws",
                                                 node_port=30080 if overlay == "kind" else None))


def _others() -> tuple[RouterTargetConfig, ...]:
    # on kind: the other clusters' nodes on the project's Docker network
    return (RouterTargetConfig(name="gcp", url="http://172.18.0.3:30080", allow_insecure_http=True,
                               pricing_key="gcp/us-central1"),
            RouterTargetConfig(name="azure", url="http://172.18.0.4:30080", allow_insecure_http=True))


def _by_kind(objs: list[dict]) -> dict[str, dict]:
    return {o["kind"]: o for o in objs}


def test_the_router_runs_two_replicas_with_a_pdb_and_the_models_security_context() -> None:
    model = _model()
    objs = _by_kind(render_router(model, RouterValues(image=IMAGE, cloud="aws", remote_targets=_others(),
                                                      node_port=ROUTER_NODE_PORT, pricing_key="aws/us-east-1")))
    dep = objs["Deployment"]
    model_dep = _by_kind(model)["Deployment"]
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod, model_pod = dep["spec"]["template"]["spec"], model_dep["spec"]["template"]["spec"]
    assert pod["securityContext"] == model_pod["securityContext"] and pod["securityContext"]["runAsNonRoot"]
    assert pod["containers"][0]["securityContext"] == model_pod["containers"][0]["securityContext"]
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert objs["PodDisruptionBudget"]["spec"] == {"minAvailable": 1,
                                                   "selector": {"matchLabels": {"app.kubernetes.io/name": "mco-router"}}}
    assert objs["Service"]["spec"]["ports"][0]["nodePort"] == ROUTER_NODE_PORT
    assert all(o["metadata"]["namespace"] == model_dep["metadata"]["namespace"] for o in objs.values())
    # the model's NetworkPolicy already admits pods with the router's label
    model_np = _by_kind(model)["NetworkPolicy"]
    peers = model_np["spec"]["ingress"][0]["from"]
    assert {"app.kubernetes.io/name": "mco-router"} in [p.get("podSelector", {}).get("matchLabels") for p in peers]


def test_targets_are_the_own_model_service_then_the_other_clouds_and_the_token_is_a_secret_ref() -> None:
    objs = render_router(_model(), RouterValues(image=IMAGE, cloud="aws", remote_targets=_others()))
    by = _by_kind(objs)
    text = by["ConfigMap"]["data"]["router.yaml"]
    cfg = parse_config(yaml.safe_load(text)).router  # the config loads as the router would load it
    assert cfg.policy == "locality" and cfg.cloud == "aws"
    assert [t.name for t in cfg.targets] == ["aws", "gcp", "azure"]
    assert cfg.targets[0].url == "http://mco-model.mco.svc.cluster.local:80" and cfg.targets[0].allow_insecure_http
    env = by["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "MCO_ROUTER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mco-router-token",
                                                                               "key": "token"}}}]
    assert "Secret" not in by and TOKEN not in dump_yaml(objs)
    assert by["Service"]["spec"]["type"] == "LoadBalancer"  # without a node port: the clouds' public entry
    # a new config is a new pod template, so the pods pick it up
    other = render_router(_model(), RouterValues(image=IMAGE, cloud="aws", remote_targets=_others()[:1]))
    key = "mco.dev/router-config-sha256"
    assert (_by_kind(other)["Deployment"]["spec"]["template"]["metadata"]["annotations"][key]
            != by["Deployment"]["spec"]["template"]["metadata"]["annotations"][key])


@pytest.mark.parametrize("kw,message", [
    ({"replicas": 1}, "at least 2 replicas"),
    ({"image": "mco/router:latest"}, "not pinned by digest"),
    ({"token_secret": "Bad_Name"}, "valid Secret name"),
])
def test_unsafe_router_values_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RouterValues(**{"image": IMAGE, "cloud": "aws", **kw})


def test_a_plain_http_remote_cloud_must_say_so() -> None:
    with pytest.raises(ValueError, match="allow_insecure_http"):
        RouterTargetConfig(name="gcp", url="http://172.18.0.3:30080")


@pytest.mark.parametrize("overlay", ["aws", "gcp", "azure"])
def test_every_cloud_overlay_gets_a_router(overlay: str) -> None:
    remote = (RouterTargetConfig(name="other", url="https://router.other.example.com"),)
    objs = render_router(_model(overlay), RouterValues(image="r.example/mco/router@sha256:" + "d" * 64,
                                                       cloud=overlay, remote_targets=remote))
    assert {o["kind"] for o in objs} == {"ServiceAccount", "ConfigMap", "Deployment", "PodDisruptionBudget",
                                        "Service", "NetworkPolicy"}
