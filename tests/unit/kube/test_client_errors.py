"""The Kubernetes client's failures are typed at the boundary: no answer is ClusterUnreachable."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator.errors import ClusterError, ClusterUnreachable
from orchestrator.kube.client import KubeClient, no_answer


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\n"
                    f"clusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: false\n"
                    "users:\n- name: u\n  user:\n    token: t\n"
                    "contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\ncurrent-context: ctx\n")
    return path


def test_a_closed_port_is_cluster_unreachable(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on (bound, never listening: refused)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        client = KubeClient(context="ctx", kubeconfig=_kubeconfig(tmp_path, f"https://127.0.0.1:{port}"),
                            connect_timeout_s=2, read_timeout_s=2)
        with pytest.raises(ClusterUnreachable, match="connection refused") as info:
            client.get("v1", "Namespace", "mco")
    assert isinstance(info.value, ClusterError) and "kubectl --context ctx" in (info.value.hint or "")


def test_an_answer_with_a_status_is_not_unreachable() -> None:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import MaxRetryError, NewConnectionError, ReadTimeoutError, SSLError

    assert not no_answer(ApiException(status=403, reason="Forbidden"))
    assert not no_answer(MaxRetryError(None, "/", SSLError("CERTIFICATE_VERIFY_FAILED")))  # type: ignore[arg-type]
    assert no_answer(MaxRetryError(None, "/", NewConnectionError(None, "refused")))  # type: ignore[arg-type]
    assert no_answer(ReadTimeoutError(None, "/", "read timed out"))  # type: ignore[arg-type]
