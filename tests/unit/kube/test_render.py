"""Rendering: base + overlay + release values, checked against the manifests on disk."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import ConfigError
from orchestrator.kube.render import (
    OVERLAYS,
    ReleaseValues,
    build_kustomization,
    default_manifests_dir,
    dump_yaml,
    overlay_for,
    render_release,
    sort_for_apply,
    sort_for_delete,
)

IMAGE = "127.0.0.1:5001/mco/digits@sha256:" + "a" * 64
MODEL = "b" * 64


def _values(**kw: object) -> ReleaseValues:
    base: dict[str, object] = {"image": IMAGE, "model_digest": MODEL}
    base.update(kw)
    return ReleaseValues(**base)  # type: ignore[arg-type]


def _by_kind(objs: list[dict]) -> dict[str, dict]:
    return {o["kind"]: o for o in objs}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_the_seven_base_kinds_namespace_first_deployment_last(overlay: str) -> None:
    objs = render_release(overlay, _values())
    kinds = [o["kind"] for o in objs]
    assert sorted(kinds) == sorted(["Namespace", "ServiceAccount", "Deployment", "Service",
                                    "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"])
    assert kinds[0] == "Namespace"
    assert kinds[-1] == "Deployment"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_hardened_and_probe_the_model_server(overlay: str) -> None:
    dep = _by_kind(render_release(overlay, _values(run_as_user=10001)))["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    (container,) = pod["containers"]
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] is True
    assert sec["allowPrivilegeEscalation"] is False
    assert sec["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_release_values_land_where_they_belong() -> None:
    objs = render_release("aws", _values(replicas=3, namespace="models", cloud="aws", release=7))
    kinds = _by_kind(objs)
    dep = kinds["Deployment"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert {"name": "MCO_MODEL_DIGEST", "value": "sha256:" + MODEL} in container["env"]
    assert dep["spec"]["template"]["metadata"]["annotations"]["mco.dev/model-digest"] == MODEL
    assert dep["metadata"]["annotations"]["mco.dev/release"] == "7"
    # The release number must not touch the pod template: a no-op redeploy must not roll pods.
    assert "mco.dev/release" not in dep["spec"]["template"]["metadata"].get("annotations", {})
    assert dep["spec"]["replicas"] == 3
    assert kinds["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    assert kinds["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == 9
    assert kinds["Namespace"]["metadata"]["name"] == "models"
    assert all(o["metadata"]["namespace"] == "models" for o in objs if o["kind"] != "Namespace")
    # selectors are immutable: the cloud label goes on metadata, never into the selector
    assert "mco.dev/cloud" not in dep["spec"]["selector"]["matchLabels"]
    assert dep["spec"]["template"]["metadata"]["labels"]["mco.dev/cloud"] == "aws"


def test_overlays_differ_where_clouds_differ() -> None:
    svc = {ov: _by_kind(render_release(ov, _values(node_port=30123)))["Service"] for ov in OVERLAYS}
    assert svc["aws"]["spec"]["type"] == "LoadBalancer"
    assert "service.beta.kubernetes.io/aws-load-balancer-type" in svc["aws"]["metadata"]["annotations"]
    assert any(k.startswith("cloud.google.com/") for k in svc["gcp"]["metadata"]["annotations"])
    assert any("azure" in k for k in svc["azure"]["metadata"]["annotations"])
    assert svc["kind"]["spec"]["type"] == "NodePort"
    assert svc["kind"]["spec"]["ports"][0]["nodePort"] == 30123
    deps = {ov: _by_kind(render_release(ov, _values()))["Deployment"] for ov in OVERLAYS}
    selectors = {ov: json.dumps(d["spec"]["template"]["spec"]["nodeSelector"], sort_keys=True) for ov, d in deps.items()}
    assert len(set(selectors.values())) == 4
    kind_container = deps["kind"]["spec"]["template"]["spec"]["containers"][0]
    assert kind_container["imagePullPolicy"] == "Never"
    assert kind_container["resources"]["requests"]["cpu"] == "50m"


def test_kind_without_node_port_lets_the_cluster_choose() -> None:
    svc = _by_kind(render_release("kind", _values()))["Service"]
    assert "nodePort" not in svc["spec"]["ports"][0]


@pytest.mark.parametrize("image", ["registry/mco/digits:latest", "registry/mco/digits", "sha256:abc",
                                   "registry/mco/digits@sha256:" + "A" * 64])
def test_a_mutable_or_malformed_image_reference_is_refused(image: str) -> None:
    with pytest.raises(ConfigError, match="not pinned by digest"):
        _values(image=image)


def test_image_id_from_kind_load_is_accepted() -> None:
    dep = _by_kind(render_release("kind", _values(image="sha256:" + "c" * 64)))["Deployment"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "sha256:" + "c" * 64


@pytest.mark.parametrize("kw,msg", [({"model_digest": "xyz"}, "sha256 hex"), ({"replicas": 0}, "at least 1"),
                                    ({"node_port": 80}, "NodePort range"), ({"namespace": "Bad_NS"}, "not a valid")])
def test_bad_release_values_name_the_problem(kw: dict, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        _values(**kw)


def test_unknown_overlay_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown overlay 'ibm'") as info:
        render_release("ibm", _values())
    assert "aws, gcp, azure, kind" in str(info.value)


def test_render_returns_fresh_objects() -> None:
    first = render_release("gcp", _values())
    first[0]["metadata"]["name"] = "changed"
    assert render_release("gcp", _values())[0]["metadata"]["name"] == "mco"


def test_sorting_puts_namespaces_first_and_reverses_for_delete() -> None:
    objs = [{"kind": k, "metadata": {"name": k.lower()}} for k in ("Deployment", "Service", "Namespace", "Widget")]
    assert [o["kind"] for o in sort_for_apply(objs)] == ["Namespace", "Service", "Widget", "Deployment"]
    assert [o["kind"] for o in sort_for_delete(objs)] == ["Deployment", "Widget", "Service", "Namespace"]


def test_dump_yaml_round_trips() -> None:
    objs = render_release("azure", _values())
    assert list(yaml.safe_load_all(dump_yaml(objs))) == objs


def test_overlay_for_picks_kind_for_kind_clusters() -> None:
    from orchestrator.config import CloudConfig

    assert overlay_for(CloudConfig(provider="gcp")) == "gcp"
    kind = CloudConfig.model_validate({"provider": "aws", "cluster": {"context": "kind-mco-aws", "kind_cluster": "mco-aws"}})
    assert overlay_for(kind) == "kind"


def test_unsupported_kustomize_features_are_errors_not_ignored(tmp_path: Path) -> None:
    root = tmp_path / "manifests"
    shutil.copytree(default_manifests_dir(), root)
    kfile = root / "overlays" / "gcp" / "kustomization.yaml"
    kfile.write_text(kfile.read_text() + "namePrefix: prod-\n")
    with pytest.raises(ConfigError, match=r"unsupported kustomization key.*namePrefix"):
        render_release("gcp", _values(), manifests_dir=root)


def test_a_patch_for_a_missing_object_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "manifests"
    shutil.copytree(default_manifests_dir(), root)
    patch = root / "overlays" / "aws" / "service.yaml"
    patch.write_text(patch.read_text().replace("name: mco-model", "name: mco-modle"))
    with pytest.raises(ConfigError, match="Service/mco-modle, which no resource defines"):
        render_release("aws", _values(), manifests_dir=root)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed; mco's renderer does not need it")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_our_kustomize_subset_builds_what_kubectl_kustomize_builds(overlay: str) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(default_manifests_dir() / "overlays" / overlay)],
                         capture_output=True, text=True, check=True).stdout
    theirs = sorted(json.dumps(o, sort_keys=True) for o in yaml.safe_load_all(out))
    ours = sorted(json.dumps(o, sort_keys=True) for o in build_kustomization(default_manifests_dir() / "overlays" / overlay))
    assert ours == theirs
