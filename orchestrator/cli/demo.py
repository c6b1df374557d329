"""``mco demo``: the whole story in one command, with no cloud account.

1. train the reference model; 2. evaluate and gate it; 3. bring up the stand-ins;
4. deploy to all three "clouds"; 5. start the router; 6. run the cloud-outage drill;
7. run the silent-bad-model drill: a model that serves but is wrong goes out in waves
   under labelled traffic, and the first wave stops it; 8. print the cost and latency table
   per cloud, where the waves stopped and why, and where the reports are.

``--runtime local`` (the embedded default when there is no Docker) runs the three model
servers as local processes with the filesystem as the artifact store, and the drill kills a
process. ``--runtime kind`` uses the kind clusters. With no flag, kind is used when Docker
and the clusters are there; otherwise the demo says why it fell back to local.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli._common import ConfigOpt, OutputFormat, OutputOpt, console, err_console

DEFAULT_GATE = ["accuracy>=0.95", "macro_f1>=0.95"]


def demo(
    runtime: Annotated[str, typer.Option(
        "--runtime", help="auto (kind when Docker and the clusters are available, else local), local or kind")] = "auto",
    cloud: Annotated[str, typer.Option(help="the cloud the drill takes away")] = "aws",
    config: ConfigOpt = None,
    runs_dir: Annotated[Path, typer.Option(help="where the demo and drill write their runs")] = Path("runs"),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Train, gate, deploy to three clouds, fail one over and back, stop a bad model in waves, show the numbers."""
    from orchestrator.cli.drill import finish, render_clouds
    from orchestrator.config import load_config
    from orchestrator.drills.environments import choose_runtime

    started = time.monotonic()
    cfg = load_config(config if config is not None else (Path("mco.local.yaml") if Path("mco.local.yaml").is_file()
                                                          else None))
    chosen, fallback = choose_runtime(runtime, cfg, create_clusters=True)
    people = output == OutputFormat.table
    if fallback and people:
        err_console.print(f"[yellow]falling back to the local runtime:[/] {fallback}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    demo_dir = runs_dir / "demo" / stamp
    steps: list[dict[str, Any]] = []

    def step(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        with console.status(f"{name}…", spinner="dots") if people else nullcontext():
            value = fn()
        seconds = round(time.monotonic() - t0, 2)
        steps.append({"step": name, "seconds": seconds})
        if people:
            console.print(f"[green]✓[/] {name} [dim]({seconds:.1f} s)[/]")
        return value

    bundle = step("train the reference model", lambda: _train(demo_dir / "model"))
    gate = step("evaluate and gate it", lambda: _gate(bundle, list(cfg.gate.require) or DEFAULT_GATE))
    steps[-1]["gate"] = gate["summary"]
    if not gate["passed"]:
        from orchestrator.errors import GateError

        raise GateError(gate["summary"], hint="the reference model should pass; retrain it with `mco model train`")
    if chosen == "kind":
        drill, waves = _run_kind(cfg, config, bundle, cloud, runs_dir, step)
    else:
        drill, waves = _run_local(demo_dir, bundle, cloud, runs_dir, step)
    result = {
        "passed": bool(drill["passed"] and waves["passed"]), "runtime": chosen, "fallback_reason": fallback,
        "duration_s": round(time.monotonic() - started, 2), "model": bundle.ref, "gate": gate["summary"],
        "steps": steps, "scenario": drill["scenario"], "rto_seconds": drill["rto_seconds"],
        "client_errors": drill["client_errors"], "requests": drill["requests"],
        "failback_seconds": drill["failback_seconds"], "clouds": drill["clouds"], "report": drill["report"],
        "files": drill.get("files"), "checks": drill["checks"], "missed": drill["missed"] + waves["missed"],
        "waves": _waves_summary(waves),
    }
    if people:
        from orchestrator.drills.report import rollout_line

        render_clouds(drill["clouds"])
        verdict = "[bold green]passed[/]" if drill["passed"] else "[bold red]FAILED[/]"
        console.print(f"cloud-outage drill on {drill['cloud']}: {verdict}: {drill['requests']} requests, "
                      f"{drill['client_errors']} client errors, RTO {drill['rto_seconds']} s, "
                      f"failback {drill['failback_seconds']} s")
        console.print(f"report: [bold]{drill['report']}[/]")
        verdict = "[bold green]passed[/]" if waves["passed"] else "[bold red]FAILED[/]"
        console.print(f"silent-bad-model drill: {verdict}: {rollout_line(waves.get('rollout'))}; "
                      f"{waves['client_errors']} client errors", highlight=False)
        console.print(f"report: [bold]{waves['report']}[/]   ({result['duration_s']:.1f} s in all)")
        if not result["passed"]:
            err_console.print("[bold red]demo failed[/], missed: " + "; ".join(result["missed"]), highlight=False)
            raise typer.Exit(1)
        return
    finish(result, output)


def _waves_summary(waves: dict[str, Any]) -> dict[str, Any]:
    """What the demo reports of its silent-bad-model drill: the verdict, where the waves stopped and why."""
    return {k: waves.get(k) for k in ("scenario", "passed", "rollout", "client_errors", "requests", "checks",
                                      "missed", "report", "files")}


# Requests/s, plain and labelled: the first step gives the bad model about 1 in 21 answers, and
# the waves wait for 40 labelled ones from it; more labelled traffic, a shorter wait.
WAVES_RATE, WAVES_LABELLED_RATE = 30.0, 120.0


def _waves_drill(fleet: Any, bundle: Any, runs_dir: Path, step: Callable[..., Any], router: Any = None) -> Any:
    from orchestrator.drills.runner import DrillSpec, DrillTiming, run_drill

    spec = DrillSpec(scenario="silent-bad-model", runs_dir=runs_dir / "drills", rate=WAVES_RATE, router=router,
                     labelled_rate=WAVES_LABELLED_RATE, timing=DrillTiming(baseline_s=1.0, tail_s=1.0))
    return step("deploy a model that serves but is wrong, in waves (the silent-bad-model drill)",
                lambda: run_drill(fleet, spec, bundle=bundle))


def _train(out: Path) -> Any:
    from orchestrator.model.train import TrainSpec, train_bundle

    out.parent.mkdir(parents=True, exist_ok=True)
    return train_bundle(TrainSpec(), out)


def _gate(bundle: Any, requirements: list[str]) -> dict[str, Any]:
    """Evaluate the exported ONNX model on the hold-out split, then check the gate."""
    from orchestrator.model.evaluate import evaluation_report, read_labelled_csv
    from orchestrator.model.export import OnnxModel
    from orchestrator.model.gate import check_gate, parse_requirement

    schema = bundle.card["input_schema"]
    X, y = read_labelled_csv(bundle.path / bundle.card["evaluation"]["data"], label_column="label",
                             n_features=schema["n_features"], feature_names=schema.get("feature_names"),
                             classes=bundle.card["classes"])
    y_pred, proba = OnnxModel(bundle.model_path.read_bytes()).predict(X)
    report = evaluation_report(y, y_pred, proba, bundle.card["classes"])
    result = check_gate(report, [parse_requirement(r) for r in requirements])
    return {"passed": result.passed, "summary": result.summary(), "accuracy": report["accuracy"]}


def _run_local(demo_dir: Path, bundle: Any, cloud: str, runs_dir: Path,
               step: Callable[..., Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from orchestrator.drills.environments import local_fleet
    from orchestrator.drills.runner import DrillSpec, DrillTiming, run_drill

    # The servers' stores and logs stay with this demo run: two demos never share ports.
    fleet_cm = local_fleet(bundle, demo_dir / "local-runtime")
    fleet = step("bring up the local stand-ins and deploy to aws, gcp and azure (local processes)",
                 fleet_cm.__enter__)
    try:
        # 100 requests/s: three servers, the router and the clients share this machine's cores.
        spec = DrillSpec(scenario="cloud-outage", cloud=cloud, runs_dir=runs_dir / "drills", rate=100,
                         timing=DrillTiming(baseline_s=2.5, outage_s=4.0, tail_s=1.5))
        drill = step(f"start the router and run the cloud-outage drill on {cloud}",
                     lambda: run_drill(fleet, spec, bundle=bundle))
        return drill, _waves_drill(fleet, bundle, runs_dir, step)
    finally:
        fleet_cm.__exit__(None, None, None)


def _run_kind(cfg: Any, config: Path | None, bundle: Any, cloud: str, runs_dir: Path,
              step: Callable[..., Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from orchestrator.config import load_config
    from orchestrator.drills.kind_fleet import kind_fleet
    from orchestrator.drills.runner import DrillSpec, run_drill

    config_path = Path(cfg.source) if cfg.source is not None else (config or Path("mco.local.yaml"))
    step("bring up the local stand-ins (mco local up: object stores, registries, kind clusters)",
         lambda: _local_up(config_path))
    local_cfg = load_config(config_path)
    fleet_cm = kind_fleet(local_cfg, bundle=bundle)
    fleet, bundle = step("deploy to aws, gcp and azure (mco push, mco deploy)", fleet_cm.__enter__)
    try:
        spec = DrillSpec(scenario="cloud-outage", cloud=cloud, runs_dir=runs_dir / "drills", router=local_cfg.router)
        drill = step(f"start the router and run the cloud-outage drill on {cloud}",
                     lambda: run_drill(fleet, spec, bundle=bundle))
        return drill, _waves_drill(fleet, bundle, runs_dir, step, router=local_cfg.router)
    finally:
        fleet_cm.__exit__(None, None, None)


def _local_up(config_path: Path) -> None:
    """``mco local up``: every stand-in, idempotently; their endpoints go into ``config_path``."""
    from orchestrator.local.base import LocalContext
    from orchestrator.local.registry import STAND_INS, bring_up

    ctx = LocalContext(config_path=config_path)
    for name in STAND_INS:
        bring_up(name, ctx)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
