"""The one place mco talks to a Kubernetes API server.

A thin wrapper over the official ``kubernetes`` client's ``DynamicClient``:

    client = KubeClient.for_cluster(cloud.cluster)
    live = client.apply(obj, force=True, dry_run=False)     # server-side apply, field manager "mco"
    client.get("apps/v1", "Deployment", "mco-model", "mco")
    client.list("v1", "Pod", "mco", label_selector="app=x")

``force`` and ``dry_run`` are required keywords, so every caller decides them on purpose.
Every request has a timeout, so a cluster that stops answering fails the call instead of
hanging it. Library errors become ``ClusterError`` here (``raise ... from exc``), with the
cluster's context in the message; when the API server gave no answer at all (refused, timed
out, reset, unknown host) the error is ``ClusterUnreachable``, so callers decide by type.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ClusterError, ClusterUnreachable, ConfigError, MissingExtraError

__all__ = ["FIELD_MANAGER", "KubeClient", "diff_objects", "no_answer", "strip_server_fields"]

FIELD_MANAGER = "mco"
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0

Obj = dict[str, Any]


def _import_kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError as exc:
        raise MissingExtraError("kubernetes", "kube", purpose="deploying to clusters") from exc
    return kubernetes


def _short_error(exc: BaseException) -> str:
    """A one-line cause for an exception from the kubernetes client or urllib3."""
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    message = None
    if body:
        try:
            data = json.loads(body if isinstance(body, (str, bytes)) else json.dumps(body))
            message = data.get("message")
        except (ValueError, TypeError, AttributeError):
            message = None
    if status:
        return f"HTTP {status}: {message or getattr(exc, 'reason', '') or exc}"
    reason = getattr(exc, "reason", None)  # urllib3 MaxRetryError wraps the socket error here
    text = str(reason or exc)
    for needle, plain in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                          ("Name or service not known", "host not found"),
                          ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted")):
        if needle in text:
            return plain
    return text.splitlines()[0][:300] if text else type(exc).__name__


def no_answer(exc: BaseException) -> bool:
    """Whether the API server never answered: a transport failure, not an HTTP error or a TLS refusal."""
    import ssl

    from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, SSLError
    from urllib3.exceptions import TimeoutError as TransportTimeout

    if getattr(exc, "status", None):  # an HTTP status: the server answered
        return False
    cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
    if isinstance(cause, (SSLError, ssl.SSLError)):
        return False
    return isinstance(cause, (NewConnectionError, ProtocolError, TransportTimeout, MaxRetryError, OSError))


class KubeClient:
    """One cluster, addressed by a kubeconfig context."""

    def __init__(self, *, context: str | None = None, kubeconfig: Path | str | None = None,
                 name: str | None = None, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.context = context
        self.kubeconfig = Path(kubeconfig) if kubeconfig else None
        self.name = name or context or "cluster"
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._api_client: Any = None
        self._dynamic: Any = None

    @classmethod
    def for_cluster(cls, cluster: Any, *, name: str | None = None) -> KubeClient:
        """From a ``ClusterConfig`` (context, optional kubeconfig)."""
        return cls(context=cluster.context, kubeconfig=cluster.kubeconfig, name=name or cluster.context)

    # -- connection

    def _connect(self) -> Any:
        if self._dynamic is not None:
            return self._dynamic
        k8s = _import_kubernetes()
        from kubernetes.client import ApiClient
        from kubernetes.dynamic import DynamicClient

        configuration = k8s.client.Configuration()
        try:
            k8s.config.load_kube_config(config_file=str(self.kubeconfig) if self.kubeconfig else None,
                                        context=self.context, client_configuration=configuration,
                                        persist_config=False)
        except k8s.config.ConfigException as exc:
            where = self.kubeconfig or "~/.kube/config (or $KUBECONFIG)"
            raise ConfigError(f"cannot use kube context '{self.context}' from {where}: {exc}",
                              hint="check clusters.<cloud>.cluster.context, or run `mco local up clusters`") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read kubeconfig {self.kubeconfig}: {exc.strerror}",
                              hint="check clusters.<cloud>.cluster.kubeconfig") from exc
        # A refused connection is retried once; a request that timed out is not (the cluster is
        # not answering, and a watch loop polls again anyway).
        from urllib3.util.retry import Retry

        configuration.retries = Retry(total=2, connect=1, read=0, status=0, redirect=0, other=0)
        timeout = self._timeout

        class _TimedApiClient(ApiClient):
            # Discovery calls pass no timeout; give every request one so a dead cluster fails fast.
            def call_api(self, *args: Any, **kwargs: Any) -> Any:
                kwargs["_request_timeout"] = kwargs.get("_request_timeout") or timeout
                return super().call_api(*args, **kwargs)

        self._api_client = _TimedApiClient(configuration=configuration)
        try:
            self._dynamic = DynamicClient(self._api_client)
        except Exception as exc:  # discovery: any transport or API error means "cannot talk to it"
            self.close()
            raise self._error("cannot reach the API server", exc) from exc
        return self._dynamic

    def _error(self, what: str, exc: BaseException) -> ClusterError:
        kind = ClusterUnreachable if no_answer(exc) else ClusterError
        return kind(f"{self.name}: {what}: {_short_error(exc)}",
                    hint=f"check the cluster behind kube context '{self.context}' is running "
                         f"(`kubectl --context {self.context} get nodes`)")

    def close(self) -> None:
        if self._api_client is not None:
            try:
                self._api_client.close()
            except Exception:  # closing a pool of dead connections may raise; nothing to do
                pass
        self._api_client = None
        self._dynamic = None

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        dyn = self._connect()
        try:
            return dyn.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as exc:
            raise ClusterError(f"{self.name}: the API server does not serve {kind} ({api_version})",
                               hint="the cluster is too old or lacks this API") from exc
        except Exception as exc:
            raise self._error(f"cannot discover {kind}", exc) from exc

    # -- calls

    def server_version(self) -> str:
        dyn = self._connect()
        try:
            info = dyn.request("get", "/version", _request_timeout=self._timeout)
        except Exception as exc:
            raise self._error("cannot read the server version", exc) from exc
        data = info.to_dict() if hasattr(info, "to_dict") else dict(info)
        return str(data.get("gitVersion", "?"))

    def apply(self, obj: Obj, *, force: bool, dry_run: bool) -> Obj:
        """Server-side apply ``obj`` as field manager ``mco``; returns the object the server holds.

        ``force`` takes over fields another manager owns (otherwise that is a conflict
        error naming the manager); ``dry_run`` runs every admission step and persists nothing.
        """
        from kubernetes.dynamic.exceptions import ConflictError

        kind = obj.get("kind", "?")
        meta = obj.get("metadata", {})
        name = meta.get("name", "?")
        resource = self._resource(obj["apiVersion"], kind)
        try:
            result = resource.server_side_apply(
                body=obj, name=name, namespace=meta.get("namespace") if resource.namespaced else None,
                field_manager=FIELD_MANAGER, force_conflicts=force, dry_run="All" if dry_run else None,
                _request_timeout=self._timeout,
            )
        except ConflictError as exc:
            raise ClusterError(
                f"{self.name}: applying {kind}/{name} conflicts with another field manager: {_short_error(exc)}",
                hint="another tool changed these fields; deploy with force, or remove that tool's changes") from exc
        except Exception as exc:
            raise self._error(f"applying {kind}/{name} failed", exc) from exc
        return result.to_dict()

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """The live object, or ``None`` when it does not exist."""
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = self._resource(api_version, kind)
        try:
            result = resource.get(name=name, namespace=namespace if resource.namespaced else None,
                                  _request_timeout=self._timeout)
        except NotFoundError:
            return None
        except Exception as exc:
            raise self._error(f"reading {kind}/{name} failed", exc) from exc
        return result.to_dict()

    def exists(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool | None:
        """Whether the object exists; ``None`` when this identity may not read it (403)."""
        from kubernetes.dynamic.exceptions import ForbiddenError, NotFoundError

        resource = self._resource(api_version, kind)
        try:
            resource.get(name=name, namespace=namespace if resource.namespaced else None,
                         _request_timeout=self._timeout)
        except NotFoundError:
            return False
        except ForbiddenError:
            return None
        except Exception as exc:
            raise self._error(f"reading {kind}/{name} failed", exc) from exc
        return True

    def list(self, api_version: str, kind: str, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None) -> list[Obj]:
        resource = self._resource(api_version, kind)
        try:
            result = resource.get(namespace=namespace if resource.namespaced else None, label_selector=label_selector,
                                  field_selector=field_selector, _request_timeout=self._timeout)
        except Exception as exc:
            raise self._error(f"listing {kind} failed", exc) from exc
        return list(result.to_dict().get("items", []))

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete (foreground); ``False`` when it was already gone."""
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = self._resource(api_version, kind)
        try:
            resource.delete(name=name, namespace=namespace if resource.namespaced else None,
                            propagation_policy="Foreground", _request_timeout=self._timeout)
        except NotFoundError:
            return False
        except Exception as exc:
            raise self._error(f"deleting {kind}/{name} failed", exc) from exc
        return True


# ---------------------------------------------------------------- diff (pure)

_SERVER_METADATA = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")


def strip_server_fields(obj: Obj | None) -> Obj:
    """An object without what the server alone writes (status, managedFields, uid, ...)."""
    if not obj:
        return {}
    out = json.loads(json.dumps(obj))
    out.pop("status", None)
    meta = out.get("metadata", {})
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    annotations.pop("deployment.kubernetes.io/revision", None)
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if not annotations:
        meta.pop("annotations", None)
    return out


def diff_objects(live: Obj | None, planned: Obj, *, label: str) -> str:
    """Unified YAML diff of live against what a dry-run apply would make it ("" if equal)."""
    before = yaml.safe_dump(strip_server_fields(live), sort_keys=True).splitlines(keepends=True) if live else []
    after = yaml.safe_dump(strip_server_fields(planned), sort_keys=True).splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, fromfile=f"live/{label}", tofile=f"planned/{label}"))
