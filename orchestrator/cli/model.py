"""``mco model``: train (reference datasets or your table), import, evaluate, gate, report and compare."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli._common import ConfigOpt, OutputFormat, OutputOpt, console, emit
from orchestrator.errors import GateError

app = typer.Typer(no_args_is_help=True)


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="bundle directory to write")],
    dataset: Annotated[str | None, typer.Option(help="a reference dataset: digits, wine or iris")] = None,
    data: Annotated[Path | None, typer.Option(help="your table: CSV (or Parquet, with pyarrow)")] = None,
    label_column: Annotated[str, typer.Option(help="the column of --data that holds the class")] = "label",
    categorical: Annotated[str | None, typer.Option(help="columns to treat as categories, e.g. zip,colour")] = None,
    numeric: Annotated[str | None, typer.Option(help="columns to treat as numbers")] = None,
    drop: Annotated[str | None, typer.Option(help="columns to leave out, e.g. id,name")] = None,
    strategy: Annotated[str, typer.Option(help="multinomial, ovr or ovo")] = "multinomial",
    seed: Annotated[int, typer.Option(help="seed of the stratified split and the solver")] = 42,
    test_size: Annotated[float, typer.Option(help="share of rows held out for evaluation")] = 0.25,
    class_weight: Annotated[bool, typer.Option("--class-weight/--no-class-weight",
                                               help="weight classes inversely to their frequency")] = False,
    imbalance: Annotated[float | None, typer.Option(
        help="make the data imbalanced: class k keeps RATIO**k of its rows (e.g. 0.6)")] = None,
    cv: Annotated[int | None, typer.Option("--cv", help="stratified K-fold cross-validation on the training part")] = None,
    search: Annotated[list[str] | None, typer.Option(
        help='hyperparameter space, e.g. "C=0.01,0.1,1,10" (repeatable; LO..HI for random search)')] = None,
    search_metric: Annotated[str, typer.Option(help="what the search maximises (log_loss: minimises)")] = "macro_f1",
    search_random: Annotated[int | None, typer.Option(help="random search: try N candidates instead of the grid")] = None,
    max_levels: Annotated[int, typer.Option(help="most distinct values a categorical column may have")] = 1000,
    like: Annotated[Path | None, typer.Option(
        help="retrain this bundle's pipeline and search on --data; refused if worse than it")] = None,
    no_worse: Annotated[str, typer.Option(help="with --like: metrics the new model must not lose")] = "macro_f1,accuracy",
    tolerance: Annotated[float, typer.Option(help="with --like: how much worse still counts as not worse")] = 0.0,
    name: Annotated[str | None, typer.Option(help="model name (default DATASET-STRATEGY or FILE-STRATEGY)")] = None,
    version: Annotated[str | None, typer.Option("--model-version", help="model version recorded in the card")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Train a multiclass logistic regression, export it to ONNX and write a bundle."""
    from orchestrator.errors import ModelError

    table_only = {"--categorical": categorical, "--numeric": numeric, "--drop": drop, "--cv": cv, "--search": search,
                  "--search-random": search_random, "--like": like}
    if data is None:
        used = [flag for flag, value in table_only.items() if value]
        if used:
            raise ModelError(f"{used[0]} needs --data FILE", hint="train on your table with --data FILE.csv")
        _train_dataset(out, dataset or "digits", strategy, seed, test_size, class_weight, imbalance, name,
                       version or "1", output)
        return
    if dataset is not None or imbalance is not None:
        raise ModelError("--data trains on your table; --dataset and --imbalance are for the reference datasets",
                         hint="give one of --data or --dataset")
    from orchestrator.model.tabular import TableSpec, spec_like, train_table

    show = output == OutputFormat.table
    replaces = None
    if like is not None:
        from orchestrator.model.bundle import load_bundle

        replaces = load_bundle(like)
        old_version = str(replaces.card.get("version", "1"))
        recipe_drop = tuple((replaces.card.get("recipe") or {}).get("drop") or ())
        spec = spec_like(replaces.card, data, name=name or replaces.name, drop=recipe_drop + _names(drop),
                         version=version or (str(int(old_version) + 1) if old_version.isdigit() else old_version + "+1"))
    else:
        spec = TableSpec(data=data, label_column=label_column, categorical=_names(categorical),
                         numeric=_names(numeric), drop=_names(drop), strategy=strategy, seed=seed,
                         test_size=test_size, class_weight=class_weight, cv=cv, search=tuple(search or ()),
                         search_metric=search_metric, search_random=search_random, max_levels=max_levels,
                         name=name, version=version or "1")
    with console.status(f"training on {data}…", spinner="dots") if show else nullcontext() as status:
        def progress(message: str) -> None:
            if status is not None:
                status.update(f"{message}…")

        bundle = train_table(spec, out, progress=progress, replaces=replaces, no_worse=_names(no_worse),
                             tolerance=tolerance)
    card = bundle.card
    rep = card["evaluation"]["report"]
    payload: dict[str, Any] = {
        "bundle": str(bundle.path), "name": bundle.name, "version": card["version"], "strategy": spec.strategy,
        "bundle_digest": bundle.digest, "model_sha256": bundle.model_sha256, "accuracy": rep["accuracy"],
        "macro_f1": rep["macro"]["f1"], "roc_auc_ovr_macro": rep["roc_auc_ovr_macro"],
        "columns": {c["name"]: c["type"] for c in card["input_schema"]["columns"]},
        "imbalance_note": card["data_look"]["imbalance_note"],
        "rows_dropped": card["data_look"]["rows_dropped"],
    }
    if card.get("cross_validation"):
        payload["cv_macro_f1"] = card["cross_validation"]["summary"].get("macro_f1")
    if card.get("search"):
        payload["search_chosen"] = card["search"]["chosen"]
    if card.get("replaces"):
        payload["replaces"] = {"bundle_digest": card["replaces"]["bundle_digest"], "passed": True,
                               "old_metrics": card["replaces"]["old_metrics"]}
    emit(payload, output)


def _train_dataset(out: Path, dataset: str, strategy: str, seed: int, test_size: float, class_weight: bool,
                   imbalance: float | None, name: str | None, version: str, output: OutputFormat) -> None:
    from orchestrator.model.train import TrainSpec, train_bundle

    spec = TrainSpec(dataset=dataset, strategy=strategy, seed=seed, test_size=test_size,
                     class_weight=class_weight, imbalance=imbalance, name=name, version=version)
    with console.status(f"training {strategy} on {dataset}…", spinner="dots") if output == OutputFormat.table else nullcontext():
        bundle = train_bundle(spec, out)
    rep = bundle.card["evaluation"]["report"]
    emit({"bundle": str(bundle.path), "name": bundle.name, "strategy": strategy, "bundle_digest": bundle.digest,
          "model_sha256": bundle.model_sha256, "accuracy": rep["accuracy"], "macro_f1": rep["macro"]["f1"],
          "roc_auc_ovr_macro": rep["roc_auc_ovr_macro"]}, output)


@app.command("import")
def import_(
    model: Annotated[Path, typer.Argument(help="an ONNX classifier (.onnx); pickles are refused")],
    data: Annotated[Path, typer.Option(help="labelled hold-out rows (CSV or Parquet) to judge it on")],
    out: Annotated[Path, typer.Option("--out", help="bundle directory to write")],
    label_column: Annotated[str, typer.Option(help="the column of --data that holds the class")] = "label",
    name: Annotated[str | None, typer.Option(help="model name (default: the file's name)")] = None,
    version: Annotated[str, typer.Option("--model-version", help="model version recorded in the card")] = "1",
    classes: Annotated[str | None, typer.Option(
        help="the class of each probability column, in order, when the graph does not name them")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Wrap a classifier trained elsewhere (ONNX) into a bundle, judged like a trained one."""
    from orchestrator.model.importer import ImportSpec, import_onnx

    spec = ImportSpec(model=model, data=data, label_column=label_column, name=name, version=version,
                      classes=_names(classes))
    with console.status(f"importing {model}…", spinner="dots") if output == OutputFormat.table else nullcontext() as st:
        bundle = import_onnx(spec, out, progress=(lambda m: st.update(f"{m}…")) if st is not None else None)
    rep = bundle.card["evaluation"]["report"]
    emit({"bundle": str(bundle.path), "name": bundle.name, "source": "imported", "bundle_digest": bundle.digest,
          "model_sha256": bundle.model_sha256, "classes": bundle.card["classes"],
          "zipmap_removed": bundle.card["imported"]["zipmap_removed"], "accuracy": rep["accuracy"],
          "macro_f1": rep["macro"]["f1"], "roc_auc_ovr_macro": rep["roc_auc_ovr_macro"]}, output)


@app.command()
def report(
    bundle_dir: Annotated[Path, typer.Argument(help="model bundle directory")],
    out: Annotated[Path | None, typer.Option("--out", help="directory for report.html and its PNGs "
                                                           "(default: BUNDLE-report beside the bundle)")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Write one self-contained HTML page (and PNGs) about a bundle: metrics, data, CV, search, features."""
    from orchestrator.model.bundle import load_bundle
    from orchestrator.model.report import write_report

    bundle = load_bundle(bundle_dir)
    target = out or bundle.path.parent / f"{bundle.path.name}-report"
    with console.status("writing the report…", spinner="dots") if output == OutputFormat.table else nullcontext():
        result = write_report(bundle, target)
    emit(result, output, lambda r: console.print(f"report: [bold]{r['report']}[/] ({len(r['pngs'])} plots)"))


@app.command()
def compare(
    bundle_a: Annotated[Path, typer.Argument(help="the bundle in service (A)")],
    bundle_b: Annotated[Path, typer.Argument(help="the candidate (B)")],
    data: Annotated[Path | None, typer.Option(help="labelled rows to judge both on (default: A's hold-out)")] = None,
    label_column: Annotated[str | None, typer.Option(help="the label column of --data")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="also write compare.html to this directory")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Two bundles side by side on the same hold-out, with B - A for every metric."""
    from orchestrator.model.bundle import load_bundle
    from orchestrator.model.report import compare_bundles, write_compare_page

    comparison = compare_bundles(load_bundle(bundle_a), load_bundle(bundle_b), data=data, label_column=label_column)
    if out is not None:
        comparison["page"] = str(write_compare_page(comparison, out))
    emit(comparison, output, _render_compare)


def _render_compare(c: dict[str, Any]) -> None:
    table = Table(title=f"{c['a']['name']} v{c['a']['version']} (A) vs {c['b']['name']} v{c['b']['version']} (B), "
                        f"{c['n_samples']} rows")
    for col in ("metric", "A", "B", "B − A"):
        table.add_column(col, justify="right")
    for r in c["metrics"]:
        colour = "" if r["b_better"] is None else ("[green]" if r["b_better"] else "[red]")
        a, b = ("-" if v is None else f"{v:.4f}" for v in (r["a"], r["b"]))
        table.add_row(r["metric"], a, b, "-" if r["delta"] is None else f"{colour}{r['delta']:+.4f}")
    console.print(table)
    if c.get("page"):
        console.print(f"page: [bold]{c['page']}[/]")


@app.command()
def evaluate(
    bundle_dir: Annotated[Path, typer.Argument(help="model bundle directory")],
    data: Annotated[Path | None, typer.Option(help="CSV with one column per feature plus a label column")] = None,
    label_column: Annotated[str | None, typer.Option(help="name of the label column in --data "
                                                            "(default: the bundle's, or 'label')")] = None,
    plots: Annotated[Path | None, typer.Option(help="write PNG plots to this directory")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Evaluate a bundle's ONNX model on its hold-out split, or on new data."""
    report = _evaluate(bundle_dir, data, label_column, plots)
    emit(report, output, _render_report)


def _evaluate(bundle_dir: Path, data: Path | None, label_column: str | None, plots: Path | None) -> dict[str, Any]:
    from orchestrator.model.bundle import load_bundle
    from orchestrator.model.evaluate import evaluation_report, read_labelled_data
    from orchestrator.model.export import OnnxModel

    bundle = load_bundle(bundle_dir)
    source = data or bundle.path / bundle.card["evaluation"]["data"]
    model = OnnxModel(bundle.model_path.read_bytes())
    rows = read_labelled_data(bundle.card, source, label_column=label_column, input_name=model.input_name)
    y_pred, proba = model.predict(rows.feeds)
    report = evaluation_report(rows.y, y_pred, proba, bundle.card["classes"])
    if plots is not None:
        from orchestrator.model.plots import write_evaluation_plots

        write_evaluation_plots(plots, report, rows.y, proba, bundle.card["classes"])
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
    label_column: Annotated[str | None, typer.Option(help="name of the label column in --data")] = None,
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
