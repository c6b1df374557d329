"""Render the model application for one cluster: ``manifests/`` base + overlay + release values.

    render_release("gcp", ReleaseValues(image="reg/mco/digits@sha256:…", model_digest="…"))
        -> [Namespace, ServiceAccount, Service, NetworkPolicy, PodDisruptionBudget,
            HorizontalPodAutoscaler, Deployment]      (plain dicts, sorted for apply)

The overlays are kustomize directories (``kubectl kustomize manifests/overlays/gcp`` builds
them too). mco reads the small subset of kustomize they use -- ``resources``, ``namespace``
and strategic-merge ``patches`` given by ``path`` -- so rendering needs no kubectl binary,
and any other kustomization key is an error rather than something silently ignored.

Release values are applied last, in code, because they are per release rather than per
cloud: the image (always by digest), the model digest (env var the server checks, and an
annotation), replicas, the namespace, and the node port of a kind cluster. The release
number goes on the Deployment's own metadata only, never on the pod template, so a no-op
redeploy does not roll pods.

This module is the stable entry point for other code (the Pulumi ModelDeployment component
calls ``render_release``); keep its signature.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.config import MCOConfig

__all__ = [
    "APP_NAME",
    "MODEL_CONTAINER",
    "OVERLAYS",
    "FetchSource",
    "ReleaseValues",
    "Resources",
    "build_kustomization",
    "default_manifests_dir",
    "dump_yaml",
    "fetch_sources",
    "overlay_for",
    "render_release",
    "sort_for_apply",
    "sort_for_delete",
]

Obj = dict[str, Any]


def _provider_overlays() -> tuple[str, ...]:
    from orchestrator.providers.loader import overlays

    return overlays()


OVERLAYS = _provider_overlays()  # each provider declares its overlay (providers/<cloud>.py)
APP_NAME = "mco-model"
MODEL_CONTAINER = "model"

ANNOTATION_MODEL_DIGEST = "mco.dev/model-digest"
ANNOTATION_RELEASE = "mco.dev/release"
LABEL_CLOUD = "mco.dev/cloud"

# Apply order: what others depend on first, workloads last (delete in reverse).
_APPLY_ORDER = (
    "CustomResourceDefinition", "Namespace", "ResourceQuota", "LimitRange", "PriorityClass",
    "ServiceAccount", "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding",
    "Secret", "ConfigMap", "PersistentVolume", "PersistentVolumeClaim",
    "Service", "NetworkPolicy", "PodDisruptionBudget", "HorizontalPodAutoscaler",
    "Ingress", "DaemonSet", "StatefulSet", "Deployment", "ReplicaSet", "Job", "CronJob", "Pod",
)
_CLUSTER_SCOPED = frozenset({
    "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
    "StorageClass", "PriorityClass", "IngressClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "APIService",
})
# Strategic-merge keys of the list fields our manifests patch (as in the Kubernetes API types).
_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
    "volumeMounts": "mountPath", "imagePullSecrets": "name",
}
_SUPPORTED_KUSTOMIZE_KEYS = {"apiVersion", "kind", "resources", "namespace", "patches"}
_DIGEST_REF = re.compile(r"^(?:[^@\s]+@)?sha256:[0-9a-f]{64}$")
_HEX64 = re.compile(r"^(?:sha256:)?[0-9a-f]{64}$")


@dataclass(frozen=True)
class Resources:
    """The model container's requests and limits (Kubernetes quantities); None keeps the overlay's.
    ``Resources(**config.deploy.resources.model_dump())`` makes one from mco.yaml."""

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None

    def apply(self, container: Obj) -> None:
        resources = container.setdefault("resources", {})
        for section, resource, value in (("requests", "cpu", self.cpu_request), ("limits", "cpu", self.cpu_limit),
                                         ("requests", "memory", self.memory_request),
                                         ("limits", "memory", self.memory_limit)):
            if value is not None:
                resources.setdefault(section, {})[resource] = value


# What makes each cloud's load balancer internal (manifests/overlays/*/service.yaml), and what a
# public one limited by loadBalancerSourceRanges has instead (None: the annotation goes).
_INTERNAL_LB = {
    "service.beta.kubernetes.io/aws-load-balancer-scheme": ("internal", "internet-facing"),
    "networking.gke.io/load-balancer-type": ("Internal", None),
    "service.beta.kubernetes.io/azure-load-balancer-internal": ("true", None),
}


def _check_cidr(cidr: str) -> None:
    import ipaddress

    try:
        ipaddress.ip_network(cidr)
    except ValueError:
        raise ConfigError(f"'{cidr}' is not an address range", hint="use CIDR notation, e.g. 10.0.0.0/16") from None


_TMP_MIN_MIB = 64  # what a baked-model pod's /tmp gets
# How long a fetch-mode pod may take to answer its first probe: the SDK's import, the server's
# start and a slow first connection, plus the bundle at a pull rate a bucket in another region
# still manages. The liveness probe (15 s on kind, 30 s in the clouds) waits until then.
_FETCH_START_S = 60
_FETCH_MIB_PER_S = 8
_STARTUP_PERIOD_S = 2


@dataclass(frozen=True)
class FetchSource:
    """What a ``model_source: fetch`` pod needs to pull its bundle at startup.

    ``storage`` is the cloud's storage section as plain values (``StorageConfig.model_dump()``):
    it holds no secret, and it is what the pod gets as ``MCO_STORAGE``. Credentials come from the
    pod's identity (IRSA, workload identity, managed identity) or, with ``credentials_secret``,
    from a Secret whose keys become environment variables (``AWS_ACCESS_KEY_ID``, ...), never
    from the manifest's text. ``bundle_bytes`` sizes the scratch volume the bundle lands in.

    Cases that cannot work are refused here, before anything is applied: a directory store
    (``provider: local``) is on this machine, not in the cluster, and a loopback endpoint or
    emulator credentials name this machine's loopback, which no pod can reach."""

    provider: str
    storage: dict[str, Any]
    bundle_bytes: int
    cloud: str | None = None
    credentials_secret: str | None = None
    # (CIDR, port) of the provider's identity endpoints (``Provider.identity_egress``); opened
    # only when no Secret carries the credentials
    identity_egress: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        from urllib.parse import urlsplit

        who = f"cloud '{self.cloud}'" if self.cloud else "this cloud"
        if self.provider == "local":
            raise ConfigError(f"{who} keeps bundles in a directory on this machine; a fetch-mode pod cannot read it",
                              hint="use packaging.model_source: baked for this cloud, or a cloud object store")
        endpoint = self.storage.get("endpoint")
        host = urlsplit(endpoint).hostname if endpoint else None
        if self.storage.get("credentials") == "emulator" or _names_this_machine(host):
            raise ConfigError(f"{who}'s store is at {endpoint or 'a loopback emulator'}, on this machine's loopback; "
                              "a fetch-mode pod cannot reach it",
                              hint="bake the model into the image (packaging.model_source: baked) for local "
                                   "clusters, or point storage.endpoint at an address the cluster can reach")
        if self.bundle_bytes < 0:
            raise ConfigError("bundle size must be positive")
        if self.credentials_secret is not None and not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
                                                                  self.credentials_secret):
            raise ConfigError(f"'{self.credentials_secret}' is not a valid Secret name")

    @property
    def egress_port(self) -> int:
        """The store's port: 443 for the clouds' HTTPS endpoints, or the configured endpoint's."""
        from urllib.parse import urlsplit

        endpoint = self.storage.get("endpoint")
        if not endpoint:
            return 443
        parsed = urlsplit(endpoint)
        return parsed.port or (443 if parsed.scheme == "https" else 80)

    @property
    def scratch_mib(self) -> int:
        """/tmp holds the bundle twice while a pull moves it into place, plus what Python needs."""
        return _TMP_MIN_MIB + -(-2 * self.bundle_bytes // (1 << 20))

    @property
    def startup_seconds(self) -> int:
        """How long the pod may take to pull, verify and load its bundle before it must answer."""
        return _FETCH_START_S + -(-self.bundle_bytes // (_FETCH_MIB_PER_S << 20))

    def storage_json(self) -> str:
        import json

        spec: dict[str, Any] = {"provider": self.provider, "storage": self.storage}
        if self.cloud:
            spec["cloud"] = self.cloud
        return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def _names_this_machine(host: str | None) -> bool:
    """Whether a pod connecting to ``host`` would reach itself rather than the store: a loopback
    name or address (localhost, 127.0.0.0/8, ::1), or the unspecified address (0.0.0.0, ::).
    Any other address may be reachable from the cluster (a storage emulator on the kind
    network's gateway is), so it is left to the network to decide."""
    import ipaddress

    from orchestrator.config import is_loopback_host

    if is_loopback_host(host):
        return True
    try:
        return ipaddress.ip_address((host or "").strip("[]")).is_unspecified
    except ValueError:
        return False


def fetch_sources(config: MCOConfig, clouds: Iterable[str], bundle_bytes: int) -> dict[str, FetchSource]:
    """The ``FetchSource`` of every cloud in ``clouds`` for a fetch-mode deploy; a ``ConfigError``
    up front for a cloud whose pods could not fetch (no storage section, or see ``FetchSource``)."""
    out: dict[str, FetchSource] = {}
    for cloud in clouds:
        cloud_cfg = config.cloud(cloud)
        if cloud_cfg.storage is None:
            raise ConfigError(f"packaging.model_source is fetch, but cloud '{cloud}' has no storage section: "
                              "its pods would have nowhere to fetch the bundle from",
                              hint=f"add clouds.{cloud}.storage, or use packaging.model_source: baked")
        from orchestrator.providers.loader import provider_class

        secret = cloud_cfg.cluster.fetch_credentials_secret if cloud_cfg.cluster else None
        out[cloud] = FetchSource(provider=cloud_cfg.provider, storage=cloud_cfg.storage.model_dump(mode="json"),
                                 bundle_bytes=bundle_bytes, cloud=cloud, credentials_secret=secret,
                                 identity_egress=provider_class(cloud_cfg.provider).identity_egress)
    return out


@dataclass(frozen=True)
class ReleaseValues:
    """What one release sets on one cluster's objects.

    ``image`` is digest-pinned: ``registry/repo@sha256:<manifest digest>`` for clusters that
    pull, or ``sha256:<image id>`` for a kind cluster whose image came from ``kind load``
    (the image ID is the config digest, which survives ``docker save``; a mutable tag never
    appears in a manifest). ``model_digest`` is the bundle digest.
    """

    image: str
    model_digest: str
    replicas: int = 2
    namespace: str = "mco"
    node_port: int | None = None
    cloud: str | None = None
    release: int | None = None
    run_as_user: int | None = None  # the image's non-root uid (config packaging.uid); None keeps the manifest's
    resources: Resources | None = None  # config deploy.resources; None keeps the overlay's
    fetch: FetchSource | None = None  # model_source: fetch; None for an image with the model baked in
    # Who may reach the model pods besides router pods (cluster.ingress_cidrs); None keeps the
    # manifest's (the private ranges).
    ingress_cidrs: tuple[str, ...] | None = None
    # cluster.load_balancer_source_ranges: a public load balancer limited to these; empty: internal.
    load_balancer_source_ranges: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _DIGEST_REF.match(self.image):
            raise ConfigError(
                f"image '{self.image}' is not pinned by digest",
                hint="use REGISTRY/REPO@sha256:<digest> (from `mco push`) or sha256:<image id>; tags are mutable",
            )
        if not _HEX64.match(self.model_digest):
            raise ConfigError(f"model digest '{self.model_digest}' is not a sha256 hex digest",
                              hint="pass the bundle digest from card.json (`bundle_digest`)")
        if self.replicas < 1:
            raise ConfigError(f"replicas must be at least 1, not {self.replicas}")
        if self.run_as_user is not None and self.run_as_user < 1:
            raise ConfigError("the model server must run as a non-root uid (>= 1)")
        for cidr in (*(self.ingress_cidrs or ()), *self.load_balancer_source_ranges):
            _check_cidr(cidr)
        if self.node_port is not None and not 30000 <= self.node_port <= 32767:
            raise ConfigError(f"node port {self.node_port} is outside the NodePort range 30000-32767")
        if not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", self.namespace):
            raise ConfigError(f"namespace '{self.namespace}' is not a valid Kubernetes name",
                              hint="lower-case letters, digits and '-', at most 63 characters")

    @property
    def bare_model_digest(self) -> str:
        return self.model_digest.removeprefix("sha256:")


def default_manifests_dir() -> Path:
    """``$MCO_MANIFESTS``, or ``manifests/`` at the root of this source tree."""
    env = os.environ.get("MCO_MANIFESTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "manifests"


def overlay_for(cloud_config: Any) -> str:
    """Which overlay a configured cloud uses: ``kind`` when its cluster is a kind cluster,
    else the one its provider declares."""
    from orchestrator.providers.loader import provider_class

    cluster = getattr(cloud_config, "cluster", None)
    if cluster is not None and getattr(cluster, "kind_cluster", None):
        return "kind"
    return provider_class(str(getattr(cloud_config, "provider", None))).overlay


# ---------------------------------------------------------------- kustomize subset


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: rendering sits on the deploy path


def _read_yaml_docs(path: Path) -> list[Obj]:
    try:
        docs = [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d is not None]
    except OSError as exc:
        raise ConfigError(f"cannot read manifest {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", hint="fix the manifest") from exc
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
            raise ConfigError(f"{path} holds a document that is not a Kubernetes object",
                              hint="every document needs apiVersion, kind and metadata")
    return docs


def _kustomization_file(directory: Path) -> Path:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).is_file():
            return directory / name
    raise ConfigError(f"{directory} has no kustomization.yaml",
                      hint="point --manifests at a directory with base/ and overlays/")


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge: maps merge, keyed lists merge by key, other lists replace, null deletes."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out and isinstance(value, list) and isinstance(out[key], list):
                out[key] = _merge_list(key, out[key], value)
            elif key in out:
                out[key] = _merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    return copy.deepcopy(patch)


def _merge_list(field: str, base: list[Any], patch: list[Any]) -> list[Any]:
    key = _MERGE_KEYS.get(field)
    if key is None and patch and all(isinstance(i, dict) and "name" in i for i in base + patch):
        key = "name"  # ports and the like: merge by name when every item has one
    if key is None:
        return copy.deepcopy(patch)
    out = [copy.deepcopy(i) for i in base]
    for item in patch:
        idx = next((n for n, cur in enumerate(out) if isinstance(cur, dict) and cur.get(key) == item.get(key)), None)
        if idx is None:
            out.append(copy.deepcopy(item))
        else:
            out[idx] = _merge(out[idx], item)
    return out


def build_kustomization(directory: Path) -> list[Obj]:
    """Build a kustomize directory (the subset described in the module docstring)."""
    kfile = _kustomization_file(directory)
    spec = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(spec) - _SUPPORTED_KUSTOMIZE_KEYS
    if unknown:
        raise ConfigError(f"{kfile}: unsupported kustomization key(s) {', '.join(sorted(unknown))}",
                          hint="mco renders resources, namespace and patches (path); express the rest as patches")
    objs: list[Obj] = []
    for entry in spec.get("resources") or []:
        target = (directory / entry).resolve()
        objs.extend(build_kustomization(target) if target.is_dir() else _read_yaml_docs(target))
    for entry in spec.get("patches") or []:
        if not isinstance(entry, dict) or set(entry) != {"path"}:
            raise ConfigError(f"{kfile}: patch {entry!r} is not supported",
                              hint="use strategic-merge patch files: `- path: FILE.yaml`")
        for patch in _read_yaml_docs(directory / entry["path"]):
            name = patch["metadata"].get("name")
            idx = next((i for i, o in enumerate(objs)
                        if o["kind"] == patch["kind"] and o["metadata"].get("name") == name), None)
            if idx is None:
                raise ConfigError(f"{directory / entry['path']}: patches {patch['kind']}/{name}, "
                                  "which no resource defines", hint="fix the kind or name in the patch")
            objs[idx] = _merge(objs[idx], patch)
    namespace = spec.get("namespace")
    if namespace:
        for obj in objs:
            if obj["kind"] not in _CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
    return objs


def _cached_build(directory: Path) -> list[Obj]:
    """``build_kustomization``, remembered per directory until a file under the manifests changes."""
    root = directory.parents[1] if directory.parent.name == "overlays" else directory
    stamp = tuple(sorted((str(p), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()))
    key = str(directory.resolve())
    hit = _BUILD_CACHE.get(key)
    if hit is None or hit[0] != stamp:
        hit = (stamp, build_kustomization(directory))
        _BUILD_CACHE[key] = hit
    return hit[1]


_BUILD_CACHE: dict[str, tuple[tuple[tuple[str, int], ...], list[Obj]]] = {}


# ---------------------------------------------------------------- release values


def _model_container(deployment: Obj) -> Obj:
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        if container["name"] == MODEL_CONTAINER:
            return container
    raise ConfigError(f"Deployment {deployment['metadata']['name']} has no container named '{MODEL_CONTAINER}'",
                      hint="the manifests must keep the model container's name")


def _apply_values(obj: Obj, values: ReleaseValues) -> None:
    meta = obj["metadata"]
    kind = obj["kind"]
    if kind == "Namespace":
        meta["name"] = values.namespace
    elif kind not in _CLUSTER_SCOPED:
        meta["namespace"] = values.namespace
    if values.cloud:
        meta.setdefault("labels", {})[LABEL_CLOUD] = values.cloud
    if kind == "Deployment":
        digest = values.bare_model_digest
        spec = obj["spec"]
        spec["replicas"] = values.replicas
        meta.setdefault("annotations", {})[ANNOTATION_MODEL_DIGEST] = digest
        if values.release is not None:
            meta["annotations"][ANNOTATION_RELEASE] = str(values.release)
        template_meta = spec["template"].setdefault("metadata", {})
        template_meta.setdefault("annotations", {})[ANNOTATION_MODEL_DIGEST] = digest
        if values.cloud:
            template_meta.setdefault("labels", {})[LABEL_CLOUD] = values.cloud
        if values.run_as_user is not None:
            pod_security = spec["template"]["spec"].setdefault("securityContext", {})
            pod_security.update(runAsUser=values.run_as_user, runAsGroup=values.run_as_user, fsGroup=values.run_as_user)
        container = _model_container(obj)
        container["image"] = values.image
        if values.resources is not None:
            values.resources.apply(container)
        limits = container.get("resources", {}).get("limits", {})
        if "cpu" not in limits or "memory" not in limits:
            raise ConfigError(f"the model container in {values.cloud or 'this'} overlay has no "
                              f"{'CPU' if 'cpu' not in limits else 'memory'} limit",
                              hint="set resources.limits in the overlay, or deploy.resources in mco.yaml")
        env = container.setdefault("env", [])
        _set_env(env, "MCO_MODEL_DIGEST", f"sha256:{digest}")
        if values.fetch is not None:
            _fetch_mode(spec["template"]["spec"], container, values.fetch)
    elif kind == "NetworkPolicy":
        if values.ingress_cidrs is not None:
            for rule in obj["spec"].get("ingress", []):
                peers = [p for p in rule.get("from", []) if "ipBlock" not in p]
                rule["from"] = peers + [{"ipBlock": {"cidr": c}} for c in values.ingress_cidrs]
        if values.fetch is not None:
            # The pod pulls its bundle at startup: egress to the store's port, to any address
            # (object stores have no fixed addresses), and nothing else beyond DNS.
            egress = obj["spec"].setdefault("egress", [])
            egress.append({"ports": [{"port": values.fetch.egress_port, "protocol": "TCP"}]})
            if values.fetch.credentials_secret is None:
                # credentials come from the pod's identity: its token endpoint, and only that
                egress.extend({"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"port": port, "protocol": "TCP"}]}
                              for cidr, port in values.fetch.identity_egress)
    elif kind == "Service" and obj["spec"].get("type") == "LoadBalancer":
        _load_balancer(obj, values.load_balancer_source_ranges)
    elif kind == "HorizontalPodAutoscaler":
        obj["spec"]["minReplicas"] = values.replicas
        obj["spec"]["maxReplicas"] = max(obj["spec"].get("maxReplicas", 0), values.replicas * 3)
    elif kind == "Service" and obj["spec"].get("type") == "NodePort":
        for port in obj["spec"].get("ports", []):
            if values.node_port is None:
                port.pop("nodePort", None)  # let the cluster choose
            else:
                port["nodePort"] = values.node_port


def _load_balancer(service: Obj, source_ranges: tuple[str, ...]) -> None:
    """Internal, as the overlays make it; or public and limited to ``source_ranges``. A load
    balancer that is neither would let anyone reach the model servers around the router."""
    annotations = service["metadata"].setdefault("annotations", {})
    if source_ranges:
        for key, (_internal, public) in _INTERNAL_LB.items():
            if key in annotations:
                if public is None:
                    del annotations[key]
                else:
                    annotations[key] = public
        service["spec"]["loadBalancerSourceRanges"] = list(source_ranges)
    elif not any(annotations.get(key) == internal for key, (internal, _public) in _INTERNAL_LB.items()) \
            and not service["spec"].get("loadBalancerSourceRanges"):
        raise ConfigError(f"the Service {service['metadata']['name']} is a load balancer open to anyone",
                          hint="keep the overlay's internal-load-balancer annotation, or set "
                               "cluster.load_balancer_source_ranges in mco.yaml")


def _set_env(env: list[Obj], name: str, value: str) -> None:
    entry = next((e for e in env if e.get("name") == name), None)
    if entry is None:
        env.append({"name": name, "value": value})
    else:
        entry.clear()
        entry.update({"name": name, "value": value})


def _fetch_mode(pod: Obj, container: Obj, fetch: FetchSource) -> None:
    env = container.setdefault("env", [])
    _set_env(env, "MCO_MODEL_SOURCE", "fetch")
    _set_env(env, "MCO_STORAGE", fetch.storage_json())
    if fetch.credentials_secret:
        refs = container.setdefault("envFrom", [])
        if not any(r.get("secretRef", {}).get("name") == fetch.credentials_secret for r in refs):
            refs.append({"secretRef": {"name": fetch.credentials_secret}})
    tmp = next((v for v in pod.get("volumes", []) if v.get("name") == "tmp"), None)
    if tmp is None:
        raise ConfigError("the model Deployment has no 'tmp' volume for the fetched bundle",
                          hint="keep the base manifest's tmp emptyDir")
    tmp["emptyDir"] = {**tmp.get("emptyDir", {}), "sizeLimit": f"{fetch.scratch_mib}Mi"}
    # The server answers nothing until the bundle is fetched and verified. Without a startup
    # probe the liveness probe would restart a pod whose pull takes longer than its few
    # failures allow, again and again; with one, liveness and readiness wait for the first answer.
    liveness = container.get("livenessProbe") or {"httpGet": {"path": "/healthz", "port": "http"}}
    container["startupProbe"] = {**{k: v for k, v in liveness.items() if k in ("httpGet", "tcpSocket", "exec")},
                                 "periodSeconds": _STARTUP_PERIOD_S, "timeoutSeconds": 2,
                                 "failureThreshold": -(-fetch.startup_seconds // _STARTUP_PERIOD_S)}


def _order(kind: str) -> int:
    return _APPLY_ORDER.index(kind) if kind in _APPLY_ORDER else _APPLY_ORDER.index("Ingress")


def sort_for_apply(objs: Iterable[Obj]) -> list[Obj]:
    """Namespace first, workloads last; stable by kind order, then namespace and name."""
    return sorted(objs, key=lambda o: (_order(o["kind"]), o["metadata"].get("namespace", ""), o["metadata"]["name"]))


def sort_for_delete(objs: Iterable[Obj]) -> list[Obj]:
    return list(reversed(sort_for_apply(objs)))


def render_release(overlay: str, values: ReleaseValues, *, manifests_dir: Path | str | None = None) -> list[Obj]:
    """The final objects for one cluster, sorted for apply.

    ``overlay`` is one of ``OVERLAYS`` (use ``overlay_for(cloud_config)`` to pick it from
    the config); ``manifests_dir`` defaults to ``default_manifests_dir()``. Returns fresh
    plain dicts the caller may keep or change.
    """
    if overlay not in OVERLAYS:
        raise ConfigError(f"unknown overlay '{overlay}'", hint=f"choose from: {', '.join(OVERLAYS)}")
    root = Path(manifests_dir) if manifests_dir is not None else default_manifests_dir()
    directory = root / "overlays" / overlay
    if not directory.is_dir():
        raise ConfigError(f"overlay directory {directory} does not exist",
                          hint="set MCO_MANIFESTS to the manifests/ directory of the mco source tree")
    objs = copy.deepcopy(_cached_build(directory))
    kinds = {o["kind"] for o in objs}
    for required in ("Namespace", "Deployment", "Service"):
        if required not in kinds:
            raise ConfigError(f"overlay {overlay} renders no {required}", hint="keep the base resources")
    for obj in objs:
        _apply_values(obj, values)
    return sort_for_apply(objs)


def dump_yaml(objs: Iterable[Obj]) -> str:
    """Multi-document YAML, the form ``kubectl apply -f -`` reads."""
    return yaml.safe_dump_all(list(objs), sort_keys=False, default_flow_style=False, explicit_start=True)
