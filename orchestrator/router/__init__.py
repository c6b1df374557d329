"""The mco router: one endpoint for clients, the same model on every cloud behind it.

Public API (stable; the drills of issue 8 and ``mco demo`` use exactly this)
=============================================================================

Targets and configuration
-------------------------
``orchestrator.config.RouterConfig`` (the ``router:`` section of mco.yaml, a frozen
pydantic model) configures everything; ``RouterTargetConfig`` is one target::

    from orchestrator.config import RouterConfig, RouterTargetConfig
    cfg = RouterConfig(
        port=8088, policy="failover",   # a registered policy: failover | weighted | latency | cost | locality
        targets=[RouterTargetConfig(name="aws", url="http://127.0.0.1:9001", priority=0,
                                    weight=1, pricing_key="aws/us-east-1"),
                 RouterTargetConfig(name="gcp", url="http://127.0.0.1:9002", priority=1,
                                    pricing_key="gcp/us-central1")],
    )

``orchestrator.router.settings.targets_from_config(mco_config)`` merges ``router.targets``
with the ``clouds:`` section (each cloud with ``cluster.endpoint``; ``priority`` and
``pricing_key`` come from the cloud).

Running it
----------
* In a subprocess (recommended for drills: ``kill -9`` of a model server never
  disturbs the router's event loop)::

      from orchestrator.router import RouterProcess
      with RouterProcess(cfg, token="secret", state_dir=tmp) as router:   # waits until it listens
          router.url             # "http://127.0.0.1:8088"
          router.status()        # GET /admin/status as a dict
          router.events()        # GET /admin/events as a list of dicts
          router.set_targets([...RouterTargetConfig...])   # hot reload via the admin API
          router.reload()        # SIGHUP: re-read the config file the process was started with

  It runs ``python -m orchestrator.router --config FILE`` (the same as
  ``mco router serve --config FILE``) with the token in ``MCO_ROUTER_TOKEN``.
* In-process (tests): ``orchestrator.router.server.RouterServer(cfg, token=...)`` with
  ``start()`` (the data plane on a background thread; also a context manager), ``url``,
  ``router`` (the state, ``orchestrator.router.state.Router``: ``router.status()``,
  ``router.events.since(0)``), ``set_targets([...])`` and ``stop()``.
  ``orchestrator.router.server.serve(cfg, token=...)`` blocks.

Inside: ``dataplane/`` (the hot path on asyncio protocols: ``server.py`` client side,
limits and shedding; ``forward.py`` tries, retries and hedges; ``upstream.py`` a
keep-alive pool per target; ``overload.py`` the loop's own lag), ``state.py`` (the
``Router`` state it shares with ``admin.py`` and ``metrics.py``), ``sampler.py``
(recent windows and time series), ``report.py`` (status and series reports, the
PNG/HTML report), ``balancer/`` (health-driven order; ``policies.py`` is the registry
of routing policies), ``health/``, ``accounting.py``, ``retries.py``, ``asgi.py`` (the
``Reply`` shape), ``export/`` (HAProxy and Envoy configs).

``router.dataplane: rust`` (``mco router serve --dataplane rust``): this package stays the
control plane, on a loopback port, and ``mco-dataplane`` (``dataplane_rs/``, tokio + hyper,
built by ``make setup``) forwards on ``router.port``; ``rust.py`` is the link between them
(the routing table out, per-target outcomes in).

HTTP surface
------------
* Every path except ``/metrics``, ``/admin/...`` and the router's own probes is proxied
  to a target (``POST /v1/predict``...). Responses carry ``x-mco-cloud: NAME`` naming
  the target that answered, and ``x-mco-router: NAME`` naming the router
  (``router.name``, default the host name).
* The router's own probes: ``GET /healthz`` (alive), ``GET /readyz`` (200 while some
  target is healthy: *I can route somewhere*, else 503 + ``Retry-After``) and
  ``GET /readyz/local`` (200 while a target in ``router.cloud`` is healthy: what a global
  entry checks).
* ``--workers N`` (``workers.py``): N processes on one port (SO_REUSEPORT); the status
  and ``/metrics`` of any worker add up every worker.
* ``GET /metrics``: Prometheus text (per-target requests, errors by kind, latency
  histogram, healthy, cost per hour and per 1,000 requests). No token.
* Admin endpoints need ``Authorization: Bearer TOKEN`` (401 otherwise). The token comes
  from ``$MCO_ROUTER_TOKEN`` or ``router.token_file``; it is never logged.

  - ``GET /admin/status`` -> ``{"policy", "uptime_s", "all_down", "active_target",
    "targets": [{"name", "url", "priority", "weight", "pricing_key", "healthy",
    "active_up", "ejected", "ejected_until", "ejections", "requests", "errors":
    {"connect", "timeout", "reset", "http_5xx"}, "responses_4xx", "retries", "hedges",
    "p50_ms", "p95_ms", "p99_ms", "ewma_ms", "rps", "cost_per_hour",
    "cost_per_1k_requests"}], "overall": {..., "client_errors": {...}}, "retry_budget":
    {...}, "saturation": {"inflight", "max_concurrency", "loop_lag_ms",
    "max_loop_lag_ms", "own_stall_timeouts"}}``
  - ``GET /admin/events[?since=SEQ]`` -> ``{"events": [{"seq", "ts" (unix seconds),
    "time" (ISO 8601 UTC), "kind", "target", "detail"}]}``, oldest first. Kinds:
    ``health_down``, ``health_up`` (active checks), ``ejection``, ``readmission``
    (passive outlier detection), ``failover``, ``failback`` (the preferred healthy
    target changed; detail has ``from`` and ``to``), ``all_down``, ``recovered``,
    ``targets_reloaded``.
  - ``GET /admin/series`` -> per-target time series (latency percentiles, rps, cost) for
    ``mco router report``.
  - ``GET /admin/targets`` / ``PUT /admin/targets`` (body: ``{"targets": [...]}``, same
    fields as ``RouterTargetConfig``) -> hot reload; ``POST /admin/reload`` re-reads the
    config file, like SIGHUP.
* The event log is also appended as JSON lines to ``router.events_file`` when set.

Tools for drills and tests
--------------------------
* ``orchestrator.testing.traffic.run_load(url, rate=300, duration=6, events={1.5: fn})``:
  open-loop aiohttp load; ``events`` runs callables at set offsets (e.g. a ``kill -9``).
  The ``LoadResult`` has ``errors``, ``slower_than(s)``, ``percentile_ms(q)``,
  ``by_cloud()`` (from ``x-mco-cloud``) and ``moved_after(t, away_from)`` (time until
  traffic left a cloud).
* ``orchestrator.testing.faults.FaultProxy(upstream_port).start()``: a fault-injecting
  proxy in a child process in front of a real model server; ``set_mode("pass" | "refuse"
  | "hang" | "http503" | "slow" | "reset_mid", delay=...)``; ``stop()``.

Behaviour worth knowing
-----------------------
* Failed tries are retried on the next healthy cloud within a 20 % retry budget: a
  refused connect always; a reset (even mid-response) or a per-try timeout for
  repeatable requests (GET, HEAD and ``retries.retry_allow``, by default
  ``POST /v1/predict`` and ``POST /v2/models/*/infer``); an upstream 5xx once at most, and a request that got a 5xx
  from two clouds is answered with it. 4xx pass through unchanged and are never
  retried. Responses are read whole (up to ``limits.max_response_bytes``, else 502)
  before the client gets anything, which is what makes a reset mid-response retryable.
* Hedging (``retries.hedge``, on by default, repeatable requests only): a second copy
  goes to the next cloud after the first cloud's recent p95, within the same retry
  budget; the first answer wins and the loser runs on to its own outcome, so a hung
  cloud is still ejected.
* 5xx alone never eject a cloud whose active checks pass (a query of death must not
  take healthy clouds out one by one); local-origin failures do. A per-try timeout
  that a stall of the router's own event loop caused is not held against the cloud.
* ``limits``: header size and count (431), deadlines for headers and body (408), an
  idle timeout, ``max_concurrency`` (503 + ``Retry-After``), and shedding with 503 +
  ``Retry-After`` while the router's loop lags with its own CPU busy.
* When every target is down the router tries them all anyway in priority order (panic)
  and answers 503 with the list of tries and ``Retry-After: 1``.

CLI: ``mco router serve|status|report|export`` (see ``cli/router.py``).
"""

from __future__ import annotations

__all__ = ["RouterProcess"]


def __getattr__(name: str):  # lazy: `import orchestrator.router` must stay cheap
    if name == "RouterProcess":
        from orchestrator.router.process import RouterProcess

        return RouterProcess
    raise AttributeError(name)
