"""Which provider implements which cloud, imported only when asked for (like fsspec's registry).

A provider module does not import its SDK at import time, so loading the class is cheap;
the SDK is imported when a store is opened, and a missing SDK becomes a
``MissingExtraError`` naming the pip extra to install.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import CloudConfig, MCOConfig
from orchestrator.errors import ConfigError
from orchestrator.providers.base import Provider

__all__ = ["PROVIDERS", "ProviderSpec", "get_provider", "provider_class", "providers_for"]


@dataclass(frozen=True)
class ProviderSpec:
    class_path: str            # "module:Class"
    extra: str | None          # pip extra with the SDK
    package: str | None        # the SDK's import name, for the install hint


PROVIDERS: dict[str, ProviderSpec] = {
    "aws": ProviderSpec("orchestrator.providers.aws:AwsProvider", "aws", "boto3"),
    "gcp": ProviderSpec("orchestrator.providers.gcp:GcpProvider", "gcp", "google-cloud-storage"),
    "azure": ProviderSpec("orchestrator.providers.azure:AzureProvider", "azure", "azure-storage-blob"),
    "local": ProviderSpec("orchestrator.providers.local:LocalProvider", None, None),
}


def provider_class(provider: str) -> type[Provider]:
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown provider '{provider}'", hint=f"use one of: {', '.join(PROVIDERS)}")
    module, cls = PROVIDERS[provider].class_path.split(":")
    return getattr(importlib.import_module(module), cls)


def get_provider(cloud: str, config: CloudConfig, *, base_dir: Path | None = None) -> Provider:
    """The provider for one configured cloud (``clouds.<cloud>`` in mco.yaml)."""
    return provider_class(config.provider)(cloud, config, base_dir=base_dir)


def providers_for(cfg: MCOConfig, clouds: list[str] | None = None, *, need_storage: bool = True) -> dict[str, Provider]:
    """``{cloud: Provider}`` for the chosen clouds (default: every cloud with a storage section)."""
    base_dir = Path(cfg.source).resolve().parent if cfg.source else None
    names = list(clouds) if clouds else [n for n, c in cfg.clouds.items() if c.storage is not None or not need_storage]
    out: dict[str, Provider] = {}
    for name in names:
        cloud = cfg.cloud(name)
        if need_storage and cloud.storage is None:
            raise ConfigError(f"cloud '{name}' has no storage section in {cfg.source or 'the config'}",
                              hint=f"add clouds.{name}.storage: {{bucket: NAME}}")
        out[name] = get_provider(name, cloud, base_dir=base_dir)
    return out
