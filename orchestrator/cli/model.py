"""``mco model``: train, evaluate and gate the reference model."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli._common import ConfigOpt, OutputFormat, OutputOpt, console, emit
from orchestrator.errors import GateError

app = typer.Typer(no_args_is_help=True)


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="bundle directory to write")],
    dataset: Annotated[str, typer.Option(help="digits, wine or iris")] = "digits",
    strategy: Annotated[str, typer.Option(help="multinomial, ovr or ovo")] = "multinomial",
    seed: Annotated[int, typer.Option(help="seed of the stratified split and the solver")] = 42,
    test_size: Annotated[float, typer.Option(help="share of rows held out for evaluation")] = 0.25,
    class_weight: Annotated[bool, typer.Option("--class-weight/--no-class-weight",
                                               help="weight classes inversely to their frequency")] = False,
    imbalance: Annotated[float | None, typer.Option(
        help="make the data imbalanced: class k keeps RATIO**k of its rows (e.g. 0.6)")] = None,
    name: Annotated[str | None, typer.Option(help="model name (default DATASET-STRATEGY)")] = None,
    version: Annotated[str, typer.Option("--model-version", help="model version recorded in the card")] = "1",
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Train a multiclass logistic regression, export it to ONNX and write a bundle."""
    from orchestrator.model.train import TrainSpec, train_bundle

    spec = TrainSpec(dataset=dataset, strategy=strategy, seed=seed, test_size=test_size,
                     class_weight=class_weight, imbalance=imbalance, name=name, version=version)
    with console.status(f"training {strategy} on {dataset}…", spinner="dots") if output == OutputFormat.table else nullcontext():
        bundle = train_bundle(spec, out)
    rep = bundle.card["evaluation"]["report"]
    emit({"bundle": str(bundle.path), "name": bundle.name, "strategy": strategy, "bundle_digest": bundle.digest,
          "model_sha256": bundle.model_sha256, "accuracy": rep["accuracy"], "macro_f1": rep["macro"]["f1"],
          "roc_auc_ovr_macro": rep["roc_auc_ovr_macro"]}, output)


@app.command()
def evaluate(
    bundle_dir: Annotated[Path, typer.Argument(help="model bundle directory")],
    data: Annotated[Path | None, typer.Option(help="CSV with one column per feature plus a label column")] = None,
    label_column: Annotated[str, typer.Option(help="name of the label column in --data")] = "label",
    plots: Annotated[Path | None, typer.Option(help="write PNG plots to this directory")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Evaluate a bundle's ONNX model on its hold-out split, or on new data."""
    report = _evaluate(bundle_dir, data, label_column, plots)
    emit(report, output, _render_report)


def _evaluate(bundle_dir: Path, data: Path | None, label_column: str, plots: Path | None) -> dict[str, Any]:
    from orchestrator.model.bundle import load_bundle
    from orchestrator.model.evaluate import evaluation_report, read_labelled_csv
    from orchestrator.model.export import OnnxModel

    bundle = load_bundle(bundle_dir)
    schema = bundle.card["input_schema"]
    source = data or bundle.path / bundle.card["evaluation"]["data"]
    X, y = read_labelled_csv(source, label_column=label_column, n_features=schema["n_features"],
                             feature_names=schema.get("feature_names"), classes=bundle.card["classes"])
    model = OnnxModel(bundle.model_path.read_bytes())
    y_pred, proba = model.predict(X)
    report = evaluation_report(y, y_pred, proba, bundle.card["classes"])
    if plots is not None:
        from orchestrator.model.plots import write_evaluation_plots

        write_evaluation_plots(plots, report, y, proba, bundle.card["classes"])
    return report


def _render_report(report: dict[str, Any]) -> None:
    console.print(f"[bold]accuracy[/] {report['accuracy']:.4f}   "
                  f"[bold]ROC AUC (ovr, macro)[/] {report['roc_auc_ovr_macro'] or float('nan'):.4f}   "
                  f"[bold]log loss[/] {report['log_loss']:.4f}   n={report['n_samples']}")
    table = Table(title="per class")
    for col in ("class", "precision", "recall", "f1", "support", "roc auc"):
        table.add_column(col, justify="right")
    aucs = report.get("roc_auc_ovr_per_class", {})
    for label, m in report["per_class"].items():
        auc = aucs.get(label)
        table.add_row(label, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]),
                      f"{auc:.3f}" if auc is not None else "-")
    for avg in ("macro", "micro", "weighted"):
        m = report[avg]
        table.add_row(f"[bold]{avg}[/]", f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", "", "")
    console.print(table)
    cm = report["confusion_matrix"]
    cmt = Table(title="confusion matrix (rows: true, columns: predicted)")
    cmt.add_column("")
    for label in cm["labels"]:
        cmt.add_column(label, justify="right")
    for i, (label, row) in enumerate(zip(cm["labels"], cm["matrix"])):
        cmt.add_row(label, *[f"[green]{v}[/]" if i == j else str(v) for j, v in enumerate(row)])
    console.print(cmt)


@app.command()
def gate(
    bundle_dir: Annotated[Path, typer.Argument(help="model bundle directory")],
    require: Annotated[list[str] | None, typer.Option("--require", "-r",
                                                      help='threshold such as "macro_f1>=0.95"; repeatable')] = None,
    data: Annotated[Path | None, typer.Option(help="gate on this CSV instead of the bundle's hold-out split")] = None,
    label_column: Annotated[str, typer.Option(help="name of the label column in --data")] = "label",
    config: ConfigOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Check a bundle against thresholds; exits 1 naming each metric that failed."""
    from orchestrator.config import load_config
    from orchestrator.model.bundle import load_bundle
    from orchestrator.model.gate import check_gate, parse_requirement

    texts = list(require or [])
    if not texts:
        texts = list(load_config(config).gate.require)
    if not texts:
        raise GateError("no gate requirements given",
                        hint='pass --require "macro_f1>=0.95", or set gate.require in mco.yaml')
    requirements = [parse_requirement(t) for t in texts]
    report = (_evaluate(bundle_dir, data, label_column, None) if data is not None
              else load_bundle(bundle_dir).card["evaluation"]["report"])
    result = check_gate(report, requirements)
    payload = {"passed": result.passed, "checks": result.checks, "summary": result.summary()}
    emit(payload, output, lambda p: _render_gate(result))
    if not result.passed:
        raise typer.Exit(1)


def _render_gate(result: Any) -> None:
    table = Table(title="evaluation gate")
    for col in ("metric", "value", "requirement", "result"):
        table.add_column(col)
    for c in result.checks:
        table.add_row(c["metric"], f"{c['value']:.4f}", f"{c['op']} {c['threshold']:g}",
                      "[green]pass[/]" if c["passed"] else "[bold red]FAIL[/]")
    console.print(table)
    console.print(("[green]" if result.passed else "[bold red]") + result.summary())
