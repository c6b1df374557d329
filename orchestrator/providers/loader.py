"""Which provider implements which cloud, and what the rest of mco may ask about the clouds.

Every cloud is one class in one module of this package; this list is the only other place
that names it. Provider modules import their SDK only when a store is opened (a missing
SDK becomes a ``MissingExtraError`` naming the pip extra), so loading the classes is cheap.
Config validation, the image's fetch SDKs, manifest overlays, registry logins and price
keys ask these functions instead of listing the clouds themselves.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import CloudConfig, MCOConfig
from orchestrator.errors import ConfigError
from orchestrator.providers.aws import AwsProvider
from orchestrator.providers.azure import AzureProvider
from orchestrator.providers.base import Provider
from orchestrator.providers.gcp import GcpProvider
from orchestrator.providers.local import LocalProvider

__all__ = [
    "PROVIDERS",
    "fetch_extras",
    "get_provider",
    "overlays",
    "provider_class",
    "provider_for_registry_auth",
    "provider_names",
    "providers_for",
    "registry_auths",
]

PROVIDERS: dict[str, type[Provider]] = {cls.name: cls for cls in (AwsProvider, GcpProvider, AzureProvider,
                                                                   LocalProvider)}


def provider_names() -> tuple[str, ...]:
    """What ``clouds.<cloud>.provider`` may say."""
    return tuple(PROVIDERS)


def fetch_extras() -> tuple[str, ...]:
    """The pip extras a fetch-at-startup image may install: one per cloud with an SDK."""
    return tuple(cls.extra for cls in PROVIDERS.values() if cls.extra)


def overlays() -> tuple[str, ...]:
    """The manifest overlays the providers use, each once (``kind`` serves the local one)."""
    return tuple(dict.fromkeys(cls.overlay for cls in PROVIDERS.values()))


def registry_auths() -> tuple[str, ...]:
    """The ``registry.auth`` values that log in with a cloud's identity (besides none and basic)."""
    return tuple(cls.registry_auth for cls in PROVIDERS.values() if cls.registry_auth)


def provider_class(provider: str) -> type[Provider]:
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown provider '{provider}'", hint=f"use one of: {', '.join(PROVIDERS)}")
    return PROVIDERS[provider]


def provider_for_registry_auth(auth: str) -> type[Provider]:
    """The provider whose identity ``registry.auth: <auth>`` logs in with."""
    for cls in PROVIDERS.values():
        if cls.registry_auth == auth:
            return cls
    raise ConfigError(f"unknown registry auth '{auth}'",
                      hint=f"use one of: none, basic, {', '.join(registry_auths())}")


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
