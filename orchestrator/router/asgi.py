"""The one shape of a reply, and the ASGI types of the admin API.

A ``Reply`` is ``(status, headers, body)``: what an upstream answered, what the admin
API answers, and what the router sends when it answers itself. Headers are raw
``(name, value)`` byte pairs. The data plane hands admin calls to ``AdminApi`` as an
ASGI scope and ``receive`` (``dataplane/server.py``), so the admin API stays a small
ASGI app off the hot path.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Headers", "Receive", "Reply", "Scope", "json_reply"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, Headers, bytes]


def json_reply(status: int, body: Any, *extra: tuple[bytes, bytes]) -> Reply:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    return status, headers + list(extra), payload

