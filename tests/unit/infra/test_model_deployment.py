"""``ModelDeployment`` applies exactly what ``mco render`` renders, and records the release."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.model.bundle import Bundle
from tests.unit.infra.conftest import StackRun, run_stack

pytestmark = pytest.mark.timeout(300)

KIND_IMAGE = "sha256:" + "ab" * 32
ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mco/digits@sha256:" + "cd" * 32
MCO = str(Path(sys.executable).parent / "mco")


def _mco(*args: str, cwd: Path | None = None) -> Any:
    proc = subprocess.run([MCO, *args, "--output", "json"], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _applied(run: StackRun, component: str, cloud: str) -> list[dict[str, Any]]:
    """The Kubernetes objects Pulumi registered for one cloud, as the provider receives them."""
    objs = []
    for r in run.resources:
        if r.custom and r.typ.startswith("kubernetes:") and r.name.startswith(f"{component}-{cloud}-"):
            objs.append({k: v for k, v in r.inputs.items() if k != "status"})
    return objs


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    # Pulumi's wire format carries numbers as floats (2.0 == 2 in Python).
    return sorted(a, key=_key) == sorted(b, key=_key)


@pytest.fixture
def local_project(tmp_path: Path, kubeconfig_with_kind: Path) -> Path:
    """An mco config like the one `mco local up` writes: three kind clusters."""
    clouds = {}
    for i, cloud in enumerate(("aws", "gcp", "azure")):
        clouds[cloud] = {"provider": cloud, "cluster": {
            "context": f"kind-mco-{cloud}", "kind_cluster": f"mco-{cloud}", "kubeconfig": str(kubeconfig_with_kind),
            "namespace": "mco", "node_port": 30080, "endpoint": f"http://127.0.0.1:{18081 + i}"}}
    path = tmp_path / "mco.local.yaml"
    path.write_text(yaml.safe_dump({"project": {"name": "digits", "state_dir": ".mco"}, "clouds": clouds}))
    return path


def _local_overrides(config: Path, model: Path, image: str = KIND_IMAGE) -> dict[str, Any]:
    return {"mco-infra:mcoConfig": str(config), "mco-infra:deployment": {"model": str(model), "image": image}}


def _record_like_the_provider(run: StackRun) -> int:
    """Do what the Release resource's provider does on create (the mocks do not run providers)."""
    from components.release import record_release

    release = run.one("pulumi-python:dynamic/mco:Release")
    props = {k: v for k, v in release.inputs.items() if k != "__provider"}
    return record_release(props)


def test_local_stack_applies_exactly_what_mco_render_renders(
    digits_bundle: Bundle, local_project: Path,
) -> None:
    run = run_stack("local", _local_overrides(local_project, digits_bundle.path))
    assert run.outputs["release"] == 1
    assert run.outputs["model_digest"] == digits_bundle.digest
    providers = {r.name: r.inputs for r in run.of_type("pulumi:providers:kubernetes")}
    assert {p["context"] for p in providers.values()} == {"kind-mco-aws", "kind-mco-gcp", "kind-mco-azure"}
    assert all(p["enableServerSideApply"] in (True, "true") for p in providers.values())

    # The history is empty: what `mco render` shows now is release-less; Pulumi plans release 1.
    assert _record_like_the_provider(run) == 1

    for cloud in ("aws", "gcp", "azure"):
        applied = _applied(run, "model", cloud)
        assert applied[0]["kind"] == "Namespace"
        rendered = _mco("render", "--cloud", cloud, "--model", str(digits_bundle.path), "--image", KIND_IMAGE,
                        "--config", str(local_project))
        assert rendered["overlay"] == "kind"
        assert _same(applied, rendered["objects"]), f"{cloud}: Pulumi applies something other than `mco render`"
        deployment = next(o for o in applied if o["kind"] == "Deployment")
        assert deployment["metadata"]["annotations"]["mco.dev/release"] == "1"
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == KIND_IMAGE

    history = _mco("history", "--config", str(local_project))
    releases = history["releases"] if isinstance(history, dict) else history
    latest = releases[0]
    assert latest["release"] == 1 and latest["status"] == "deployed"
    assert latest["model_digest"] == digits_bundle.digest
    assert set(latest["clouds"]) == {"aws", "gcp", "azure"}
    assert latest["created_by"].endswith("(pulumi)")
    assert latest["clouds"]["gcp"]["endpoint"] == "http://127.0.0.1:18082"


def test_unchanged_redeploy_keeps_the_release_and_a_new_image_plans_the_next(
    digits_bundle: Bundle, local_project: Path,
) -> None:
    first = run_stack("local", _local_overrides(local_project, digits_bundle.path))
    _record_like_the_provider(first)

    again = run_stack("local", _local_overrides(local_project, digits_bundle.path))
    assert again.outputs["release"] == 1
    assert again.one("pulumi-python:dynamic/mco:Release").inputs == first.one("pulumi-python:dynamic/mco:Release").inputs
    for cloud in ("aws", "gcp", "azure"):
        assert _same(_applied(again, "model", cloud), _applied(first, "model", cloud))

    other_image = "sha256:" + "ef" * 32
    changed = run_stack("local", _local_overrides(local_project, digits_bundle.path, image=other_image))
    assert changed.outputs["release"] == 2
    assert _record_like_the_provider(changed) == 2
    rendered = _mco("render", "--cloud", "aws", "--config", str(local_project))  # values from the history
    assert _same(_applied(changed, "model", "aws"), rendered["objects"])


def test_cloud_stack_deployment_matches_mco_render_for_that_cloud(digits_bundle: Bundle, tmp_path: Path) -> None:
    from tests.unit.infra.conftest import stack_config

    cluster = {**stack_config("aws")["mco-infra:cluster"], "enabled": True, "subnetIds": ["subnet-a", "subnet-b"]}
    run = run_stack("aws", {"mco-infra:cluster": cluster,
                            "mco-infra:deployment": {"model": str(digits_bundle.path), "image": ECR_IMAGE}})
    # No mco config named: nothing to record into, and the objects carry no release number.
    assert not run.of_type("pulumi-python:dynamic/mco:Release")
    applied = _applied(run, "model", "aws")
    rendered = _mco("render", "--cloud", "aws", "--model", str(digits_bundle.path), "--image", ECR_IMAGE, cwd=tmp_path)
    assert rendered["overlay"] == "aws"
    assert _same(applied, rendered["objects"])
    service = next(o for o in applied if o["kind"] == "Service")
    assert service["spec"]["type"] == "LoadBalancer"
    provider_urns = {r.provider for r in run.resources if r.typ.startswith("kubernetes:")}
    assert len(provider_urns) == 1 and "EksCluster" in next(iter(provider_urns))


def test_deployment_without_an_image_is_a_clear_preview_error(digits_bundle: Bundle, local_project: Path) -> None:
    import pulumi

    with pytest.raises(pulumi.RunError, match=r"no image for aws, azure, gcp.*sha256"):
        run_stack("local", {"mco-infra:mcoConfig": str(local_project),
                            "mco-infra:deployment": {"model": str(digits_bundle.path)}}, preview=True)


def test_deployment_with_a_tag_instead_of_a_digest_is_refused(digits_bundle: Bundle) -> None:
    import pulumi

    from tests.unit.infra.conftest import stack_config

    cluster = {**stack_config("aws")["mco-infra:cluster"], "enabled": True, "subnetIds": ["subnet-a", "subnet-b"]}
    deployment = {"model": str(digits_bundle.path), "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mco:latest"}
    with pytest.raises(pulumi.RunError, match="not pinned by digest"):
        run_stack("aws", {"mco-infra:cluster": cluster, "mco-infra:deployment": deployment}, preview=True)


def test_kind_image_by_name_must_exist_locally(digits_bundle: Bundle, local_project: Path) -> None:
    import pulumi

    with pytest.raises(pulumi.RunError, match="deployment image 'mco/no-such-image:0'"):
        run_stack("local", _local_overrides(local_project, digits_bundle.path, image="mco/no-such-image:0"),
                  preview=True)


def test_an_image_given_by_id_is_not_loaded_again(digits_bundle: Bundle, local_project: Path) -> None:
    """`kind load` of a bare ID leaves an unnamed image the kubelet cannot use: only names are loaded."""
    run = run_stack("local", _local_overrides(local_project, digits_bundle.path))
    assert not run.of_type("pulumi-python:dynamic/mco:KindImageLoad")


def test_tampered_bundle_is_refused_before_anything_is_applied(
    digits_bundle: Bundle, local_project: Path, tmp_path: Path,
) -> None:
    import shutil

    import pulumi

    bad = tmp_path / "bad"
    shutil.copytree(digits_bundle.path, bad)
    model = bad / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(pulumi.RunError, match="ModelDeployment 'model'"):
        run_stack("local", _local_overrides(local_project, bad), preview=True)


def test_root_uid_is_an_insecure_setting(digits_bundle: Bundle, local_project: Path) -> None:
    from components._common import InsecureSettingError

    deployment = {"model": str(digits_bundle.path), "image": KIND_IMAGE, "runAsUser": 0}
    with pytest.raises(InsecureSettingError, match="run_as_user"):
        run_stack("local", {"mco-infra:mcoConfig": str(local_project), "mco-infra:deployment": deployment},
                  preview=True)


def test_mco_applier_applies_the_same_objects_without_the_kubernetes_plugin(
    digits_bundle: Bundle, local_project: Path,
) -> None:
    deployment = {"model": str(digits_bundle.path), "image": KIND_IMAGE, "applier": "mco"}
    run = run_stack("local", {"mco-infra:mcoConfig": str(local_project), "mco-infra:deployment": deployment})
    # Nothing needs pulumi_kubernetes: no provider, no per-object resource.
    assert not run.of_type("pulumi:providers:kubernetes")
    assert not [r for r in run.resources if r.typ.startswith("kubernetes:")]
    applies = {r.inputs["cloud"]: r.inputs for r in run.of_type("pulumi-python:dynamic/mco:KubeApply")}
    assert set(applies) == {"aws", "gcp", "azure"}
    assert applies["azure"]["context"] == "kind-mco-azure"
    _record_like_the_provider(run)
    for cloud, props in applies.items():
        rendered = _mco("render", "--cloud", cloud, "--config", str(local_project))
        assert json.loads(props["objects_json"]) == rendered["objects"]
