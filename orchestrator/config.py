"""``mco.yaml``: the project config, validated with pydantic.

Errors name the file, the key and the fix. Secrets never live here: credentials come
from each SDK's own chain (AWS profiles/env, GOOGLE_APPLICATION_CREDENTIALS, Azure
connection string env var or DefaultAzureCredential); a config may only name the
*environment variable* that holds one.

Shape (every section optional)::

    project: {name: digits}
    gate: {require: ["macro_f1>=0.95"]}
    clouds:
      aws:
        provider: aws            # aws | gcp | azure | local
        storage: {bucket: mco-models, region: us-east-1, endpoint: http://127.0.0.1:9000, prefix: mco}
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from orchestrator.errors import ConfigError

__all__ = [
    "AnalysisConfig",
    "CloudConfig",
    "ClusterConfig",
    "DeployConfig",
    "GateConfig",
    "MCOConfig",
    "PackagingConfig",
    "ProjectConfig",
    "RegistryConfig",
    "RouterConfig",
    "RouterFeedbackConfig",
    "RouterHealthConfig",
    "RouterLimitsConfig",
    "RouterOutlierConfig",
    "RouterRetryConfig",
    "RouterTargetConfig",
    "StateConfig",
    "StorageConfig",
    "StrictModel",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_FILES = ("mco.yaml", "mco.yml")


# The clouds declare themselves (orchestrator/providers/): this schema asks them what a
# provider, a registry login or a fetch extra may be called instead of listing the clouds.
def _one_of(value: str, known: tuple[str, ...], what: str) -> str:
    if value not in known:
        raise ValueError(f"unknown {what} '{value}'; use one of: {', '.join(known)}")
    return value


def _provider_names() -> tuple[str, ...]:
    from orchestrator.providers.loader import provider_names

    return provider_names()


def _fetch_extras() -> tuple[str, ...]:
    from orchestrator.providers.loader import fetch_extras

    return fetch_extras()


def _registry_auths() -> tuple[str, ...]:
    from orchestrator.providers.loader import registry_auths

    return ("none", "basic", *registry_auths())


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` (a name or address, no port) is this machine: localhost, 127.0.0.0/8 or ::1."""
    import ipaddress

    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False



def _registered(name: str, known: tuple[str, ...] | list[str], what: str, plural: str) -> str:
    """``name`` if a registry (policies, strategies: they register themselves) knows it."""
    if name not in known:
        raise ValueError(f"unknown {what} '{name}'; known {plural}: {', '.join(known)}")
    return name

class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must not silently do nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectConfig(StrictModel):
    name: str = "mco"
    state_dir: Path = Field(default=Path(".mco"), description="release history, locks and runs")


class GateConfig(StrictModel):
    require: list[str] = Field(default_factory=list)

    @field_validator("require")
    @classmethod
    def _parse(cls, value: list[str]) -> list[str]:
        from orchestrator.model.gate import parse_requirement

        for text in value:
            parse_requirement(text)
        return value


class StorageConfig(StrictModel):
    bucket: str = Field(min_length=1, description="bucket (S3, GCS) or container (Azure Blob)")
    region: str | None = None
    endpoint: str | None = Field(default=None, description="endpoint override for emulators and sovereign clouds")
    prefix: str = "mco"
    verify_tls: bool = True
    # "sdk": each SDK's own credential chain (the default). "emulator": the emulator's
    # published development credentials (MinIO's/moto's test keys, Azurite's devstoreaccount1,
    # none for GCS emulators), so no secret is written anywhere; only with a loopback endpoint.
    credentials: Literal["sdk", "emulator"] = "sdk"

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from urllib.parse import urlparse

        parsed = urlparse(value)
        try:
            parsed.port  # noqa: B018 - raises on a non-numeric or out-of-range port
        except ValueError:
            raise ValueError(f"'{value}' has an invalid port; use a URL such as http://127.0.0.1:9000") from None
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"'{value}' is not an http(s) URL such as http://127.0.0.1:9000")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _emulator_credentials_stay_local(self) -> StorageConfig:
        if self.credentials == "emulator":
            from urllib.parse import urlparse

            host = urlparse(self.endpoint).hostname if self.endpoint else None
            if not is_loopback_host(host):
                raise ValueError("credentials: emulator needs a loopback endpoint (http://127.0.0.1:PORT); "
                                 "for a real cloud use credentials: sdk")
        return self

    @field_validator("prefix")
    @classmethod
    def _prefix_is_relative(cls, value: str) -> str:
        parts = [p for p in value.strip("/").split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError("prefix may not contain '.' or '..' segments")
        return "/".join(parts)


class RegistryConfig(StrictModel):
    """A container registry (ECR, Artifact Registry, ACR, or a local OCI registry)."""

    url: str = Field(min_length=1, description="registry host[:port], e.g. 127.0.0.1:5001 or 123.dkr.ecr.us-east-1.amazonaws.com")
    repository: str = Field(default="mco", description="repository path prefix inside the registry")
    auth: str = Field(default="none", description="none | basic | a cloud's own login (ecr, gcp, acr: see providers/)")
    # Basic auth reads its secret from the environment, or from a file only its owner can read;
    # the config only names the variable or the file, never the secret itself.
    username: str | None = Field(default=None, description="basic-auth user name (not a secret)")
    username_env: str | None = None
    password_env: str | None = None
    password_file: Path | None = Field(default=None, description="file (mode 0600) holding the basic-auth password")
    insecure_http: bool = Field(default=False, description="plain HTTP (loopback registries only)")
    # A registry's Bearer challenge names a token endpoint (realm) that receives the credentials.
    # Only the registry's own host is trusted with them unless a host is listed here; a plain-HTTP
    # realm is always refused.
    token_realm_hosts: list[str] = Field(default_factory=list,
                                         description="other hosts trusted to issue tokens, e.g. auth.docker.io")

    @property
    def hostname(self) -> str:
        """The registry's host name or address, without scheme or port."""
        from urllib.parse import urlsplit

        return urlsplit("//" + self.url.removeprefix("https://").removeprefix("http://")).hostname or ""

    @model_validator(mode="after")
    def _plain_http_only_on_loopback(self) -> RegistryConfig:
        if self.insecure_http and not is_loopback_host(self.hostname):
            raise ValueError(f"insecure_http: plain HTTP would send credentials and images to {self.url} in the "
                             "clear; it is allowed only for a loopback registry (127.0.0.1:PORT). "
                             "Serve this registry over TLS and remove insecure_http")
        return self

    @field_validator("auth")
    @classmethod
    def _known_auth(cls, value: str) -> str:
        return _one_of(value, _registry_auths(), "registry auth")


class ClusterConfig(StrictModel):
    """A Kubernetes cluster target for one cloud."""

    context: str = Field(min_length=1, description="kube context name, e.g. kind-mco-aws")
    kubeconfig: Path | None = None
    kind_cluster: str | None = Field(default=None, description="kind cluster name when the target is kind")
    namespace: str = "mco"
    endpoint: str | None = Field(default=None, description="URL where clients reach the model Service")
    node_port: int | None = Field(default=None, ge=30000, le=32767)
    ingress_cidrs: list[str] | None = Field(
        default=None, description="address ranges that may reach the model pods besides mco's router pods "
                                  "(the load balancer path, routers outside the cluster); default: the private ranges")
    load_balancer_source_ranges: list[str] = Field(
        default_factory=list, description="make the cloud load balancer public, limited to these ranges; "
                                          "empty: an internal load balancer")
    fetch_credentials_secret: str | None = Field(
        default=None, description="model_source: fetch: a Secret in the namespace whose keys become the pod's "
                                  "environment (e.g. AWS_ACCESS_KEY_ID); unset: the pod's cloud identity")


    @field_validator("ingress_cidrs", "load_balancer_source_ranges")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        import ipaddress

        for cidr in value or []:
            try:
                ipaddress.ip_network(cidr)
            except ValueError:
                raise ValueError(f"'{cidr}' is not an address range in CIDR notation (e.g. 10.0.0.0/16)") from None
        return value


class PackagingConfig(StrictModel):
    """How `mco package` builds the model image (see orchestrator/packaging/)."""

    base_image: str = Field(default="mco-base/bookworm:latest",
                            description="any local image with Python 3.11 (the host's), e.g. python:3.11-slim")
    python: str = Field(default="python3", description="the interpreter inside the base image (on its PATH)")
    image_prefix: str = Field(default="mco", pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$",
                              description="local image name is PREFIX/MODEL-NAME:DIGEST")
    model_source: Literal["baked", "fetch"] = Field(
        default="baked", description="baked into the image, or fetched from the cloud's bucket at startup")
    fetch_extras: list[str] = Field(default_factory=lambda: list(_fetch_extras()),
                                    description="SDKs the image needs to fetch at startup (default: every cloud's)")
    uid: int = Field(default=10001, ge=1, description="the non-root user the server runs as")

    @field_validator("fetch_extras")
    @classmethod
    def _known_extras(cls, value: list[str]) -> list[str]:
        known = _fetch_extras()
        return [_one_of(extra, known, "fetch extra") for extra in value]


class CloudConfig(StrictModel):
    provider: str = Field(description="aws | gcp | azure | local (the classes in orchestrator/providers/)")
    storage: StorageConfig | None = None
    registry: RegistryConfig | None = None
    cluster: ClusterConfig | None = None
    priority: int = Field(default=0, description="router failover order: lower is preferred")
    pricing_key: str | None = Field(default=None, description="entry in the price catalog, e.g. aws/us-east-1")
    router_urls: list[str] = Field(default_factory=list,
                                   description="this cloud's routers (admin API base URLs), for `mco router status "
                                               "--all` and the global entry's health checks")

    @field_validator("router_urls")
    @classmethod
    def _router_urls(cls, value: list[str]) -> list[str]:
        from urllib.parse import urlparse

        for url in value:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError(f"'{url}' is not an http(s) URL such as https://router.aws.example.com")
            if parsed.scheme == "http" and not is_loopback_host(parsed.hostname):
                raise ValueError(f"'{url}' is plain HTTP to another host: the admin token would cross the network "
                                 "in the clear; use https:// (plain HTTP only on loopback)")
        return [u.rstrip("/") for u in value]

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        return _one_of(value, _provider_names(), "provider")


class RouterTargetConfig(StrictModel):
    """One cloud behind the router."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    url: str = Field(description="base URL of the model Service, e.g. http://127.0.0.1:9001")
    priority: int = Field(default=0, description="failover order: lower is preferred")
    weight: int = Field(default=1, ge=0, le=1000)
    pricing_key: str | None = Field(default=None, description="price catalog entry, e.g. aws/us-east-1")
    replicas: int = Field(default=2, ge=0, description="replicas priced per hour")
    vcpu: float = Field(default=0.5, ge=0, description="vCPU per replica")
    memory_gb: float = Field(default=1.0, ge=0, description="memory per replica (GB)")
    cloud: str | None = Field(default=None, description="the cloud this target runs in (default: its name); "
                                                        "the locality policy prefers the router's own cloud")
    # Plain HTTP to another host crosses networks in the clear (and can be redirected); it is
    # refused unless the target says so, e.g. a Service address inside the router's own cluster.
    allow_insecure_http: bool = Field(default=False, description="allow a plain-HTTP URL on a non-loopback host")
    # Another cloud's router as a target: its /readyz says "I can route somewhere", which could be
    # true only because it spills back here; /readyz/local says whether its own cloud can serve.
    health_path: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9/_.-]*$",
                                    description="active-check path for this target (default: router.health.path)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from urllib.parse import urlparse

        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"'{value}' is not an http(s) URL such as http://127.0.0.1:9001")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _plain_http_only_on_loopback(self) -> RouterTargetConfig:
        from urllib.parse import urlparse

        parsed = urlparse(self.url)
        if parsed.scheme == "http" and not is_loopback_host(parsed.hostname) and not self.allow_insecure_http:
            raise ValueError(f"target '{self.name}': {self.url} is plain HTTP to another host, so requests and "
                             "answers would cross the network in the clear; use https://, or set "
                             "allow_insecure_http: true on this target if the network is private (e.g. an "
                             "in-cluster Service)")
        return self

    @property
    def cloud_name(self) -> str:
        return self.cloud or self.name


class RouterHealthConfig(StrictModel):
    """Active checks (GET path on every target)."""

    path: str = "/readyz"
    interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=0.5, gt=0)
    healthy_threshold: int = Field(default=2, ge=1)
    unhealthy_threshold: int = Field(default=2, ge=1)
    jitter_s: float = Field(default=0.1, ge=0)
    fast_recheck_s: float = Field(default=0.2, gt=0, description="re-check this soon after a first failure")


class RouterOutlierConfig(StrictModel):
    """Passive outlier detection from real traffic."""

    consecutive_local_failures: int = Field(default=3, ge=1, description="refused, reset, timeout")
    consecutive_5xx: int = Field(default=5, ge=1)
    base_ejection_s: float = Field(default=5.0, gt=0, description="ejection n lasts base x n, capped")
    max_ejection_s: float = Field(default=300.0, gt=0)
    # one of three clouds: a second ejection while the first is out is more often an overloaded
    # survivor than a second outage (active checks still take a really dead one out)
    max_ejection_percent: int = Field(default=34, ge=0, le=100)


class RouterRetryConfig(StrictModel):
    per_try_timeout_s: float = Field(default=0.5, gt=0)
    # a refused connect fails at once anyway; this only bounds a silent (SYN-dropping) target,
    # and a shorter value than the per-try timeout turns event-loop stalls into false failures
    connect_timeout_s: float = Field(default=0.5, gt=0)
    attempts: int = Field(default=2, ge=1, le=5, description="tries per request, each on the next healthy cloud")
    budget_ratio: float = Field(default=0.2, ge=0, le=1, description="retries may add at most this share of load")
    budget_min_per_s: float = Field(default=10.0, ge=0)
    backoff_base_s: float = Field(default=0.002, ge=0)
    backoff_max_s: float = Field(default=0.025, ge=0)
    hedge: bool = Field(default=True, description="after the target's p95, send a second copy elsewhere")
    hedge_min_delay_s: float = Field(default=0.01, gt=0)
    # The whole request, every try and backoff included: past it no new try starts and the
    # client gets 503 + Retry-After (the entry-point client, client.py, uses the same rule).
    # Unset: what the tries can take anyway (attempts x (connect + per-try timeout) + backoff),
    # so setting the other timeouts never makes the deadline cut a try short by surprise.
    deadline_s: float | None = Field(default=None, gt=0, description="a request's total time budget in the router")

    @property
    def deadline(self) -> float:
        if self.deadline_s is not None:
            return self.deadline_s
        return self.attempts * (self.connect_timeout_s + self.per_try_timeout_s + self.backoff_max_s)
    # GET and HEAD are always safe to repeat; anything else only when listed here as "METHOD /path"
    # (feedback and admin calls are never sent twice). A "*" in the path stands for one segment:
    # "POST /v2/models/*/infer" is every model's Open Inference Protocol inference.
    retry_allow: list[str] = Field(default_factory=lambda: ["POST /v1/predict", "POST /v2/models/*/infer",
                                                            "POST /v2/models/*/versions/*/infer"],
                                   description="non-idempotent requests that may be retried and hedged")

    @field_validator("retry_allow")
    @classmethod
    def _method_and_path(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            method, _, path = entry.partition(" ")
            if not method.isalpha() or not method.isupper() or not path.startswith("/"):
                raise ValueError(f"'{entry}' is not 'METHOD /path', e.g. 'POST /v1/predict'")
        return entries


class RouterLimitsConfig(StrictModel):
    """What one client may cost the router, and when the router says it is saturated."""

    max_header_bytes: int = Field(default=16 * 1024, ge=1024, description="request line and headers together")
    max_headers: int = Field(default=100, ge=8)
    header_timeout_s: float = Field(default=10.0, gt=0, description="from a request's first byte to its last header")
    body_timeout_s: float = Field(default=30.0, gt=0, description="from the last header to the body's last byte")
    idle_timeout_s: float = Field(default=30.0, gt=0, description="a kept-alive client connection with no request")
    max_concurrency: int = Field(default=1024, ge=1, description="requests in flight; more get 503 + Retry-After")
    max_response_bytes: int = Field(default=16 << 20, gt=0, description="a larger upstream answer is a 502")
    # The event loop's lag, sampled every 50 ms: over this for half a second and the router
    # sheds new requests with 503 until it catches up (router/dataplane/overload.py).
    shed_lag_s: float = Field(default=0.1, gt=0)


class RouterFeedbackConfig(StrictModel):
    """Request ids, kept predictions and live metrics (orchestrator/router/feedback.py)."""

    keep: int = Field(default=100_000, ge=0, description="predict answers kept for feedback; 0: no request ids")
    window_s: float = Field(default=60.0, gt=0, description="live metrics (and /metrics gauges) over this window")
    refresh_s: float = Field(default=5.0, gt=0, description="recompute the live metrics this often, off the hot path")
    drift_threshold: float = Field(default=0.2, gt=0, description="PSI over this logs a drift event")


class RouterConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=0, le=65535)
    policy: str = Field(default="failover", description="a registered routing policy (router/balancer/policies.py)")
    slo_p95_ms: float = Field(default=50.0, gt=0, description="the cost policy keeps p95 within this")
    targets: list[RouterTargetConfig] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1 << 20, gt=0)
    token_env: str = Field(default="MCO_ROUTER_TOKEN", description="env var holding the admin bearer token")
    token_file: Path | None = None
    events_file: Path | None = None
    health: RouterHealthConfig = Field(default_factory=RouterHealthConfig)
    outlier: RouterOutlierConfig = Field(default_factory=RouterOutlierConfig)
    retries: RouterRetryConfig = Field(default_factory=RouterRetryConfig)
    limits: RouterLimitsConfig = Field(default_factory=RouterLimitsConfig)
    feedback: RouterFeedbackConfig = Field(default_factory=RouterFeedbackConfig)
    name: str | None = Field(default=None, description="this router's name in x-mco-router (default: host name)")
    cloud: str | None = Field(default=None, description="the cloud this router runs in (locality, /readyz/local)")
    spill: Literal["priority", "cost", "latency"] = Field(
        default="priority", description="locality policy: the order of the other clouds when the own one is down")
    workers: int = Field(default=1, ge=1, le=64, description="processes sharing the port (SO_REUSEPORT)")
    # python: the data plane on asyncio protocols in this process (router/dataplane/). rust: the
    # control plane stays here and a Rust process forwards (router/dataplane_rs/, router/rust.py).
    dataplane: Literal["python", "rust"] = Field(
        default="python", description="what forwards requests: python (in process) or rust (mco-dataplane)")
    in_cluster: bool = Field(default=False, description="`mco deploy` also runs a router in every cloud's cluster")
    in_cluster_replicas: int = Field(default=2, ge=2, le=20, description="router pods per cluster (at least 2)")
    image_repository: str = Field(default="mco-router", pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$",
                                  description="the router image's repository in each cloud's registry (under "
                                              "clouds.<c>.registry.repository), next to the model's")

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, name: str) -> str:
        # the policies register themselves; the registry, not this schema, knows their names
        from orchestrator.router.balancer.policies import policy_names

        return _registered(name, policy_names(), "router policy", "policies")


# Kubernetes quantities: (pattern, examples) per resource.
_QUANTITIES = {
    "cpu": (re.compile(r"^\d+(\.\d+)?m?$"), "2, 0.5 or 500m"),
    "memory": (re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"), "512Mi or 1Gi"),
}


class DeployResourcesConfig(StrictModel):
    """The model container's CPU and memory, as Kubernetes quantities; unset keeps the overlay's.
    Every overlay sets a CPU limit as well as a memory limit, so one busy pod cannot starve its node."""

    cpu_request: str | None = Field(default=None, description="e.g. 500m")
    cpu_limit: str | None = Field(default=None, description="e.g. 2 or 1500m")
    memory_request: str | None = Field(default=None, description="e.g. 512Mi")
    memory_limit: str | None = Field(default=None, description="e.g. 1Gi")

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantity(cls, v: str | None, info: ValidationInfo) -> str | None:
        resource = str(info.field_name).split("_")[0]
        pattern, examples = _QUANTITIES[resource]
        if v is not None and not pattern.match(v):
            raise ValueError(f"'{v}' is not a {resource} quantity (e.g. {examples})")
        return v


class DeployConfig(StrictModel):
    """How `mco deploy` rolls a release out (see orchestrator/releases/pipeline.py)."""

    replicas: int = Field(default=2, ge=1, description="model server replicas per cluster (HPA minimum)")
    auto_rollback: bool = Field(default=True, description="a cloud whose rollout fails goes back to its previous release")
    rollout_timeout_s: float = Field(default=300.0, gt=0, description="give up watching a rollout after this long")
    lock_wait_s: float = Field(default=0.0, ge=0, description="wait this long for another deploy's lock, then fail")
    resources: DeployResourcesConfig = Field(default_factory=DeployResourcesConfig)
    strategy: str = Field(default="all-at-once",
                          description="a registered release strategy (releases/strategies/): all-at-once | waves")
    waves: list[list[str]] | None = Field(default=None, description="waves' cloud order, e.g. [[aws], [gcp, azure]] "
                                                                    "(default: least-traffic cloud first, one a wave)")
    routers: list[str] = Field(default_factory=list,
                               description="admin base URLs of the routers the waves strategy shifts traffic on")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        # the strategies register themselves; the registry, not this schema, knows their names
        from orchestrator.releases.strategies import strategy_names

        return _registered(name, strategy_names(), "release strategy", "strategies")

    @field_validator("waves")
    @classmethod
    def _waves(cls, waves: list[list[str]] | None) -> list[list[str]] | None:
        if waves is None:
            return None
        seen: set[str] = set()
        for wave in waves:
            if not wave:
                raise ValueError("a wave must name at least one cloud")
            for cloud in wave:
                if cloud in seen:
                    raise ValueError(f"cloud '{cloud}' is in two waves")
                seen.add(cloud)
        return waves


class AnalysisConfig(StrictModel):
    """How the waves strategy judges a wave on live traffic (orchestrator/monitoring/rules.py)."""

    require: list[str] = Field(default_factory=list, description='live rules, e.g. "error_rate<0.01", '
                                                                 '"class_drift_psi<0.2", "live_macro_f1>=0.9"')
    steps: list[int] = Field(default_factory=lambda: [10, 50, 100],
                             description="percent of the cloud's usual traffic share, one step after the other")
    bake_s: float = Field(default=30.0, ge=0, description="let each step run this long before judging it")
    max_wait_s: float = Field(default=120.0, ge=0, description="after baking, wait this long for enough samples")
    interval_s: float = Field(default=2.0, gt=0, description="read the routers' live metrics this often")
    min_samples: int = Field(default=50, ge=1, description="answers (or labelled answers, for live_*) a rule needs")
    window_s: float = Field(default=300.0, gt=0, description="live metrics are computed over this window")
    drift_threshold: float = Field(default=0.2, gt=0, description="PSI over this logs a drift event (0.2: a shift)")

    @field_validator("require")
    @classmethod
    def _known_metrics(cls, rules: list[str]) -> list[str]:
        from orchestrator.errors import MCOError
        from orchestrator.monitoring.rules import validate_rules

        try:
            return validate_rules(rules)
        except MCOError as exc:
            raise ValueError(f"{exc.message} ({exc.hint})") from None

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(steps) or steps[-1] != 100:
            raise ValueError("steps must be increasing percentages in (0, 100], ending at 100, e.g. [10, 50, 100]")
        return steps


class StateConfig(StrictModel):
    """Where the release history and the deploy lock live (see orchestrator/releases/state/)."""

    backend: Literal["sqlite", "objectstore"] = Field(
        default="sqlite", description="sqlite: project.state_dir on this machine; objectstore: replicated over "
                                      "the clouds' buckets")
    stores: list[str] = Field(default_factory=list,
                              description="clouds whose storage bucket holds a replica (default: every cloud with "
                                          "storage); a majority must answer for a deploy")
    lease_ttl_s: float = Field(default=60.0, ge=1, le=3600,
                               description="a deploy lease not renewed for this long expires by itself")
    clock_skew_s: float = Field(default=30.0, ge=0, le=3600,
                                description="how far apart machines' clocks may be: a lease whose holder-written "
                                            "expiry is older than this is broken without waiting a TTL")

    @field_validator("stores")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        seen = set()
        for name in value:
            if name in seen:
                raise ValueError(f"store '{name}' is listed twice; list each cloud once")
            seen.add(name)
        return value


class MCOConfig(StrictModel):
    project: ProjectConfig = Field(default_factory=ProjectConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    clouds: dict[str, CloudConfig] = Field(default_factory=dict)
    packaging: PackagingConfig = Field(default_factory=PackagingConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    # Where the file was read from; relative paths in it are resolved against this.
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _state_stores_are_buckets(self) -> MCOConfig:
        from orchestrator.providers.base import Capability
        from orchestrator.providers.loader import provider_class

        for name in self.state.stores:
            cloud = self.clouds.get(name)
            if cloud is None:
                raise ValueError(f"state.stores names '{name}', which is not under clouds "
                                 f"(configured: {', '.join(self.clouds) or 'none'})")
            if cloud.storage is None:
                raise ValueError(f"state.stores names '{name}', which has no storage section; add "
                                 f"clouds.{name}.storage: {{bucket: NAME}}")
            gap = provider_class(cloud.provider).unsupported.get(Capability.CONDITIONAL_WRITE)
            if gap:
                raise ValueError(f"state.stores names '{name}', which cannot hold the release state: {gap}")
        if self.state.backend == "objectstore" and not self.state_stores():
            raise ValueError("state.backend is objectstore but no cloud has a storage section; add "
                             "clouds.<name>.storage and list the clouds in state.stores")
        return self

    def state_stores(self) -> list[str]:
        """The clouds holding a replica of the release state: ``state.stores``, else every cloud
        with storage whose provider can write conditionally."""
        if self.state.stores:
            return list(self.state.stores)
        from orchestrator.providers.base import Capability
        from orchestrator.providers.loader import provider_class

        return [n for n, c in self.clouds.items() if c.storage is not None
                and Capability.CONDITIONAL_WRITE not in provider_class(c.provider).unsupported]

    def cloud(self, name: str) -> CloudConfig:
        if name not in self.clouds:
            raise ConfigError(f"cloud '{name}' is not configured in {self.source or 'mco.yaml'}",
                              hint=f"configured clouds: {', '.join(self.clouds) or 'none'}")
        return self.clouds[name]


def _error_location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _hint_for(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "remove or rename this key; see the config reference in README.md"
    if kind == "missing":
        return "add this key"
    if kind == "literal_error":
        return str(err.get("msg", ""))
    return str(err.get("msg", "fix this value"))


def parse_config(data: Any, *, source: Path | None = None) -> MCOConfig:
    where = str(source) if source else "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of sections, not {type(data).__name__}")
    try:
        cfg = MCOConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        lines = [f"{where}: key '{_error_location(e['loc'])}': {e['msg']}" for e in errors[:5]]
        raise ConfigError("\n".join(lines), hint=_hint_for(first)) from None
    return cfg.model_copy(update={"source": source})


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping: YAML says keys are unique, and
    PyYAML would silently keep the last one, so a setting could be overridden without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges, and a key given beside it overrides it on purpose
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # SafeLoader itself refuses an unhashable key, with its line
            if key in seen:
                first = seen[key].start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first given at line {first.line + 1})", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path | None = None, *, required: bool = False) -> MCOConfig:
    """Load ``path``, or ./mco.yaml if present, or the empty default config."""
    if path is None:
        env = os.environ.get("MCO_CONFIG")
        candidates = [Path(env)] if env else [Path(p) for p in DEFAULT_CONFIG_FILES]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            if required:
                raise ConfigError("no mco.yaml found in this directory",
                                  hint="pass --config FILE, or run `mco local up` to write mco.local.yaml")
            return MCOConfig()
        path = found
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist",
                          hint="check the --config path, or run `mco local up` to write mco.local.yaml")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                          hint="save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = str(getattr(exc, "problem", exc))
        if problem.startswith("duplicate key"):
            raise ConfigError(f"{where}: {problem}", hint="give each key once; YAML would keep only one") from None
        raise ConfigError(f"{where}: not valid YAML ({problem})", hint="fix the YAML syntax at that line") from None
    return parse_config(data, source=path)
