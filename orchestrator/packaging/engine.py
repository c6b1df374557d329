"""The Docker engine connection: one place that says how to start an engine when there is none."""

from __future__ import annotations

import os
from typing import Any

from orchestrator.errors import MissingExtraError, Unreachable

__all__ = ["docker_client", "engine_address"]

START_HINT = (
    "start a Docker engine: `sudo bash scripts/setup/10-docker.sh` (runs dockerd in the background), "
    "or `sudo systemctl start docker`; if DOCKER_HOST is set, point it at a running engine or unset it"
)


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def docker_client(*, timeout: int = 600) -> Any:
    """A connected ``docker.DockerClient``; ``Unreachable`` with a how-to-start hint if there is no engine."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:
        raise MissingExtraError("docker", "docker", purpose="building and pushing images") from exc
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise Unreachable(f"cannot reach the Docker engine at {engine_address()}: {_short(exc)}",
                          hint=START_HINT) from exc
    except Exception as exc:  # requests/urllib3 errors that docker-py lets through
        raise Unreachable(f"cannot reach the Docker engine at {engine_address()}: {_short(exc)}",
                          hint=START_HINT) from exc
    return client


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
