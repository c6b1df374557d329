"""The ASGI types the data plane and the admin API share, and the one shape of a reply.

A ``Reply`` is ``(status, headers, body)``: what an upstream answered, what the admin
API answers, and what the router sends when it answers itself. Headers are raw
``(name, value)`` byte pairs, as ASGI servers and upstream clients hand them over.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Headers", "Receive", "Reply", "Scope", "Send", "json_reply", "send_reply"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, Headers, bytes]


def json_reply(status: int, body: Any, *extra: tuple[bytes, bytes]) -> Reply:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    return status, headers + list(extra), payload


async def send_reply(send: Send, reply: Reply) -> None:
    status, headers, body = reply
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
