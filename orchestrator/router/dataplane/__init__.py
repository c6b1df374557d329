"""The router's data plane: asyncio protocols on uvloop, llhttp (httptools) parsing both ways.

* ``server.py``: one protocol per client connection (limits, deadlines, shedding, the
  admin adapter), ``DataPlane`` (the listener and its sweep), ``serve`` and
  ``DataPlaneThread``;
* ``forward.py``: one request across the targets: tries, retries, hedges, accounting;
* ``upstream.py``: a keep-alive connection pool per target, answers buffered whole;
* ``overload.py``: the event loop's lag, for shedding and for not blaming clouds.

The shared state (balancer, health, budget, stats, events) is ``Router`` in
``orchestrator/router/state.py``; the admin API and ``/metrics`` are ``admin.py``.
"""

from __future__ import annotations

from orchestrator.router.dataplane.server import DataPlane, DataPlaneThread, serve

__all__ = ["DataPlane", "DataPlaneThread", "serve"]
