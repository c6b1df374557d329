"""The router's policy as an Envoy (v3 API) static bootstrap.

Mapping: priorities -> endpoint priority levels (0 = preferred), weights ->
``load_balancing_weight``; active checks -> ``health_checks``; passive detection ->
``outlier_detection`` with local-origin errors split from 5xx, growing ejection time and
an ejection cap; retries -> ``retry_policy`` (connect failure, reset, 5xx; another host
each time; jittered backoff; per-try timeout) with a 20 % ``retry_budget``; optional
hedging -> ``hedge_policy``; body limit -> the buffer filter (413). The policy's
``EnvoyPlan`` names the ``lb_policy`` and the priority levels: latency ->
``LEAST_REQUEST``; cost -> a static priority order (cheapest first). A policy Envoy
cannot express is refused with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.router.balancer.policies import EnvoyPlan, export_plan
from orchestrator.router.export import endpoints, ranked
from orchestrator.router.headers import CLOUD_HEADER

if TYPE_CHECKING:
    from orchestrator.config import RouterConfig

__all__ = ["envoy_config", "render_envoy"]


def _d(seconds: float) -> str:
    return f"{seconds:.3f}s"


def envoy_config(cfg: RouterConfig) -> dict[str, Any]:
    plan = export_plan(cfg.policy, "envoy", EnvoyPlan)
    eps = ranked(cfg, endpoints(cfg))
    h, r, o = cfg.health, cfg.retries, cfg.outlier
    if plan.levels == "by_rank":
        levels = {e.name: i for i, e in enumerate(eps)}
    elif plan.levels == "by_priority":
        distinct = sorted({e.target.priority for e in eps})
        levels = {e.name: distinct.index(e.target.priority) for e in eps}
    else:
        levels = {e.name: 0 for e in eps}
    groups: dict[int, list[dict[str, Any]]] = {}
    for e in eps:
        groups.setdefault(levels[e.name], []).append({
            "endpoint": {"hostname": e.name,
                         "address": {"socket_address": {"address": e.host, "port_value": e.port}}},
            "load_balancing_weight": max(1, e.target.weight),
        })
    route: dict[str, Any] = {
        "cluster": "mco_targets",
        "timeout": _d(r.per_try_timeout_s * r.attempts + r.backoff_max_s * r.attempts),
        "retry_policy": {
            "retry_on": "connect-failure,reset,refused-stream,5xx",
            "num_retries": max(0, r.attempts - 1),
            "per_try_timeout": _d(r.per_try_timeout_s),
            "retry_back_off": {"base_interval": _d(max(r.backoff_base_s, 0.001)),
                               "max_interval": _d(max(r.backoff_max_s, 0.001))},
            "retry_host_predicate": [{
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": "type.googleapis.com/"
                                          "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
            "host_selection_retry_max_attempts": 5,
            "retry_priority": {
                "name": "envoy.retry_priorities.previous_priorities",
                "typed_config": {"@type": "type.googleapis.com/"
                                          "envoy.extensions.retry.priority.previous_priorities.v3."
                                          "PreviousPrioritiesConfig", "update_frequency": 1}},
        },
    }
    if r.hedge:
        route["hedge_policy"] = {"hedge_on_per_try_timeout": True}
    cluster: dict[str, Any] = {
        "name": "mco_targets",
        "type": "STRICT_DNS",
        "connect_timeout": _d(r.connect_timeout_s),
        "lb_policy": plan.lb_policy,
        "health_checks": [{
            "timeout": _d(h.timeout_s), "interval": _d(h.interval_s), "interval_jitter": _d(h.jitter_s),
            "unhealthy_interval": _d(h.fast_recheck_s),
            "unhealthy_threshold": h.unhealthy_threshold, "healthy_threshold": h.healthy_threshold,
            "http_health_check": {"path": h.path}}],
        "outlier_detection": {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": o.consecutive_local_failures,
            "consecutive_5xx": o.consecutive_5xx,
            "interval": "1s",
            "base_ejection_time": _d(o.base_ejection_s),
            "max_ejection_time": _d(o.max_ejection_s),
            "max_ejection_percent": o.max_ejection_percent},
        "circuit_breakers": {"thresholds": [{
            "retry_budget": {"budget_percent": {"value": r.budget_ratio * 100}, "min_retry_concurrency": 3}}]},
        "load_assignment": {
            "cluster_name": "mco_targets",
            "endpoints": [{"priority": level, "lb_endpoints": groups[level]} for level in sorted(groups)]},
    }
    if any(e.tls for e in eps):
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {"validation_context": {"trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"}}}}}
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "mco",
        "route_config": {"name": "mco", "virtual_hosts": [{
            "name": "mco", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": route}],
            "response_headers_to_add": [{"header": {"key": CLOUD_HEADER, "value": "%UPSTREAM_HOST%"}}]}]},
        "http_filters": [
            {"name": "envoy.filters.http.buffer", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                "max_request_bytes": cfg.max_body_bytes}},
            {"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {"static_resources": {
        "listeners": [{"name": "mco", "address": {"socket_address": {"address": cfg.host, "port_value": cfg.port}},
                       "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                        "typed_config": hcm}]}]}],
        "clusters": [cluster]}}


def render_envoy(cfg: RouterConfig) -> str:
    config = envoy_config(cfg)
    approximation = export_plan(cfg.policy, "envoy", EnvoyPlan).approximation
    header = (f"# Generated by `mco router export --format envoy` (policy: {cfg.policy}).\n"
              + (f"# Not expressible in Envoy: {approximation}.\n" if approximation else ""))
    return header + yaml.safe_dump(config, sort_keys=False)
