"""Run the router's data plane (``orchestrator/router/dataplane/``).

``serve`` blocks (``mco router serve``, ``python -m orchestrator.router``) and re-reads
the config file on SIGHUP. ``RouterServer`` runs it in a background thread of this
process, for tests and the benchmark.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import RouterConfig, RouterTargetConfig
from orchestrator.errors import Unreachable
from orchestrator.router.dataplane import DataPlaneThread
from orchestrator.router.dataplane import serve as _serve
from orchestrator.router.state import Router

__all__ = ["RouterServer", "serve"]


def serve(cfg: RouterConfig, *, token: str | None, config_path: Path | None = None) -> None:
    """Serve until SIGINT/SIGTERM. With ``config_path``, SIGHUP re-reads the targets from it."""
    _serve(cfg, token=token, config_path=config_path)


class RouterServer:
    """The router on a background thread of this process. ``start()`` waits until it listens."""

    def __init__(self, cfg: RouterConfig, *, token: str | None = None) -> None:
        if cfg.port == 0:
            from orchestrator.net import free_port

            cfg = cfg.model_copy(update={"port": free_port(cfg.host)})
        self.cfg = cfg
        self.router = Router(cfg, token=token)
        self._plane = DataPlaneThread(self.router)

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.port}"

    def start(self, timeout: float = 15.0) -> RouterServer:
        try:
            self._plane.start(timeout)
        except RuntimeError as exc:
            raise Unreachable(f"the router did not start on {self.url}: {exc}") from None
        return self

    def set_targets(self, targets: list[RouterTargetConfig]) -> None:
        self._plane.set_targets(targets)

    def stop(self) -> None:
        self._plane.stop()

    def __enter__(self) -> RouterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
