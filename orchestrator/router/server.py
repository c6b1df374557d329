"""Run the router: the data plane (``orchestrator/router/dataplane/``, the default) or the
old ASGI app on uvicorn (``client="aiohttp"`` or ``"httpx"``, kept for comparison).

``serve`` blocks (``mco router serve``, ``python -m orchestrator.router``) and re-reads
the config file on SIGHUP. ``RouterServer`` runs it in a background thread of this
process, for tests and the benchmark.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

from orchestrator.config import RouterConfig, RouterTargetConfig
from orchestrator.errors import Unreachable
from orchestrator.router.app import RouterApp, build_router

__all__ = ["RouterServer", "serve"]


def _uvicorn_config(app: RouterApp, cfg: RouterConfig, *, log_level: str = "warning"):  # noqa: ANN202
    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return uvicorn.Config(app, host=cfg.host, port=cfg.port, loop=loop, http=http, lifespan="on",
                          log_level=log_level, access_log=False, server_header=False, date_header=False,
                          timeout_keep_alive=30, backlog=2048)


def serve(cfg: RouterConfig, *, token: str | None, config_path: Path | None = None, client: str = "dataplane",
          log_level: str = "warning") -> None:
    """Serve until SIGINT/SIGTERM. With ``config_path``, SIGHUP re-reads the targets from it."""
    if client == "dataplane":
        from orchestrator.router.dataplane import serve as serve_dataplane

        serve_dataplane(cfg, token=token, config_path=config_path)
        return
    import uvicorn

    app, router = build_router(cfg, token=token, config_path=config_path, client=client)
    router.handle_sighup = config_path is not None
    uvicorn.Server(_uvicorn_config(app, cfg, log_level=log_level)).run()


class RouterServer:
    """The router on a background thread of this process. ``start()`` waits until it listens."""

    def __init__(self, cfg: RouterConfig, *, token: str | None = None, client: str = "dataplane") -> None:
        if cfg.port == 0:
            from orchestrator.local.processes import free_port

            cfg = cfg.model_copy(update={"port": free_port(cfg.host)})
        self.cfg = cfg
        self._plane = None
        if client == "dataplane":
            from orchestrator.router.dataplane import DataPlaneThread
            from orchestrator.router.state import Router

            self.router = Router(cfg, token=token)
            self._plane = DataPlaneThread(self.router)
        else:
            self.app, self.router = build_router(cfg, token=token, client=client)
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.port}"

    def start(self, timeout: float = 15.0) -> RouterServer:
        if self._plane is not None:
            try:
                self._plane.start(timeout)
            except RuntimeError as exc:
                raise Unreachable(f"the router did not start on {self.url}: {exc}") from None
            return self
        import uvicorn

        self._server = uvicorn.Server(_uvicorn_config(self.app, self.cfg))
        self._thread = threading.Thread(target=self._server.run, name="mco-router", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise Unreachable(f"the router did not start on {self.url}")
            time.sleep(0.02)
        return self

    def set_targets(self, targets: list[RouterTargetConfig]) -> None:
        if self._plane is not None:
            self._plane.set_targets(targets)
            return
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
        if self._plane is not None:
            self._plane.stop()
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
