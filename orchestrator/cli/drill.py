"""``mco drill``: break something real on purpose, measure what clients saw, pass or fail.

    mco drill list
    mco drill run cloud-outage --cloud aws [--config mco.local.yaml] [--runtime auto|local|kind]
                  [--max-rto S] [--max-errors N] [--max-failback S] [--policy P] [--rate R]

Exits 1 when an objective is missed, naming it; the report (JSON, PNG, HTML) is written
either way under ``runs/drills/<UTC timestamp>-<scenario>/``.
"""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli._common import ConfigOpt, OutputFormat, OutputOpt, compact_table, console, emit, err_console

app = typer.Typer(no_args_is_help=True)

RuntimeOpt = Annotated[str, typer.Option(
    "--runtime", help="auto (kind clusters when Docker and clusters are there, else local), local or kind")]


@app.command("list")
def list_scenarios(output: OutputOpt = OutputFormat.table) -> None:
    """The scenarios, their faults and default objectives (local runtime / kind)."""
    from orchestrator.drills.scenarios import SCENARIOS

    rows = []
    for s in SCENARIOS.values():
        objectives = {}
        for runtime in ("local", "kind"):
            o = s.objectives(runtime, s.policy)
            objectives[runtime] = {"max_rto_s": o.max_rto_s, "max_errors": o.max_errors,
                                   "max_failback_s": o.max_failback_s, "traffic_moves": o.expect_traffic_moves}
        rows.append({"scenario": s.name, "fault": s.summary, "policy": s.policy, "objectives": objectives})

    def render(data: list[dict[str, Any]]) -> None:
        table = Table(title="drill scenarios (objectives: local runtime / kind)")
        for col in ("scenario", "fault", "policy", "max RTO s", "max errors", "max failback s"):
            table.add_column(col)
        for r in data:
            local, kind = r["objectives"]["local"], r["objectives"]["kind"]
            table.add_row(r["scenario"], r["fault"], r["policy"], _pair(local["max_rto_s"], kind["max_rto_s"]),
                          str(local["max_errors"]), _pair(local["max_failback_s"], kind["max_failback_s"]))
        console.print(table)

    emit(rows, output, render)


def _pair(local: float | None, kind: float | None) -> str:
    return "-" if local is None else f"{local:g} / {kind:g}"


@app.command()
def run(
    scenario: Annotated[str, typer.Argument(help="a scenario of `mco drill list`, e.g. cloud-outage, pod-crash, "
                                                 "latency, region-loss, router-crash or silent-bad-model")],
    cloud: Annotated[str | None, typer.Option(help="the cloud to break (default: the one serving most traffic)")] = None,
    config: ConfigOpt = None,
    runtime: RuntimeOpt = "auto",
    policy: Annotated[str | None, typer.Option(help="router policy, e.g. failover, weighted, latency or cost")] = None,
    max_rto: Annotated[float | None, typer.Option("--max-rto", help="objective: recovery time in seconds")] = None,
    max_errors: Annotated[int | None, typer.Option("--max-errors", help="objective: client error budget")] = None,
    max_failback: Annotated[float | None, typer.Option("--max-failback",
                                                       help="objective: seconds from repair to failback")] = None,
    slow_request: Annotated[float | None, typer.Option(
        "--slow-request", help="a request slower than this (s) counts as not yet recovered")] = None,
    rate: Annotated[float, typer.Option(help="client requests per second")] = 200.0,
    labelled_rate: Annotated[float, typer.Option(
        "--labelled-rate", help="labelled requests per second, with feedback (silent-bad-model)")] = 60.0,
    baseline: Annotated[float, typer.Option(help="seconds of steady traffic before the fault")] = 3.0,
    outage: Annotated[float, typer.Option(help="seconds the fault lasts before the repair")] = 5.0,
    bundle: Annotated[Path | None, typer.Option(help="model bundle to drill with "
                                                    "(default: the reference model, trained once)")] = None,
    runs_dir: Annotated[Path, typer.Option(help="reports go to RUNS_DIR/<UTC timestamp>-<scenario>/")] =
    Path("runs/drills"),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Run one drill: steady traffic through the router, break, watch, repair, report."""
    from orchestrator.config import load_config
    from orchestrator.drills.environments import choose_runtime
    from orchestrator.drills.runner import DrillSpec, DrillTiming
    from orchestrator.drills.scenarios import get_scenario
    from orchestrator.errors import ConfigError

    get_scenario(scenario)  # a typo fails before anything starts
    if not 0 < rate <= 5000:
        raise ConfigError(f"--rate {rate:g} is out of range", hint="use 1 to 5000 requests per second")
    if not 0 < labelled_rate <= 1000:
        raise ConfigError(f"--labelled-rate {labelled_rate:g} is out of range",
                          hint="use 1 to 1000 labelled requests per second")
    if policy is not None:
        from orchestrator.router.balancer.policies import policy_class

        policy_class(policy)  # an unknown name fails before anything starts, listing the known ones
    missing = None
    if config is not None and not config.is_file() and runtime == "auto":
        # No clusters were ever brought up here: the embedded runtime still answers the question.
        from orchestrator.config import MCOConfig

        cfg, missing = MCOConfig(), f"{config} does not exist (`mco local up` writes it with the kind clusters)"
    else:
        cfg = load_config(config)
    chosen, fallback = choose_runtime(runtime, cfg)
    fallback = missing or fallback
    if fallback and output == OutputFormat.table:
        err_console.print(f"[yellow]using the local runtime:[/] {fallback}")
    spec = DrillSpec(
        scenario=scenario, cloud=cloud, policy=policy, rate=rate, labelled_rate=labelled_rate, router=cfg.router,
        timing=DrillTiming(baseline_s=baseline, outage_s=outage), runs_dir=runs_dir,
        objectives={"max_rto_s": max_rto, "max_errors": max_errors, "max_failback_s": max_failback,
                    "slow_request_s": slow_request},
    )
    result = execute(spec, chosen, cfg, bundle, output)
    if fallback:
        result["fallback_reason"] = fallback
    finish(result, output)


def execute(spec: Any, runtime: str, cfg: Any, bundle_dir: Path | None, output: OutputFormat) -> dict[str, Any]:
    """Run ``spec`` on ``runtime``, with a spinner for people."""
    from orchestrator.drills.environments import local_fleet, reference_bundle
    from orchestrator.drills.runner import run_drill
    from orchestrator.drills.scenarios import get_scenario
    from orchestrator.model.bundle import load_bundle

    status = console.status("preparing the drill…", spinner="dots") if output == OutputFormat.table else nullcontext()
    with status as spinner:
        def progress(message: str) -> None:
            if spinner is not None:
                spinner.update(message)
                console.log(message, highlight=False)

        if runtime == "kind":
            from orchestrator.drills.kind_fleet import kind_fleet

            chosen = load_bundle(bundle_dir) if bundle_dir else None
            with kind_fleet(cfg, bundle=chosen, progress=progress) as (fleet, deployed):
                return run_drill(fleet, spec, bundle=deployed, progress=progress)
        state = Path(cfg.project.state_dir) / "drills"
        bundle = load_bundle(bundle_dir) if bundle_dir else reference_bundle(state / "reference-model")[0]
        progress("starting one model server per cloud (local runtime)")
        # one runtime directory per drill process: concurrent drills never share ports or pidfiles
        root = state / "local-runtime" / str(os.getpid())
        try:
            with local_fleet(bundle, root, entry=get_scenario(spec.scenario).entry, router=spec.router) as fleet:
                return run_drill(fleet, spec, bundle=bundle, progress=progress)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def finish(result: dict[str, Any], output: OutputFormat) -> None:
    """Print the result; exit 1 naming every missed objective."""
    summary = {k: result.get(k) for k in ("scenario", "passed", "rto_seconds", "client_errors", "requests",
                                          "failback_seconds", "report")}
    payload = {**summary, **{k: v for k, v in result.items() if k not in summary and k not in ("facts",)}}
    emit(payload, output, render_result)
    if not result["passed"]:
        err_console.print("[bold red]drill failed[/], missed objective(s): " + "; ".join(result["missed"]),
                          highlight=False)
        raise typer.Exit(1)


def render_result(result: dict[str, Any]) -> None:
    verdict = "[bold green]PASSED[/]" if result["passed"] else "[bold red]FAILED[/]"
    console.print(f"drill [bold]{result['scenario']}[/] on {result.get('runtime')} "
                  f"(cloud {result.get('cloud')}, policy {result.get('policy')}): {verdict}")
    checks = Table(title="objectives")
    for col in ("objective", "limit", "measured", "result"):
        checks.add_column(col)
    for c in result.get("checks", []):
        checks.add_row(c["objective"], str(c["limit"]), str(c["value"]),
                       "[green]pass[/]" if c["passed"] else "[bold red]MISSED[/]")
    console.print(checks)
    if result.get("rollout"):
        from orchestrator.drills.report import rollout_line

        console.print(f"rollout: {rollout_line(result['rollout'])}", highlight=False)
    render_clouds(result.get("clouds", []))
    line = f"requests {result['requests']}, client errors {result['client_errors']}"
    if result.get("rto_seconds") is not None:
        line += f", RTO {result['rto_seconds']:.3f} s"
    if result.get("failback_seconds") is not None:
        line += f", failback {result['failback_seconds']:.3f} s"
    console.print(line)
    console.print(f"report: [bold]{result['report']}[/] (and report.json, timeline.png beside it)")


def render_clouds(rows: list[dict[str, Any]]) -> None:
    # Short headers and a light box: the nine columns fit an 80-column terminal untruncated.
    table = compact_table("cost and latency per cloud (router)",
                          caption="latency in ms from the router; cost in USD from the price catalog")
    for col in ("cloud", "up", "requests", "answered", "p50", "p95", "p99", "$/hour", "$/1k req"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(str(r["name"]), "yes" if r.get("healthy") else "no", str(r.get("requests")),
                      str(r.get("client_answers")), _num(r.get("p50_ms")), _num(r.get("p95_ms")),
                      _num(r.get("p99_ms")), _num(r.get("cost_per_hour"), 4), _num(r.get("cost_per_1k_requests"), 6))
    console.print(table)


def _num(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"
