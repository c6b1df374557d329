"""``packaging.model_source: fetch``: the rendered pod gets what it needs to pull its bundle
(storage settings without secrets, egress to the store, room for the bundle), and cases that
cannot work are refused before anything is built or applied."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import StorageConfig, parse_config
from orchestrator.errors import ConfigError
from orchestrator.kube.render import (
    FetchSource,
    ReleaseValues,
    fetch_sources,
    render_release,
)

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mco/digits@sha256:" + "a" * 64
MODEL = "b" * 64
MCO = [sys.executable, "-m", "orchestrator.cli.main"]


def _config(storage: dict, *, provider: str = "aws", secret: str | None = None, cluster: dict | None = None):
    cluster = cluster or {"context": "eks-prod"}
    if secret:
        cluster = {**cluster, "fetch_credentials_secret": secret}
    return parse_config({"packaging": {"model_source": "fetch"},
                         "clouds": {"aws": {"provider": provider, "storage": storage, "cluster": cluster}}})


def _render(fetch: FetchSource | None, overlay: str = "aws") -> dict[str, dict]:
    objs = render_release(overlay, ReleaseValues(image=IMAGE, model_digest=MODEL, fetch=fetch))
    return {o["kind"]: o for o in objs}


def _env(deployment: dict) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def test_a_fetch_mode_pod_gets_storage_settings_egress_and_room_for_the_bundle():
    cfg = _config({"bucket": "mco-models", "region": "us-east-1", "prefix": "prod"}, secret="mco-store-creds")
    fetch = fetch_sources(cfg, ["aws"], bundle_bytes=300 << 20)["aws"]
    objs = _render(fetch)
    env = _env(objs["Deployment"])
    assert env["MCO_MODEL_SOURCE"] == "fetch" and env["MCO_MODEL_DIGEST"] == f"sha256:{MODEL}"
    spec = json.loads(env["MCO_STORAGE"])
    # exactly what the image's startup code parses (orchestrator/packaging/startup.py)
    assert spec["provider"] == "aws" and spec["cloud"] == "aws"
    assert StorageConfig.model_validate(spec["storage"]) == cfg.clouds["aws"].storage
    (container,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "mco-store-creds"}}]  # credentials by reference only
    egress_ports = [p["port"] for rule in objs["NetworkPolicy"]["spec"]["egress"] for p in rule["ports"]]
    assert 443 in egress_ports and 53 in egress_ports
    (tmp,) = [v for v in objs["Deployment"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp"]
    assert tmp["emptyDir"]["sizeLimit"] == f"{64 + 600}Mi"  # twice the bundle while it moves, plus 64 Mi


def test_a_store_endpoint_sets_the_egress_port():
    cfg = _config({"bucket": "b", "endpoint": "https://minio.storage.svc:9000"})
    objs = _render(fetch_sources(cfg, ["aws"], bundle_bytes=1000)["aws"])
    egress_ports = [p["port"] for rule in objs["NetworkPolicy"]["spec"]["egress"] for p in rule["ports"]]
    assert 9000 in egress_ports and 443 not in egress_ports


def test_a_baked_pod_keeps_dns_only_egress_and_a_small_tmp():
    objs = _render(None)
    egress_ports = [p["port"] for rule in objs["NetworkPolicy"]["spec"]["egress"] for p in rule["ports"]]
    assert set(egress_ports) == {53}
    assert "MCO_STORAGE" not in _env(objs["Deployment"])


@pytest.mark.parametrize(("storage", "provider", "said"), [
    ({"bucket": "b", "endpoint": "http://127.0.0.1:9000", "credentials": "emulator"}, "aws", "loopback"),
    ({"bucket": "b", "endpoint": "http://localhost:4443"}, "gcp", "loopback"),
    ({"bucket": "/tmp/store"}, "local", "directory on this machine"),
    # every way of naming this machine, not only the two spellings mco's own emulators use
    ({"bucket": "b", "endpoint": "http://127.0.0.2:9000"}, "aws", "loopback"),
    ({"bucket": "b", "endpoint": "http://[::1]:9000"}, "aws", "loopback"),
    ({"bucket": "b", "endpoint": "http://LOCALHOST:9000"}, "aws", "loopback"),
    ({"bucket": "b", "endpoint": "http://0.0.0.0:9000"}, "aws", "loopback"),
])
def test_cases_that_cannot_work_are_refused_with_a_message(storage, provider, said):
    cfg = _config(storage, provider=provider)
    with pytest.raises(ConfigError, match=said):
        fetch_sources(cfg, ["aws"], bundle_bytes=1)


def test_a_cloud_without_storage_is_refused():
    cfg = parse_config({"packaging": {"model_source": "fetch"},
                        "clouds": {"aws": {"provider": "aws", "cluster": {"context": "eks"}}}})
    with pytest.raises(ConfigError, match="no storage section"):
        fetch_sources(cfg, ["aws"], bundle_bytes=1)


def test_mco_deploy_refuses_an_unreachable_store_before_building(tmp_path, digits_bundle):
    (tmp_path / "mco.yaml").write_text(
        "packaging: {model_source: fetch}\n"
        "clouds:\n  aws:\n    provider: aws\n"
        "    storage: {bucket: b, endpoint: 'http://127.0.0.1:9000', credentials: emulator}\n"
        "    cluster: {context: kind-mco-aws, kind_cluster: mco-aws}\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    proc = subprocess.run([*MCO, "deploy", str(digits_bundle.path), "--config", "mco.yaml", "--output", "json"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env, check=False)
    assert proc.returncode == 2, proc.stderr
    payload = json.loads(proc.stdout.strip().splitlines()[-1])
    assert payload["kind"] == "ConfigError" and "cannot reach it" in payload["error"]
    assert "baked" in payload["hint"]


@pytest.mark.parametrize("endpoint", ["http://172.18.0.1:45000", "http://10.96.0.20:9000", "http://minio.storage.svc:9000"])
def test_a_store_the_cluster_can_reach_is_accepted(endpoint):
    """An emulator on the kind network's gateway, a Service address or name: not this machine's
    loopback, so the pod may reach it (the e2e test tests/e2e/deploy/test_fetch_mode_kind.py does)."""
    cfg = _config({"bucket": "b", "endpoint": endpoint}, secret="store-creds")
    fetch = fetch_sources(cfg, ["aws"], bundle_bytes=1000)["aws"]
    assert json.loads(fetch.storage_json())["storage"]["endpoint"] == endpoint


def test_a_fetch_mode_pod_has_until_its_bundle_is_pulled_before_liveness_counts():
    """The server answers nothing while it pulls; the startup probe holds liveness back for the
    pull of the whole bundle at a slow rate, so a large bundle is not restarted mid-pull."""
    cfg = _config({"bucket": "b", "region": "us-east-1"})
    small, large = (_render(fetch_sources(cfg, ["aws"], bundle_bytes=n)["aws"], overlay=overlay)["Deployment"]
                    for n, overlay in ((1000, "kind"), (2 << 30, "aws")))
    budgets = []
    for dep in (small, large):
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        probe = container["startupProbe"]
        assert probe["httpGet"] == container["livenessProbe"]["httpGet"]  # the same check, held back
        budgets.append(probe["periodSeconds"] * probe["failureThreshold"])
    liveness = small["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert budgets[0] >= 60 > liveness["periodSeconds"] * liveness["failureThreshold"]
    assert budgets[1] >= 60 + 2048 / 8  # 2 GiB at 8 MiB/s


def test_a_baked_pod_has_no_startup_probe():
    (container,) = _render(None)["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert "startupProbe" not in container


@pytest.mark.parametrize("provider,endpoints", [
    ("aws", {("169.254.170.23/32", 80)}),
    ("gcp", {("169.254.169.254/32", 80), ("169.254.169.252/32", 988)}),
    ("azure", {("169.254.169.254/32", 80)}),
])
def test_a_pod_identity_reaches_its_token_endpoint_and_nothing_more(provider, endpoints):
    """Without a credentials Secret the pod's identity supplies them: egress opens to the
    provider's own token endpoint only (an address block and port), never to any address."""
    def identity_rules(cfg) -> set[tuple[str, int]]:
        objs = _render(fetch_sources(cfg, ["aws"], bundle_bytes=1000)["aws"], overlay=provider)
        rules = [r for r in objs["NetworkPolicy"]["spec"]["egress"] if "to" in r]
        assert all(len(r["to"]) == 1 and set(r["to"][0]) == {"ipBlock"} for r in rules), rules
        return {(r["to"][0]["ipBlock"]["cidr"], p["port"]) for r in rules for p in r["ports"]
                if any("ipBlock" in peer for peer in r["to"])}

    storage = {"bucket": "mco-models"}
    assert endpoints <= identity_rules(_config(storage, provider=provider))
    with_secret = identity_rules(_config(storage, provider=provider, secret="mco-store-creds"))
    assert not (endpoints & with_secret)
