"""Run the router with uvicorn (uvloop + httptools when installed).

``serve`` blocks (``mco router serve``, ``python -m orchestrator.router``) and re-reads
the config file on SIGHUP. ``RouterServer`` runs it in a background thread of this
process, for tests and the benchmark.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.config import RouterConfig, RouterTargetConfig
from orchestrator.errors import Unreachable
from orchestrator.router.app import RouterApp, build_router

if TYPE_CHECKING:
    import uvicorn

__all__ = ["RouterServer", "serve"]


def _uvicorn_config(app: RouterApp, cfg: RouterConfig, *, log_level: str = "warning") -> uvicorn.Config:
    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return uvicorn.Config(app, host=cfg.host, port=cfg.port, loop=loop, http=http, lifespan="on",
                          log_level=log_level, access_log=False, server_header=False, date_header=False,
                          timeout_keep_alive=30, backlog=2048)


def serve(cfg: RouterConfig, *, token: str | None, config_path: Path | None = None, client: str = "aiohttp",
          log_level: str = "warning") -> None:
    """Serve until SIGINT/SIGTERM. With ``config_path``, SIGHUP re-reads the targets from it."""
    import uvicorn

    app, router = build_router(cfg, token=token, config_path=config_path, client=client)
    router.handle_sighup = config_path is not None
    uvicorn.Server(_uvicorn_config(app, cfg, log_level=log_level)).run()


class RouterServer:
    """The router on a background thread of this process. ``start()`` waits until it listens."""

    def __init__(self, cfg: RouterConfig, *, token: str | None = None, client: str = "aiohttp") -> None:
        if cfg.port == 0:
            from orchestrator.net import free_port

            cfg = cfg.model_copy(update={"port": free_port(cfg.host)})
        self.cfg = cfg
        self.app, self.router = build_router(cfg, token=token, client=client)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.port}"

    def start(self, timeout: float = 15.0) -> RouterServer:
        import uvicorn

        server = self._server = uvicorn.Server(_uvicorn_config(self.app, self.cfg))
        self._thread = threading.Thread(target=server.run, name="mco-router", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise Unreachable(f"the router did not start on {self.url}")
            time.sleep(0.02)
        return self

    def set_targets(self, targets: list[RouterTargetConfig]) -> None:
        loop = self.router.loop
        assert loop is not None, "start() first"
        done = threading.Event()

        def apply() -> None:
            try:
                self.router.set_targets(targets)
            finally:
                done.set()

        loop.call_soon_threadsafe(apply)
        done.wait(5)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = None
        self._thread = None

    def __enter__(self) -> RouterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
