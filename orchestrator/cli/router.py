"""``mco router``: run the multi-cloud router, watch it, report on it, export it.

    mco router serve                      run it (targets from mco.yaml or --target)
    mco router status [--watch]           per-cloud requests, errors, p50/p95/p99, health, cost
    mco router report --out DIR           PNG + HTML of latency and cost per cloud over time
    mco router export --format haproxy    the same policy as an HAProxy or Envoy config
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli._common import ConfigOpt, OutputFormat, OutputOpt, compact_table, console, emit, err_console
from orchestrator.errors import ConfigError, Unreachable

app = typer.Typer(no_args_is_help=True)

UrlOpt = Annotated[str | None, typer.Option("--url", help="router URL (default: $MCO_ROUTER_URL or router.host:port)")]
TargetOpt = Annotated[list[str] | None, typer.Option(
    "--target", "-t", help="NAME=URL[,priority=N][,weight=W][,pricing=KEY]; repeat for each cloud (replaces config targets)")]


def _parse_target(text: str, index: int) -> Any:
    from pydantic import ValidationError

    from orchestrator.config import RouterTargetConfig

    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise ConfigError(f"--target '{text}' is not NAME=URL[,priority=N,weight=W,pricing=KEY]",
                          hint="e.g. --target aws=http://127.0.0.1:9001,priority=0,pricing=aws/us-east-1")
    url, *opts = rest.split(",")
    fields: dict[str, Any] = {"name": name, "url": url, "priority": index}
    keys = {"priority": "priority", "weight": "weight", "pricing": "pricing_key", "pricing_key": "pricing_key",
            "replicas": "replicas", "vcpu": "vcpu", "memory_gb": "memory_gb"}
    for opt in opts:
        key, _, value = opt.partition("=")
        if key not in keys:
            raise ConfigError(f"--target '{text}': unknown option '{key}'", hint=f"use {', '.join(sorted(keys))}")
        fields[keys[key]] = value
    try:
        return RouterTargetConfig.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"--target '{text}': {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def _load(config: Path | None) -> Any:
    from orchestrator.config import load_config

    return load_config(config)


def _router_config(mco: Any, target: list[str] | None, **overrides: Any) -> Any:
    """``router:`` from the config (targets from the clouds' clusters), with --target and the
    other flags that were given laid over it."""
    from orchestrator.router.settings import router_config_with_targets

    update = {k: v for k, v in overrides.items() if v is not None}
    if target:
        update["targets"] = [_parse_target(t, i) for i, t in enumerate(target)]
    return router_config_with_targets(mco).model_copy(update=update)


def _token(mco: Any, *, create: bool = False) -> str | None:
    from orchestrator.router.settings import ensure_token_file, read_token

    base = mco.source.parent if mco.source else Path.cwd()
    token = read_token(mco.router, base=base)
    if token:
        return token
    default = base / mco.project.state_dir / "router.token"
    if create:
        return ensure_token_file(default)
    if default.is_file():
        return default.read_text().strip() or None
    return None


def _url(mco: Any, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    env = os.environ.get("MCO_ROUTER_URL")
    if env:
        return env.rstrip("/")
    return f"http://{mco.router.host}:{mco.router.port}"


def _admin_get(mco: Any, url: str | None, path: str) -> Any:
    import httpx

    base = _url(mco, url)
    token = _token(mco)
    if not token:
        raise ConfigError("no router admin token found",
                          hint=f"set ${mco.router.token_env}, or router.token_file in mco.yaml "
                               f"(`mco router serve` writes {mco.project.state_dir}/router.token)")
    try:
        resp = httpx.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    except httpx.HTTPError as exc:
        raise Unreachable(f"cannot reach the router at {base}: {type(exc).__name__}",
                          hint="start it with `mco router serve`, or pass --url") from exc
    if resp.status_code == 401:
        raise ConfigError(f"the router at {base} refused the admin token",
                          hint=f"use the token the router was started with (${mco.router.token_env} or its token file)")
    if resp.status_code != 200:
        raise Unreachable(f"the router at {base} answered {resp.status_code} to {path}: {resp.text[:200]}")
    return resp.json()


@app.command()
def serve(
    config: ConfigOpt = None,
    target: TargetOpt = None,
    host: Annotated[str | None, typer.Option(help="address to bind (default router.host, loopback)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default router.port)")] = None,
    policy: Annotated[str | None, typer.Option(help="routing policy, e.g. failover, weighted, latency or cost")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="processes sharing the port with SO_REUSEPORT "
                                                                    "(default router.workers)")] = None,
    dataplane: Annotated[str | None, typer.Option(help="what forwards: python (default router.dataplane) or rust "
                                                       "(mco-dataplane, built by make setup)")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Run the router in the foreground. SIGHUP re-reads the targets from the config file.

    With --output json, one JSON line on stdout says where it listens and what it routes to."""
    from orchestrator.router.balancer.policies import policy_class
    from orchestrator.router.server import serve as run

    if policy:
        policy_class(policy)  # an unknown name fails here, listing the known ones
    mco = _load(config)
    if dataplane not in (None, "python", "rust"):
        raise ConfigError(f"unknown data plane '{dataplane}'", hint="use --dataplane python or --dataplane rust")
    cfg = _router_config(mco, target, host=host or None, port=port, policy=policy or None, dataplane=dataplane)
    if cfg.dataplane == "rust":
        from orchestrator.router.rust import check_supported, find_binary

        check_supported(cfg.model_copy(update={"workers": workers or cfg.workers}))
        find_binary()  # not built: a typed error with the command that builds it
    if not cfg.targets:
        raise ConfigError("the router has no targets",
                          hint="add router.targets or clouds with cluster.endpoint to mco.yaml, or pass --target NAME=URL")
    token = _token(mco, create=True)
    names = ", ".join(f"{t.name}(p{t.priority})" for t in sorted(cfg.targets, key=lambda t: t.priority))
    err_console.print(f"mco router on http://{cfg.host}:{cfg.port} policy={cfg.policy} targets: {names}")
    err_console.print(f"admin token: from ${cfg.token_env} or the token file "
                      f"({cfg.token_file or mco.project.state_dir / 'router.token'})", highlight=False)
    if output == OutputFormat.json:
        typer.echo(json.dumps({"event": "serving", "url": f"http://{cfg.host}:{cfg.port}", "policy": cfg.policy,
                               "dataplane": cfg.dataplane,
                               "targets": [{"name": t.name, "url": t.url, "priority": t.priority}
                                           for t in cfg.targets]}))
    n = workers or cfg.workers
    if n > 1:
        from orchestrator.router.workers import prepare_worker_config, supervise

        overridden = bool(target or host or port is not None or policy)
        path = prepare_worker_config(cfg, mco, overridden=overridden)
        os.environ[cfg.token_env] = token or ""  # the workers' token, through the environment as for one router
        raise typer.Exit(supervise(path, workers=n, host=cfg.host, port=cfg.port))
    # (a --dataplane given here is not in the file a SIGHUP re-reads: only targets come from it)
    run(cfg, token=token, config_path=mco.source if not target else None)


def _status_table(data: dict[str, Any]) -> Table:
    # Short headers and a light box, as the drill's table: eleven columns in 80.
    table = compact_table(f"mco router · policy {data['policy']} · active: {data.get('active_target') or 'NONE'}",
                          caption="latency in ms; cost in USD from the price catalog (clouds.<cloud>.pricing_key)")
    for col in ("cloud", "prio", "state", "requests", "errors", "rps", "p50", "p95", "p99", "$/hour", "$/1k req"):
        table.add_column(col, justify="left" if col in ("cloud", "state", "errors") else "right",
                         overflow="fold" if col == "errors" else "ellipsis", no_wrap=col != "errors")

    def num(v: Any, fmt: str = "{:.2f}") -> str:
        return "–" if v is None else fmt.format(v)

    for t in data["targets"]:
        errs = {k: v for k, v in t["errors"].items() if v}
        health = "[green]up[/]" if t["healthy"] else ("[red]ejected[/]" if t["ejected"] else "[red]down[/]")
        table.add_row(t["name"], str(t["priority"]), health, str(t["requests"]),
                      ", ".join(f"{k} {v}" for k, v in errs.items()) or "0", num(t["rps"], "{:.1f}"),
                      num(t["p50_ms"]), num(t["p95_ms"]), num(t["p99_ms"]), num(t["cost_per_hour"], "{:.4f}"),
                      num(t["cost_per_1k_requests"], "{:.6f}"))
    return table


def _fleet_table(data: dict[str, Any]) -> Table:
    table = compact_table(f"mco routers · {data['reachable']}/{data['total']} answered",
                          caption="one row per router and cloud it routes to; latency in ms, cost in USD")
    for col in ("router", "cloud", "state", "requests", "errors", "p50", "p95", "p99", "$/hour", "egress $"):
        table.add_column(col, justify="left" if col in ("router", "cloud", "state") else "right")

    def num(v: Any, fmt: str = "{:.2f}") -> str:
        return "–" if v is None else fmt.format(v)

    for r in data["routers"]:
        who = f"{r['router'] or r['url']} ({r['cloud']})"
        if not r["reachable"]:
            table.add_row(who, "–", f"[red]{r['error']}[/]", *["–"] * 7)
            continue
        for t in r["targets"]:
            state = ("[green]up[/]" if t["healthy"] else "[red]down[/]") + (" local" if t["local"] else "")
            table.add_row(who, t["cloud"], state, str(t["requests"]), str(t["errors"]), num(t["p50_ms"]),
                          num(t["p95_ms"]), num(t["p99_ms"]), num(t["cost_per_hour"], "{:.4f}"),
                          num(t["egress_usd"], "{:.6f}"))
    return table


def _fleet_entries(mco: Any, router: list[str] | None) -> list[tuple[str, str]]:
    entries = [(name, u) for name, cloud in mco.clouds.items() for u in cloud.router_urls]
    for text in router or []:
        cloud, sep, u = text.partition("=")
        if not sep or not u.startswith(("http://", "https://")):
            raise ConfigError(f"--router '{text}' is not CLOUD=URL", hint="e.g. --router aws=https://router.aws.example")
        entries.append((cloud, u.rstrip("/")))
    if not entries:
        raise ConfigError("no routers to read",
                          hint="list them under clouds.<cloud>.router_urls in mco.yaml, or pass --router CLOUD=URL")
    return entries


@app.command()
def status(
    config: ConfigOpt = None,
    url: UrlOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="redraw the table live until Ctrl-C")] = False,
    interval: Annotated[float, typer.Option(help="seconds between redraws with --watch")] = 1.0,
    all_routers: Annotated[bool, typer.Option("--all", help="every cloud's routers (clouds.<cloud>.router_urls "
                                                            "and --router), as one table router x cloud")] = False,
    router: Annotated[list[str] | None, typer.Option("--router", help="CLOUD=URL of a router to read with --all; "
                                                                      "repeatable")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Per-cloud requests, errors, p50/p95/p99, health, cost per hour and per 1,000 requests."""
    mco = _load(config)
    if all_routers or router:
        from orchestrator.router.fleet import read_fleet

        token = _token(mco)
        if not token:
            raise ConfigError("no router admin token found", hint=f"set ${mco.router.token_env}")
        fleet = read_fleet(_fleet_entries(mco, router), token=token)
        emit(fleet, output, lambda d: console.print(_fleet_table(d)))
        if fleet["reachable"] == 0:
            raise Unreachable("no router answered", hint="check the URLs and the token; each row says why")
        return
    data = _admin_get(mco, url, "/admin/status")
    if watch and output == OutputFormat.table:
        import time

        from rich.live import Live

        with Live(_status_table(data), console=console, refresh_per_second=4) as live:
            try:
                while True:
                    time.sleep(max(0.2, interval))
                    live.update(_status_table(_admin_get(mco, url, "/admin/status")))
            except KeyboardInterrupt:
                return
    emit(data, output, lambda d: console.print(_status_table(d)))


@app.command()
def report(
    config: ConfigOpt = None,
    url: UrlOpt = None,
    out: Annotated[Path, typer.Option("--out", help="directory for router-report.png and .html")] = Path("router-report"),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Write a PNG and an HTML page of latency, traffic and cost per cloud over time, with events."""
    from orchestrator.router.report import write_report

    mco = _load(config)
    series = _admin_get(mco, url, "/admin/series")
    events = _admin_get(mco, url, "/admin/events")["events"]
    status_doc = _admin_get(mco, url, "/admin/status")
    files = write_report(series, events, out, status=status_doc)
    emit({**files, "events": len(events)}, output,
         lambda d: console.print(f"wrote [bold]{d['png']}[/] and [bold]{d['html']}[/] ({d['events']} events)"))


@app.command()
def export(
    format: Annotated[str, typer.Option("--format", "-f", help="haproxy or envoy")] = "haproxy",
    config: ConfigOpt = None,
    target: TargetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="write here instead of stdout")] = None,
    port: Annotated[int | None, typer.Option(help="port the proxy listens on (default router.port)")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Render the same targets, checks, retries and priorities as an HAProxy or Envoy config."""
    from orchestrator.router.export import render

    cfg = _router_config(_load(config), target, port=port)
    text = render(cfg, format.lower())
    if out is not None:
        out.write_text(text)
    if output == OutputFormat.json:
        emit({"format": format, "path": str(out) if out else None, "config": text}, output)
    elif out is None:
        typer.echo(text, nl=False)
    else:
        console.print(f"wrote {format} config for {len(cfg.targets)} targets to {out}")
