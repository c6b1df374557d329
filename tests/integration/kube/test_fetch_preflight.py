"""A fetch-mode deploy on a real API server: the Secret its pods take their store credentials
from (``cluster.fetch_credentials_secret``) must exist before anything is applied.

Without it the pods would wait in CreateContainerConfigError; the cloud fails first, naming
the Secret, and the cluster is left as it was. An identity that may not read Secrets is not
judged (the rollout would still name the wait). The node is simulated (conftest.py); the API
server, RBAC, the controllers and everything mco does are real. The same on a kind cluster:
tests/e2e/deploy/test_fetch_mode_kind.py.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import ClusterConfig
from orchestrator.kube.client import KubeClient
from orchestrator.kube.render import FetchSource
from orchestrator.releases.deployer import CloudTarget, DeploySettings, KubeTarget, deploy_release
from orchestrator.releases.lock import DeployLock
from orchestrator.releases.store import ReleaseStore
from tests.integration.kube.conftest import IMAGE_A, MODEL_A, SETTINGS

SECRET = "store-creds"
_ENVS = itertools.count(1)


@pytest.fixture
def env(simulated_cluster: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """One cloud in a namespace of its own (one the simulated node serves), an empty history."""
    n = next(_ENVS)
    cluster = ClusterConfig(context=str(simulated_cluster["context"]), kubeconfig=simulated_cluster["kubeconfig"],
                            namespace=f"flowfetch{n}", fetch_credentials_secret=SECRET)
    store = ReleaseStore(tmp_path / "releases.db", "fetch")
    yield {"cluster": cluster, "store": store, "lock": DeployLock(tmp_path, "fetch"), "apiserver": simulated_cluster}
    store.close()


def _settings(cluster: ClusterConfig) -> DeploySettings:
    fetch = FetchSource(provider="aws", storage={"bucket": "b", "endpoint": "http://172.18.0.1:45000"},
                        bundle_bytes=1 << 20, cloud="aws", credentials_secret=cluster.fetch_credentials_secret)
    return replace(SETTINGS, fetch_sources={"aws": fetch})


def _deploy(env: dict[str, Any]) -> Any:
    target = CloudTarget("aws", env["cluster"], "kind", image_ref=IMAGE_A, image_digest=IMAGE_A)
    return deploy_release(env["store"], env["lock"], [target], model_digest=MODEL_A,
                          settings=_settings(env["cluster"])).release


def _create_secret(cluster: ClusterConfig) -> None:
    with KubeClient.for_cluster(cluster) as client:
        client.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cluster.namespace}},
                     force=True, dry_run=False)
        client.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                      "metadata": {"name": SECRET, "namespace": cluster.namespace},
                      "stringData": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}},
                     force=True, dry_run=False)


def test_without_the_secret_the_cloud_fails_before_anything_is_applied(env: dict[str, Any]) -> None:
    cluster = env["cluster"]
    rel = _deploy(env)
    cloud = rel.clouds["aws"]
    assert rel.status == "failed" and cloud.status == "failed" and cloud.reason == "PreflightFailed", cloud
    assert f"'{SECRET}'" in cloud.detail and f"'{cluster.namespace}'" in cloud.detail
    with KubeClient.for_cluster(cluster) as client:
        assert client.get("apps/v1", "Deployment", "mco-model", cluster.namespace) is None
        assert client.get("v1", "Namespace", cluster.namespace) is None


def test_with_the_secret_the_pods_take_their_environment_from_it(env: dict[str, Any]) -> None:
    cluster = env["cluster"]
    _create_secret(cluster)
    rel = _deploy(env)
    assert rel.status == "deployed", rel.clouds["aws"]
    with KubeClient.for_cluster(cluster) as client:
        dep = client.get("apps/v1", "Deployment", "mco-model", cluster.namespace)
    assert dep is not None
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": SECRET}}]
    assert "k" not in {e.get("value") for e in container["env"]} and "AWS_SECRET_ACCESS_KEY" not in json.dumps(dep)


def test_an_identity_that_may_not_read_secrets_is_not_judged(env: dict[str, Any], tmp_path: Path) -> None:
    """A ServiceAccount with no role: reading the Secret is forbidden (403), so the check is
    skipped rather than failing a deploy the cluster might well run."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    cluster = env["cluster"]
    api = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig),
                                                           context=cluster.context))
    api.create_namespace({"metadata": {"name": cluster.namespace}})
    api.create_namespaced_service_account(cluster.namespace, {"metadata": {"name": "no-secrets"}})
    token = api.create_namespaced_service_account_token(
        "no-secrets", cluster.namespace, {"spec": {"expirationSeconds": 600}}).status.token
    kubeconfig = yaml.safe_load(Path(str(cluster.kubeconfig)).read_text())
    for user in kubeconfig["users"]:
        user["user"] = {"token": token}
    limited = tmp_path / "limited.kubeconfig"
    limited.write_text(yaml.safe_dump(kubeconfig))
    limited.chmod(0o600)
    narrow = ClusterConfig(context=cluster.context, kubeconfig=limited, namespace=cluster.namespace)
    with KubeClient.for_cluster(narrow) as client:
        assert client.exists("v1", "Secret", SECRET, cluster.namespace) is None
    with KubeClient.for_cluster(cluster) as client:  # the admin sees that it is missing
        assert client.exists("v1", "Secret", SECRET, cluster.namespace) is False
    target = KubeTarget("aws", narrow)
    try:
        target.check_secrets([{"kind": "Deployment", "metadata": {"namespace": cluster.namespace},
                               "spec": {"template": {"spec": {"containers": [
                                   {"name": "model", "envFrom": [{"secretRef": {"name": SECRET}}]}]}}}}])
    finally:
        target.close()
