"""Health: active checks (``active``) and passive outlier detection (``passive``).

They are separate parts. Each reports to the balancer through one method,
``StatusSink.set_status(target, up)``, and only calls it on a real transition.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["StatusSink"]


class StatusSink(Protocol):
    def set_status(self, target: str, up: bool) -> None: ...
