"""The router as a workload of each cluster, next to the model: its objects for one cloud.

``render_router(model_objs, values)`` takes the model objects ``render_release`` made for
that cluster (so the router gets exactly the model's security context, namespace and
cloud label) and returns, sorted for apply:

* ``ServiceAccount`` ``mco-router`` (no API token mounted);
* ``ConfigMap`` ``mco-router-config``: the ``router:`` section (``policy: locality``,
  ``cloud``, the targets: the cloud's own model Service by its in-cluster name first,
  then the other clouds' entry points). The admin token is **not** in it;
* ``Deployment`` ``mco-router``: at least 2 replicas spread over nodes, the model's pod
  and container security context, ``/readyz`` (*I can route somewhere*) as readiness,
  ``/healthz`` as liveness, the token from the Secret ``values.token_secret`` (key
  ``token``) as ``MCO_ROUTER_TOKEN``, a checksum of the config on the pod template so a
  new config rolls the pods, and a fingerprint of the token (``values.token_fingerprint``,
  a truncated sha256 of a salted token, never the token) so a new token rolls them too: a
  container reads its environment once, and pods left running with the old token would
  refuse every admin call made with the new one;
* ``PodDisruptionBudget`` (``minAvailable: 1``);
* ``Service`` ``mco-router``: NodePort ``values.node_port`` on kind, a load balancer on
  the clouds (where the global entry's health checks reach ``/readyz/local``);
* ``NetworkPolicy``: in on the router port; out to DNS, the model pods and the other
  clouds' entry points.

The Secret itself is made by mco or Pulumi from the token, never rendered here, so the
token never appears in a manifest, a release record or a log.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from orchestrator.config import RouterTargetConfig
from orchestrator.errors import ConfigError
from orchestrator.kube.render import _DIGEST_REF, APP_NAME, LABEL_CLOUD, MODEL_CONTAINER, sort_for_apply

__all__ = ["ROUTER_APP", "ROUTER_NODE_PORT", "RouterValues", "model_service_url", "render_router", "token_fingerprint"]

Obj = dict[str, Any]
ROUTER_APP = "mco-router"
ROUTER_PORT = 8088
ROUTER_NODE_PORT = 30088
CONFIG_PATH = "/etc/mco"
ANNOTATION_ROUTER_IMAGE = "mco.dev/router-image"
ANNOTATION_CONFIG = "mco.dev/router-config-sha256"
ANNOTATION_TOKEN = "mco.dev/router-token-fingerprint"


@dataclass(frozen=True)
class RouterValues:
    image: str                     # digest-pinned, like the model's
    cloud: str
    remote_targets: tuple[RouterTargetConfig, ...] = ()  # the other clouds, in spill order
    replicas: int = 2
    token_secret: str = "mco-router-token"
    node_port: int | None = None   # kind: the NodePort mapped to a host port; None: a load balancer
    spill: str = "priority"
    pricing_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more `router:` keys (timeouts, health)
    token_fingerprint: str | None = None  # token_fingerprint(token): a new token rolls the pods

    def __post_init__(self) -> None:
        if not _DIGEST_REF.match(self.image):
            raise ConfigError(f"router image '{self.image}' is not pinned by digest",
                              hint="use REGISTRY/REPO@sha256:<digest> or sha256:<image id>")
        if self.replicas < 2:
            raise ConfigError(f"the router runs at least 2 replicas, not {self.replicas}",
                              hint="one replica is a single point of failure in the cloud")
        if not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", self.token_secret):
            raise ConfigError(f"'{self.token_secret}' is not a valid Secret name")


def token_fingerprint(token: str) -> str:
    """16 hex digits of a salted sha256 of the admin token: tells tokens apart, reveals nothing."""
    return hashlib.sha256(b"mco-router-token-fingerprint\0" + token.encode()).hexdigest()[:16]


def _meta(name: str, namespace: str, cloud: str) -> Obj:
    return {"name": name, "namespace": namespace,
            "labels": {"app.kubernetes.io/name": ROUTER_APP, "app.kubernetes.io/part-of": "mco", LABEL_CLOUD: cloud}}


def model_service_url(model_objs: list[Obj]) -> str:
    svc = next(o for o in model_objs if o["kind"] == "Service" and o["metadata"]["name"] == APP_NAME)
    port = svc["spec"]["ports"][0]["port"]
    return f"http://{APP_NAME}.{svc['metadata']['namespace']}.svc.cluster.local:{port}"


def _router_section(model_objs: list[Obj], values: RouterValues) -> dict[str, Any]:
    local = RouterTargetConfig(name=values.cloud, url=model_service_url(model_objs), priority=0,
                               pricing_key=values.pricing_key,
                               # the model Service inside this cluster, behind its NetworkPolicy
                               allow_insecure_http=True)
    targets = [local, *(t.model_copy(update={"priority": i + 1}) for i, t in enumerate(values.remote_targets))]
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ConfigError(f"router targets repeat a name: {names}", hint="one target per cloud")
    return {"host": "0.0.0.0", "port": ROUTER_PORT, "cloud": values.cloud, "policy": "locality",
            "spill": values.spill, **values.extra,
            "targets": [t.model_dump(mode="json", exclude_defaults=True) | {"name": t.name, "url": t.url}
                        for t in targets]}


def _remote_ports(values: RouterValues) -> list[int]:
    """443 and the kind NodePort, then any other port a remote entry names (https://host:8443)."""
    from urllib.parse import urlsplit

    ports = [443, 30080]
    for t in values.remote_targets:
        parts = urlsplit(t.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if port not in ports:
            ports.append(port)
    return ports


def render_router(model_objs: list[Obj], values: RouterValues) -> list[Obj]:
    deployment = next((o for o in model_objs if o["kind"] == "Deployment"), None)
    if deployment is None:
        raise ConfigError("the model objects have no Deployment to take the security context from")
    namespace = deployment["metadata"]["namespace"]
    pod = deployment["spec"]["template"]["spec"]
    model_container = next(c for c in pod["containers"] if c["name"] == MODEL_CONTAINER)
    section = _router_section(model_objs, values)
    config_text = yaml.safe_dump({"router": section}, sort_keys=False)
    checksum = hashlib.sha256(config_text.encode()).hexdigest()
    selector = {"app.kubernetes.io/name": ROUTER_APP}
    probe = {"port": "http"}

    objs: list[Obj] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(ROUTER_APP, namespace, values.cloud),
         "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(f"{ROUTER_APP}-config", namespace, values.cloud),
         "data": {"router.yaml": config_text}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {**_meta(ROUTER_APP, namespace, values.cloud),
                      "annotations": {ANNOTATION_ROUTER_IMAGE: values.image}},
         "spec": {
             "replicas": values.replicas, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
             "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
             "selector": {"matchLabels": selector},
             "template": {
                 "metadata": {"labels": {**selector, "app.kubernetes.io/part-of": "mco", LABEL_CLOUD: values.cloud},
                              "annotations": {ANNOTATION_CONFIG: checksum,
                                              **({ANNOTATION_TOKEN: values.token_fingerprint}
                                                 if values.token_fingerprint else {})}},
                 "spec": {
                     "serviceAccountName": ROUTER_APP, "automountServiceAccountToken": False,
                     "enableServiceLinks": False, "terminationGracePeriodSeconds": 30,
                     # the same as the model's, so the router is held to the model's rules
                     "securityContext": copy.deepcopy(pod.get("securityContext", {})),
                     "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                         "weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": selector},
                                                            "topologyKey": "kubernetes.io/hostname"}}]}},
                     "containers": [{
                         "name": "router", "image": values.image, "imagePullPolicy": "IfNotPresent",
                         "terminationMessagePolicy": "FallbackToLogsOnError",
                         "ports": [{"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"}],
                         "env": [{"name": "MCO_ROUTER_TOKEN", "valueFrom": {"secretKeyRef": {
                             "name": values.token_secret, "key": "token"}}}],
                         "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                         "readinessProbe": {"httpGet": {"path": "/readyz", **probe}, "periodSeconds": 2,
                                            "failureThreshold": 2, "timeoutSeconds": 1},
                         "livenessProbe": {"httpGet": {"path": "/healthz", **probe}, "periodSeconds": 10,
                                           "failureThreshold": 3, "timeoutSeconds": 2},
                         "resources": {"requests": {"cpu": "100m", "memory": "96Mi"},
                                       "limits": {"cpu": "1", "memory": "256Mi"}},
                         "securityContext": copy.deepcopy(model_container.get("securityContext", {})),
                         "volumeMounts": [{"name": "config", "mountPath": CONFIG_PATH, "readOnly": True},
                                          {"name": "tmp", "mountPath": "/tmp"}],
                     }],
                     "volumes": [{"name": "config", "configMap": {"name": f"{ROUTER_APP}-config"}},
                                 {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
                 },
             },
         }},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": _meta(ROUTER_APP, namespace, values.cloud),
         "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(ROUTER_APP, namespace, values.cloud),
         "spec": {"type": "NodePort" if values.node_port else "LoadBalancer", "selector": selector,
                  "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP",
                             **({"nodePort": values.node_port} if values.node_port else {})}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": _meta(ROUTER_APP, namespace, values.cloud),
         "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress", "Egress"],
                  "ingress": [{"ports": [{"port": ROUTER_PORT, "protocol": "TCP"}]}],
                  "egress": [
                      {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                      {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": APP_NAME}}}],
                       "ports": [{"port": 8080, "protocol": "TCP"}]},
                      # the other clouds' entry points: HTTPS, or the kind nodes' NodePorts
                      {"ports": [{"port": p, "protocol": "TCP"} for p in _remote_ports(values)]},
                  ]}},
    ]
    return sort_for_apply(objs)
