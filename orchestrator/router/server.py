"""Run the router's data plane (``orchestrator/router/dataplane/``).

``serve`` blocks (``mco router serve``, ``python -m orchestrator.router``) and re-reads
the config file on SIGHUP. ``RouterServer`` runs it in a background thread of this
process, for tests and the benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.config import RouterConfig, RouterTargetConfig
from orchestrator.errors import Unreachable
from orchestrator.router.dataplane import DataPlaneThread
from orchestrator.router.dataplane import serve as _serve
from orchestrator.router.state import Router

if TYPE_CHECKING:
    from orchestrator.router.rust import RustDataPlane

__all__ = ["RouterServer", "serve"]


def serve(cfg: RouterConfig, *, token: str | None, config_path: Path | None = None) -> None:
    """Serve until SIGINT/SIGTERM. With ``config_path``, SIGHUP re-reads the targets from it.
    ``router.dataplane: rust``: the control plane here and mco-dataplane forwarding (rust.py)."""
    if cfg.dataplane == "rust":
        from orchestrator.router.rust import serve_rust

        serve_rust(cfg, token=token, config_path=config_path)
        return
    _serve(cfg, token=token, config_path=config_path)


class RouterServer:
    """The router on a background thread of this process. ``start()`` waits until it listens."""

    def __init__(self, cfg: RouterConfig, *, token: str | None = None) -> None:
        if cfg.port == 0:
            from orchestrator.net import free_port

            cfg = cfg.model_copy(update={"port": free_port(cfg.host)})
        self.cfg = cfg
        self.router = Router(cfg, token=token)
        self._rust: RustDataPlane | None = None
        if cfg.dataplane == "rust":  # the control plane on this thread's loop, mco-dataplane on cfg.port
            from orchestrator.net import free_port
            from orchestrator.router.rust import RustDataPlane, RustLink, check_supported

            check_supported(cfg)
            control_port = free_port("127.0.0.1")
            self._plane = DataPlaneThread(self.router, listen=("127.0.0.1", control_port))
            self._rust = RustDataPlane(RustLink(self.router), host=cfg.host, port=cfg.port, control_port=control_port)
        else:
            self._plane = DataPlaneThread(self.router)

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.port}"

    def start(self, timeout: float = 15.0) -> RouterServer:
        try:
            self._plane.start(timeout)
        except RuntimeError as exc:
            raise Unreachable(f"the router did not start on {self.url}: {exc}") from None
        if self._rust is not None:
            try:
                self._rust.start(timeout)
            except Unreachable:
                self._plane.stop()
                raise
        return self

    def set_targets(self, targets: list[RouterTargetConfig]) -> None:
        self._plane.set_targets(targets)
        link = self.router.rust_link
        if link is not None:  # returns once the Rust data plane routes by the new targets
            link.table()  # (a new version, since the targets changed)
            link.wait_synced(link.version)

    def stop(self) -> None:
        if self._rust is not None:
            self._rust.stop()
        self._plane.stop()

    def __enter__(self) -> RouterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
