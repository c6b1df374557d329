"""A real Kubernetes API server (etcd + kube-apiserver on loopback) for apply and dry-run tests.

Server-side apply, dry-run, conflicts and admission all happen in the API server, so these
tests need no nodes. The binaries are the ones ``scripts/setup/50-kind.sh`` builds into
``$MCO_CACHE`` (``components-*/bin/etcd``, ``k8s-*/bin/kube-apiserver``); without them
the tests are skipped with that reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from orchestrator.net import free_port
from orchestrator.releases.deployer import CloudTarget, DeploySettings
from orchestrator.testing.processes import stop_process

CACHE = Path(os.environ.get("MCO_CACHE", Path.home() / ".cache" / "mco"))


def _binary(pattern: str, name: str) -> Path | None:
    found = shutil.which(name)
    if found:
        return Path(found)
    # Finished builds first (no .tmp suffix), newest first.
    candidates = sorted(glob.glob(str(CACHE / pattern / "bin" / name)), key=lambda p: (".tmp" in p, -os.path.getmtime(p)))
    return Path(candidates[0]) if candidates else None


def _wait_ready(url: str, ca: Path, token: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kube-apiserver exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            r = httpx.get(f"{url}/readyz", verify=ssl.create_default_context(cafile=str(ca)), headers={"Authorization": f"Bearer {token}"}, timeout=2)
            if r.status_code == 200:
                return
            last = r.text[-300:]
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise RuntimeError(f"kube-apiserver not ready within {timeout:.0f} s: {last}")


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """``{"kubeconfig": Path, "context": "mco-test", "url": str}`` of a fresh API server."""
    etcd = _binary("components-*", "etcd")
    kas = _binary("k8s-*", "kube-apiserver")
    if etcd is None or kas is None:
        pytest.skip("etcd/kube-apiserver binaries not built yet (run `make setup`: scripts/setup/50-kind.sh)")
    root = tmp_path_factory.mktemp("apiserver")
    client_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_log = open(root / "etcd.log", "wb")
    etcd_proc = subprocess.Popen(
        [str(etcd), "--data-dir", str(root / "etcd"), "--listen-client-urls", f"http://127.0.0.1:{client_port}",
         "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer_port}", "--initial-advertise-peer-urls",
         f"http://127.0.0.1:{peer_port}", "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
         "--unsafe-no-fsync", "--log-level", "warn"],
        stdout=etcd_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    procs = [etcd_proc]
    try:
        from orchestrator.net import wait_for_port

        wait_for_port("127.0.0.1", client_port, timeout=30, what="etcd")
        sa_key = root / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
        token = "mco-test-" + os.urandom(8).hex()
        (root / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n')
        certs = root / "certs"
        certs.mkdir()
        log = root / "apiserver.log"
        kas_log = open(log, "wb")
        kas_proc = subprocess.Popen(
            [str(kas), "--etcd-servers", f"http://127.0.0.1:{client_port}", "--bind-address", "127.0.0.1",
             "--advertise-address", "127.0.0.1", "--secure-port", str(api_port), "--cert-dir", str(certs),
             "--token-auth-file", str(root / "tokens.csv"), "--authorization-mode", "RBAC",
             "--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", str(sa_key),
             "--service-account-signing-key-file", str(sa_key), "--service-cluster-ip-range", "10.96.0.0/16",
             "--disable-admission-plugins", "ServiceAccount", "--enable-priority-and-fairness=false"],
            stdout=kas_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(kas_proc)
        url = f"https://127.0.0.1:{api_port}"
        ca = certs / "apiserver.crt"
        deadline = time.monotonic() + 60
        while not ca.exists() and time.monotonic() < deadline:
            if kas_proc.poll() is not None:
                raise RuntimeError(f"kube-apiserver exited:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        _wait_ready(url, ca, token, kas_proc, log)
        kubeconfig = root / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: test\n  cluster:\n    server: {url}\n    certificate-authority: {ca}\n"
            f"users:\n- name: admin\n  user:\n    token: {token}\n"
            "contexts:\n- name: mco-test\n  context:\n    cluster: test\n    user: admin\n"
            "current-context: mco-test\n")
        kubeconfig.chmod(0o600)
        yield {"kubeconfig": kubeconfig, "context": "mco-test", "url": url, "port": api_port}
    finally:
        for proc in reversed(procs):
            stop_process(proc, timeout=15)


@pytest.fixture(scope="session")
def controllers(apiserver: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """kube-controller-manager (deployment and replicaset controllers only) on the test API server."""
    kcm = _binary("k8s-*", "kube-controller-manager")
    if kcm is None:
        pytest.skip("kube-controller-manager not built yet (run `make setup`: scripts/setup/50-kind.sh)")
    root = tmp_path_factory.mktemp("kcm")
    log = open(root / "kcm.log", "wb")
    proc = subprocess.Popen(
        [str(kcm), "--kubeconfig", str(apiserver["kubeconfig"]), "--controllers", "deployment,replicaset",
         "--leader-elect=false", "--secure-port=0", "--concurrent-deployment-syncs", "2",
         "--concurrent-replicaset-syncs", "2"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    time.sleep(1.0)
    if proc.poll() is not None:
        raise RuntimeError(f"kube-controller-manager exited:\n{(root / 'kcm.log').read_text()[-2000:]}")
    try:
        yield apiserver
    finally:
        stop_process(proc, timeout=15)


# Images the simulated node treats specially (any other image starts and becomes ready).
CRASHING_IMAGE = "sha256:" + "c" * 64
UNPULLABLE_IMAGE = "sha256:" + "e" * 64

# What the deploy-flow and waves-flow tests release: two images, two models, two "clouds"
# (namespaces of one API server).
IMAGE_A = "sha256:" + "a" * 64
IMAGE_B = "sha256:" + "b" * 64
MODEL_A = "1" * 64
MODEL_B = "2" * 64
CLOUDS = ("aws", "gcp")
SETTINGS = DeploySettings(replicas=2, rollout_timeout_s=60, poll_s=0.3, readiness_grace_s=20)


def targets(env: dict[str, Any], image: str, clouds: tuple[str, ...] = CLOUDS) -> list[CloudTarget]:
    """The flow tests' clouds (``env["clusters"]``) deploying ``image``, kind-style."""
    return [CloudTarget(c, env["clusters"][c], "kind", image_ref=image, image_digest=image) for c in clouds]


# The namespaces the simulated node serves (the deploy-flow tests'); pods elsewhere stay
# pending, as on the bare API server the apply tests expect.
SIMULATED_NAMESPACES = ("flow",)


class SimulatedNode:
    """Stands in for kubelet, which cannot run on this host without a working kind node.

    It does what a kubelet reports through the API and nothing else: binds pending pods to
    itself, writes their status (ready; or CrashLoopBackOff with the server's last words;
    or ErrImageNeverPull), and finishes graceful deletions. Images in ``absent`` are not on
    the node yet: a pod created meanwhile stays in ErrImageNeverPull (its status is written
    once, as a kubelet in back-off does not look again soon), while pods created after the
    image is "loaded" (removed from ``absent``) start. The Deployment and ReplicaSet
    controllers, the API server and everything mco does are real.
    """

    def __init__(self, apiserver: dict[str, object]) -> None:
        import threading

        from kubernetes import client, config

        self.api = client.CoreV1Api(config.new_client_from_config(config_file=str(apiserver["kubeconfig"]),
                                                                  context=str(apiserver["context"])))
        self.stop = threading.Event()
        self.absent: set[str] = set()
        self.thread = threading.Thread(target=self._loop, name="simulated-node", daemon=True)

    def _status(self, pod: object) -> dict:
        from datetime import datetime

        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        container = pod.spec.containers[0]  # type: ignore[attr-defined]
        base = {"name": container.name, "image": container.image, "imageID": container.image}
        if container.image == CRASHING_IMAGE:
            cs = {**base, "ready": False, "restartCount": 3, "started": False,
                  "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
                  "lastState": {"terminated": {"exitCode": 3, "reason": "Error", "startedAt": now, "finishedAt": now,
                                               "message": "mco model server: refusing to start: model.onnx has sha256 "
                                                          "1234…, but the card records 5678…"}}}
            ready = "False"
        elif container.image == UNPULLABLE_IMAGE or container.image in self.absent:
            cs = {**base, "ready": False, "restartCount": 0, "started": False,
                  "state": {"waiting": {"reason": "ErrImageNeverPull",
                                        "message": f'Container image "{container.image}" is not present with pull policy of Never'}}}
            ready = "False"
        else:
            cs = {**base, "ready": True, "restartCount": 0, "started": True, "state": {"running": {"startedAt": now}}}
            ready = "True"
        conditions = [{"type": t, "status": s, "lastTransitionTime": now}
                      for t, s in (("PodScheduled", "True"), ("Initialized", "True"), ("ContainersReady", ready),
                                   ("Ready", ready))]
        return {"status": {"phase": "Running", "conditions": conditions, "containerStatuses": [cs],
                           "hostIP": "10.0.0.1", "podIP": "10.1.0.1", "startTime": now}}

    def _loop(self) -> None:
        from kubernetes.client.exceptions import ApiException

        done: set[str] = set()
        while not self.stop.is_set():
            try:
                for pod in self.api.list_pod_for_all_namespaces(_request_timeout=5).items:
                    meta = pod.metadata
                    if not meta.namespace.startswith(SIMULATED_NAMESPACES):
                        continue  # the apply tests' namespaces have no node, whichever test ran first
                    try:
                        if meta.deletion_timestamp is not None:
                            self.api.delete_namespaced_pod(meta.name, meta.namespace, grace_period_seconds=0)
                            continue
                        if meta.uid in done:
                            continue
                        if not pod.spec.node_name:
                            self.api.create_namespaced_pod_binding(
                                meta.name, meta.namespace,
                                {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta.name},
                                 "target": {"apiVersion": "v1", "kind": "Node", "name": "simulated-node"}},
                                _preload_content=False)
                        self.api.patch_namespaced_pod_status(meta.name, meta.namespace, self._status(pod))
                        done.add(meta.uid)
                    except ApiException:
                        continue  # the pod changed or went away meanwhile; the next round sees it again
            except Exception:  # the API server is restarting or gone: keep trying until stopped
                pass
            self.stop.wait(0.3)

    def __enter__(self) -> SimulatedNode:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def simulated_cluster(controllers: dict[str, object]) -> Iterator[dict[str, object]]:
    with SimulatedNode(controllers) as node:
        yield {**controllers, "node": node}
