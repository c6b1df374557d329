"""What every component shares: the refusal of insecure settings and child options."""

from __future__ import annotations

import importlib
import re
import warnings
from types import ModuleType
from typing import Any

import pulumi

__all__ = ["InsecureSettingError", "child", "refuse", "safe_name", "sdk_module"]


def sdk_module(name: str) -> ModuleType:
    """Import a Pulumi SDK submodule (``pulumi_aws.s3``) without its import-time deprecation noise.

    Importing ``pulumi_aws.s3`` defines every class in it, and the deprecated ones
    (``BucketV2``, ``BucketAclV2``, ``BucketAccelerateConfigurationV2``, ...) warn as they are
    *defined*, whether or not a program uses them. mco's components use only the current
    resources (``Bucket``, ``BucketVersioning``, ...); ``tests/unit/infra/test_deprecations.py``
    turns every deprecation warning raised while the stacks run into an error, so a deprecated
    resource or argument used by a component still fails loudly."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_")
        module = importlib.import_module(name)
        getattr(module, "__mco_load__", None)  # SDK submodules load lazily, on first attribute access
    return module


class InsecureSettingError(pulumi.RunError):
    """A component was asked for a setting it does not allow.

    ``pulumi.RunError`` makes the engine print the message without a Python
    traceback, so ``pulumi preview`` stops with exactly this text.
    """

    def __init__(self, component: str, setting: str, why: str, fix: str) -> None:
        super().__init__(f"{component}: '{setting}' is not allowed: {why}. fix: {fix}")
        self.component = component
        self.setting = setting


def refuse(condition: bool, component: str, setting: str, why: str, fix: str) -> None:
    """Raise :class:`InsecureSettingError` when ``condition`` holds (checked before any child exists)."""
    if condition:
        raise InsecureSettingError(component, setting, why, fix)


def child(parent: pulumi.Resource, **extra: Any) -> pulumi.ResourceOptions:
    """Options for a child resource: always parented to its component."""
    return pulumi.ResourceOptions(parent=parent, **extra)


def safe_name(text: str, *, max_len: int = 63, sep: str = "-") -> str:
    """Lower-case ``text`` into ``[a-z0-9-]`` (DNS-label style), trimmed to ``max_len``."""
    out = re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)
    return out[:max_len].rstrip(sep) or "mco"
