"""Release strategies: how a release reaches the clouds once it is built and published.

* ``all-at-once`` (default): every cloud in parallel, as ``releases.deployer`` does.
* ``waves``: cloud by cloud; each wave's traffic share grows in steps through the
  routers' admin API, and the wave is judged by the model's live metrics before the next
  one starts (``waves.py``).

A strategy is one class registered with ``@register_strategy``, like the router's
policies: ``deploy.strategy`` in mco.yaml is checked against ``strategy_names()``, and the
pipeline builds one with ``strategy_class(name)``. Adding a strategy is adding a module
here, importing it below, and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.config import MCOConfig
    from orchestrator.releases.deployer import CloudTarget, DeployResult, DeploySettings, ProgressFn
    from orchestrator.releases.state import History, StateLock

__all__ = ["DeployJob", "Strategy", "register_strategy", "strategy_class", "strategy_names"]


@dataclass
class DeployJob:
    """Everything the pipeline prepared for one deploy: what a strategy applies."""

    cfg: MCOConfig
    store: History
    lock: StateLock
    targets: list[CloudTarget]
    model_digest: str
    settings: DeploySettings
    bundle_ref: str | None = None
    gate_forced: bool = False
    gate_summary: str | None = None
    progress: ProgressFn | None = None
    failed_before_apply: dict[str, tuple[str, str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # strategy-specific inputs (tests, drills)


class Strategy:
    name: ClassVar[str]
    summary: ClassVar[str]

    def run(self, job: DeployJob) -> DeployResult:
        raise NotImplementedError


_REGISTRY: dict[str, type[Strategy]] = {}
S = TypeVar("S", bound=type[Strategy])


def register_strategy(cls: S) -> S:
    """Class decorator: make a strategy known by its ``name`` to the config and the pipeline."""
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} must set a class attribute `name` to be registered as a release strategy")
    if not isinstance(cls.__dict__.get("summary"), str):
        raise TypeError(f"release strategy '{name}' must declare `summary`")
    known = _REGISTRY.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"release strategy '{name}' is already registered by {known.__module__}.{known.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def strategy_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def strategy_class(name: str) -> type[Strategy]:
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown release strategy '{name}'", hint=f"use one of: {', '.join(_REGISTRY)}")
    return cls


# The built-in strategies register on import (after the registry exists).
from orchestrator.releases.strategies import all_at_once, waves  # noqa: E402, F401
