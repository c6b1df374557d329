"""Render the router's targets, checks, retries and priorities as a config for a proven proxy.

``render(cfg, fmt)`` with ``fmt`` in ``haproxy`` / ``envoy``. Users who outgrow one
Python process run that proxy with the same policy. What a proxy cannot express is
said in a comment at the top of the rendered file, not silently dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.config import RouterConfig, RouterTargetConfig

__all__ = ["FORMATS", "Endpoint", "endpoints", "ranked", "render"]

FORMATS = ("haproxy", "envoy")


class Endpoint:
    def __init__(self, target: RouterTargetConfig) -> None:
        parsed = urlparse(target.url)
        self.name = target.name
        self.tls = parsed.scheme == "https"
        self.host = parsed.hostname or ""
        self.port = parsed.port or (443 if self.tls else 80)
        self.path_prefix = parsed.path.rstrip("/")
        self.target = target


def endpoints(cfg: RouterConfig) -> list[Endpoint]:
    if not cfg.targets:
        raise ConfigError("the router has no targets to export",
                          hint="add router.targets to mco.yaml, or clouds with cluster.endpoint")
    out = [Endpoint(t) for t in sorted(cfg.targets, key=lambda t: t.priority)]
    prefixed = [e.name for e in out if e.path_prefix]
    if prefixed:
        raise ConfigError(f"targets {', '.join(prefixed)} have a URL path; exported proxies forward paths unchanged",
                          hint="use base URLs such as http://host:port for every target")
    return out


def ranked(cfg: RouterConfig, eps: list[Endpoint]) -> list[Endpoint]:
    """The endpoints in the static order the policy ranks them in (priority, or for ``cost`` cheapest first)."""
    from orchestrator.router.balancer.policies import policy_class

    rank = policy_class(cfg.policy).static_rank
    return sorted(eps, key=lambda e: rank(e.target))


def render(cfg: RouterConfig, fmt: str) -> str:
    if fmt == "haproxy":
        from orchestrator.router.export.haproxy import render_haproxy

        return render_haproxy(cfg)
    if fmt == "envoy":
        from orchestrator.router.export.envoy import render_envoy

        return render_envoy(cfg)
    raise ConfigError(f"unknown export format '{fmt}'", hint=f"use one of: {', '.join(FORMATS)}")
