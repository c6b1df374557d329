"""Run the model server with uvicorn (uvloop + httptools when installed).

Used by ``mco serve`` on a laptop and by ``python -m orchestrator.serving`` in the image.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.serving.app import ServerSettings, build_app
from orchestrator.serving.limits import (
    ConnectionLimits,
    guarded_protocol,
    limit_requests,
)
from orchestrator.serving.loader import load_verified

__all__ = ["run_server"]


def run_server(bundle_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8080,
               expected_digest: str | None = None, max_body_bytes: int = 1 << 20,
               limits: ConnectionLimits | None = None, log_level: str = "warning") -> None:
    import asyncio

    import uvicorn

    limits = limits or ConnectionLimits()
    bundle, model = load_verified(bundle_dir, expected_digest=expected_digest)
    app = limit_requests(build_app(bundle, model, ServerSettings(max_body_bytes=max_body_bytes)), limits)
    loop = "uvloop" if _has("uvloop") else "asyncio"
    # httptools is in the serve extra; h11 (without it) caps headers but has no read deadlines.
    http: type[asyncio.Protocol] | str = guarded_protocol(limits) if _has("httptools") else "h11"
    uvicorn.run(app, host=host, port=port, loop=loop, http=http, log_level=log_level,
                access_log=False, server_header=False, timeout_keep_alive=limits.keep_alive,
                limit_concurrency=limits.max_connections, h11_max_incomplete_event_size=limits.max_header_bytes)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> None:
    """Container entrypoint: configured by environment variables only."""
    import sys

    from orchestrator.errors import MCOError

    try:
        run_server(
            os.environ.get("MCO_MODEL_DIR", "/opt/mco/model"),
            host=os.environ.get("MCO_HOST", "0.0.0.0"),
            port=int(os.environ.get("MCO_PORT", "8080")),
            expected_digest=os.environ.get("MCO_MODEL_DIGEST") or None,
            max_body_bytes=int(os.environ.get("MCO_MAX_BODY_BYTES", str(1 << 20))),
        )
    except MCOError as exc:
        print(f"mco model server: refusing to start: {exc}", file=sys.stderr, flush=True)
        sys.exit(3)
