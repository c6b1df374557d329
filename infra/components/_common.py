"""What every component shares: the refusal of insecure settings and child options."""

from __future__ import annotations

import re
from typing import Any

import pulumi

__all__ = ["InsecureSettingError", "child", "refuse", "safe_name"]


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
