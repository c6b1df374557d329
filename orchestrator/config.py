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
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.errors import ConfigError

__all__ = [
    "CloudConfig",
    "ClusterConfig",
    "RegistryConfig",
    "GateConfig",
    "MCOConfig",
    "ProjectConfig",
    "StorageConfig",
    "StrictModel",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_FILES = ("mco.yaml", "mco.yml")
ProviderName = Literal["aws", "gcp", "azure", "local"]


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

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from urllib.parse import urlparse

        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"'{value}' is not an http(s) URL such as http://127.0.0.1:9000")
        return value.rstrip("/")

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
    auth: Literal["none", "basic", "ecr", "gcp", "acr"] = "none"
    # Basic auth reads its secret from the environment; the config only names the variables.
    username_env: str | None = None
    password_env: str | None = None
    insecure_http: bool = Field(default=False, description="plain HTTP (local registries only)")


class ClusterConfig(StrictModel):
    """A Kubernetes cluster target for one cloud."""

    context: str = Field(min_length=1, description="kube context name, e.g. kind-mco-aws")
    kubeconfig: Path | None = None
    kind_cluster: str | None = Field(default=None, description="kind cluster name when the target is kind")
    namespace: str = "mco"
    endpoint: str | None = Field(default=None, description="URL where clients reach the model Service")
    node_port: int | None = Field(default=None, ge=30000, le=32767)


class CloudConfig(StrictModel):
    provider: ProviderName
    storage: StorageConfig | None = None
    registry: RegistryConfig | None = None
    cluster: ClusterConfig | None = None
    priority: int = Field(default=0, description="router failover order: lower is preferred")
    pricing_key: str | None = Field(default=None, description="entry in the price catalog, e.g. aws/us-east-1")


class MCOConfig(StrictModel):
    project: ProjectConfig = Field(default_factory=ProjectConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    clouds: dict[str, CloudConfig] = Field(default_factory=dict)
    # Where the file was read from; relative paths in it are resolved against this.
    source: Path | None = Field(default=None, exclude=True)

    def cloud(self, name: str) -> CloudConfig:
        if name not in self.clouds:
            raise ConfigError(f"cloud '{name}' is not configured in {self.source or 'mco.yaml'}",
                              hint=f"configured clouds: {', '.join(self.clouds) or 'none'}")
        return self.clouds[name]


def _error_location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _hint_for(err: dict[str, Any]) -> str:
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
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})",
                          hint="fix the YAML syntax at that line") from None
    return parse_config(data, source=path)
