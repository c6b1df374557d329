"""Where the router's targets and admin token come from.

Targets: ``router.targets`` in mco.yaml, plus every cloud in ``clouds:`` whose cluster
has an ``endpoint`` (the cloud's ``priority`` and ``pricing_key`` carry over). A name in
``router.targets`` wins over the cloud of the same name.

Token: ``$MCO_ROUTER_TOKEN`` (or the variable ``router.token_env`` names), else the file
``router.token_file``, which must be mode 600 (no group or other bits) and hold at least 32
bytes. It is compared in constant time and never printed or logged.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import ValidationError

from orchestrator.config import MCOConfig, RouterConfig, RouterTargetConfig
from orchestrator.errors import ConfigError
from orchestrator.secret_files import read_secret_file

__all__ = ["MIN_TOKEN_BYTES", "ensure_token_file", "read_token", "router_config_with_targets", "targets_from_config"]


def _released_endpoints(cfg: MCOConfig) -> dict[str, str]:
    """Endpoints recorded by the current release of each cloud (what ``mco status`` shows)."""
    if cfg.source is None or not cfg.clouds:
        return {}  # no project file, so no project history to read
    try:
        from orchestrator.releases.state import open_history

        store = open_history(cfg, create=False)
        if store is None:
            return {}
        with store:
            found = {name: getattr(store.current(name), "endpoint", None) for name in cfg.clouds}
    except Exception:  # no history (or an unreadable one) just means config endpoints
        return {}
    return {name: url for name, url in found.items() if url}


def targets_from_config(cfg: MCOConfig) -> list[RouterTargetConfig]:
    """``router.targets``, then each cloud with an endpoint: the one its current release
    recorded (as ``mco status`` shows it), else ``cluster.endpoint``."""
    targets = list(cfg.router.targets)
    named = {t.name for t in targets}
    released = _released_endpoints(cfg)
    for name, cloud in cfg.clouds.items():
        url = released.get(name) or (cloud.cluster.endpoint if cloud.cluster is not None else None)
        if name in named or not url:
            continue
        try:
            targets.append(RouterTargetConfig(name=name, url=url, priority=cloud.priority,
                                              pricing_key=cloud.pricing_key))
        except ValidationError as exc:
            raise ConfigError(f"clouds.{name}.cluster.endpoint: {exc.errors()[0]['msg'].removeprefix('Value error, ')}",
                              hint=f"serve it over https://, or list it under router.targets as '{name}' with "
                                   "allow_insecure_http: true") from None
    return targets


def router_config_with_targets(cfg: MCOConfig) -> RouterConfig:
    return cfg.router.model_copy(update={"targets": targets_from_config(cfg)})


MIN_TOKEN_BYTES = 32  # a token file holding less is refused: short tokens can be guessed


def read_token(cfg: RouterConfig, *, base: Path | None = None) -> str | None:
    value = os.environ.get(cfg.token_env)
    if value:
        return value.strip()
    if cfg.token_file is not None:
        path = cfg.token_file if cfg.token_file.is_absolute() or base is None else base / cfg.token_file
        return read_secret_file(path, what="the router token file", hint=f"create it, or set ${cfg.token_env}",
                                min_bytes=MIN_TOKEN_BYTES)
    return None


def ensure_token_file(path: Path) -> str:
    """Return the token in ``path``, creating a random one (mode 0600) if it is missing."""
    if path.is_file() and path.read_bytes().strip():
        return read_secret_file(path, what="the router token file", hint="delete it to have a new one made",
                                min_bytes=MIN_TOKEN_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token
