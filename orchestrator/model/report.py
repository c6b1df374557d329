"""One page a person can read: ``mco model report`` and ``mco model compare``.

Each page is one self-contained HTML file (the plots are embedded as data URIs, no
scripts, no network) with the same PNGs written beside it. Numbers come from the card,
and from the bundle's own ONNX model re-run on its hold-out rows (ROC curves,
permutation importance), so the page shows what ships.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import ModelError
from orchestrator.model.bundle import Bundle
from orchestrator.model.evaluate import LabelledData, evaluation_report, flatten_metrics, read_labelled_data
from orchestrator.model.export import OnnxModel

__all__ = ["COMPARED_METRICS", "compare_bundles", "write_compare_page", "write_report"]

COMPARED_METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "weighted_f1", "min_class_recall",
                    "roc_auc_ovr_macro", "log_loss")
LOWER_IS_BETTER = frozenset({"log_loss"})

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#1d2329;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #d0d7de;padding:4px 10px;text-align:right}
th{background:#f3f5f7}td:first-child,th:first-child{text-align:left}.meta{color:#57606a}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:8px 12px;border-radius:6px}
.chosen{background:#dafbe1;font-weight:600}.better{color:#1a7f37;font-weight:600}.worse{color:#cf222e;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plots img{max-width:520px;border:1px solid #d0d7de}
code{background:#f3f5f7;padding:1px 4px;border-radius:4px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _table(header: list[str], rows: list[list[Any]], *, cls: list[str] | None = None, id_: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        attr = f' class="{cls[i]}"' if cls and cls[i] else ""
        body.append(f"<tr{attr}>" + "".join(f"<td>{c if isinstance(c, _Raw) else _num(c)}</td>" for c in row) + "</tr>")
    ident = f' id="{_e(id_)}"' if id_ else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw(str):
    """HTML already escaped."""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}" title="{_e(path.name)}">'


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")


@dataclass(frozen=True)
class _Judged:
    data: LabelledData
    labels: np.ndarray
    proba: np.ndarray
    report: dict[str, Any]


def _judge(bundle: Bundle, model: OnnxModel, data_path: Path | None, label_column: str | None) -> _Judged:
    path = data_path or bundle.path / bundle.card["evaluation"]["data"]
    data = read_labelled_data(bundle.card, path, label_column=label_column, input_name=model.input_name)
    labels, proba = model.predict(data.feeds)
    return _Judged(data, labels, proba, evaluation_report(data.y, labels, proba, bundle.card["classes"]))


def _bar_png(path: Path, names: list[str], values: list[float], *, title: str, xlabel: str,
             errors: list[float] | None = None) -> Path:
    from orchestrator.model.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, max(2.5, 0.32 * len(names) + 1.2)))
    y = np.arange(len(names))
    ax.barh(y, values, xerr=errors, color="#4c78a8")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def write_report(bundle: Bundle, out: Path, *, max_features: int = 20) -> dict[str, Any]:
    """Write ``out/report.html`` and its PNGs; returns what was written and the key numbers."""
    from orchestrator.model.interpret import permutation_importance
    from orchestrator.model.plots import write_evaluation_plots
    from orchestrator.model.schema import InputSchema

    card = bundle.card
    out.mkdir(parents=True, exist_ok=True)
    model = OnnxModel(bundle.model_path.read_bytes())
    judged = _judge(bundle, model, None, None)
    classes = card["classes"]
    pngs = write_evaluation_plots(out, judged.report, judged.data.y, judged.proba, classes)
    schema = InputSchema.from_card(card, input_name=model.input_name)
    importance = permutation_importance(model.predict, schema.feeds, judged.data.arrays, schema.names,
                                        judged.data.y, classes)
    shown = importance["features"][:max_features]
    pngs.append(_bar_png(out / "permutation_importance.png", [r["feature"] for r in shown],
                         [r["mean"] for r in shown], errors=[r["std"] for r in shown],
                         title="Permutation importance on the hold-out", xlabel="drop in macro F1 when shuffled"))
    look = card.get("data_look") or {}
    counts = look.get("class_counts") or card.get("training_data", {}).get("class_counts") or {}
    if counts:
        pngs.append(_bar_png(out / "class_distribution.png", list(counts), [float(v) for v in counts.values()],
                             title="Class distribution (rows)", xlabel="rows"))
    by_name = {p.name: p for p in pngs}

    rep = card["evaluation"]["report"]
    parts = [f"<h1>Model report: {_e(card['name'])} v{_e(card.get('version', ''))}</h1>",
             (f"<p class=\"meta\">source: <b>{_e(card.get('source', 'trained'))}</b> · strategy: "
              f"{_e(card.get('strategy', ''))} · classes: {_e(', '.join(map(str, classes)))} · bundle digest "
              f"<code>{_e(bundle.digest[:16])}…</code> · hold-out rows: {rep['n_samples']}</p>")]

    parts.append("<h2 id=\"metrics\">Metrics on the hold-out</h2>")
    rows = [["accuracy", rep["accuracy"]], ["ROC AUC (one-vs-rest, macro)", rep.get("roc_auc_ovr_macro")],
            ["log loss", rep["log_loss"]]]
    rows += [[f"{avg} precision / recall / F1",
              _Raw(" / ".join(f"{rep[avg][m]:.4f}" for m in ("precision", "recall", "f1")))]
             for avg in ("macro", "micro", "weighted")]
    parts.append(_table(["metric", "value"], rows, id_="metrics-table"))
    aucs = rep.get("roc_auc_ovr_per_class", {})
    parts.append(_table(["class", "precision", "recall", "F1", "support", "ROC AUC"],
                        [[label, m["precision"], m["recall"], m["f1"], m["support"], aucs.get(label)]
                         for label, m in rep["per_class"].items()], id_="per-class-table"))
    parts.append("<div class=\"plots\">" + _img(by_name["per_class_prf.png"], "per-class precision, recall, F1")
                 + "</div>")
    cm = rep["confusion_matrix"]
    parts.append("<h2 id=\"confusion\">Confusion matrix and ROC curves</h2>")
    parts.append(_table(["true \\ predicted", *cm["labels"]],
                        [[label, *row] for label, row in zip(cm["labels"], cm["matrix"])], id_="confusion-table"))
    parts.append("<div class=\"plots\">" + _img(by_name["confusion_matrix.png"], "confusion matrix")
                 + _img(by_name["roc_ovr.png"], "ROC curves per class") + "</div>")

    parts.append("<h2 id=\"data\">The data</h2>")
    if counts:
        total = sum(counts.values())
        parts.append(_table(["class", "rows", "share"], [[k, v, f"{v / total:.1%}"] for k, v in counts.items()],
                            id_="class-distribution-table"))
        ratio = look.get("imbalance_ratio") or (max(counts.values()) / max(1, min(counts.values())))
        parts.append(f"<p>imbalance ratio (largest class / smallest): <b>{ratio:.2f}</b></p>")
        if look.get("imbalance_note"):
            parts.append(f"<p class=\"note\">{_e(look['imbalance_note'])}</p>")
        parts.append("<div class=\"plots\">" + _img(by_name["class_distribution.png"], "class distribution") + "</div>")
    if look.get("missing_values") is not None:
        types = look.get("column_types", {})
        parts.append(_table(["column", "type", "missing values"],
                            [[c, types.get(c, ""), n] for c, n in look["missing_values"].items()],
                            id_="missing-table"))
        dropped = look.get("rows_dropped") or []
        parts.append(f"<p>rows read: {look.get('n_rows_read')}, used: {look.get('n_rows_used')}</p>")
        parts.append(_table(["rows dropped because", "count", "first rows (line numbers)"],
                            [[d["reason"], d["count"], ", ".join(map(str, d["rows"]))] for d in dropped],
                            id_="dropped-table") if dropped else "<p id=\"dropped-table\">no rows dropped</p>")
    else:
        parts.append("<p>missing values: not recorded for this bundle (a reference dataset without gaps)</p>")

    parts.append("<h2 id=\"cv\">Cross-validation (training part only)</h2>")
    cv = card.get("cross_validation")
    if cv:
        metrics = [m for m in ("accuracy", "macro_f1", "macro_precision", "macro_recall", "log_loss")
                   if m in cv["summary"]]
        fold_rows = [[f"fold {r['fold']}", r["n_validate"], *[r.get(m) for m in metrics]] for r in cv["per_fold"]]
        fold_rows.append([_Raw("<b>mean ± std</b>"), "",
                          *[_Raw(f"{cv['summary'][m]['mean']:.4f} ± {cv['summary'][m]['std']:.4f}")
                            for m in metrics]])
        parts.append(f"<p>stratified {cv['folds']}-fold, seed {cv['seed']}</p>")
        parts.append(_table(["fold", "rows", *metrics], fold_rows, id_="cv-table"))
    else:
        parts.append("<p id=\"cv-table\">no cross-validation recorded (train with <code>--cv K</code>)</p>")

    parts.append("<h2 id=\"search\">Hyperparameter search</h2>")
    search = card.get("search")
    if search:
        space = ", ".join(f"{k} = {v}" for k, v in search["space"].items())
        parts.append(f"<p>{_e(search['mode'])} search over <code>{_e(space)}</code>, by {search['folds']}-fold CV "
                     f"{_e(search['metric'])} ({'higher' if search['greater_is_better'] else 'lower'} is better); "
                     f"chosen: <b>{_e(search['chosen'])}</b></p>")
        cls = ["chosen" if c["params"] == search["chosen"] else "" for c in search["candidates"]]
        parts.append(_table(["parameters", f"mean {search['metric']}", "std"],
                            [[", ".join(f"{k}={v}" for k, v in c["params"].items()), c["mean"], c["std"]]
                             for c in search["candidates"]], cls=cls, id_="search-table"))
    else:
        parts.append("<p id=\"search-table\">no search recorded (train with <code>--search \"C=0.1,1,10\"</code>)</p>")

    parts.append("<h2 id=\"features\">What drives each class</h2>")
    top = (card.get("interpretability") or {}).get("top_features") or {}
    if top.get("classes"):
        parts.append(f"<p>{_e(top['method'])}: positive weights push towards the class</p>")
        for label, feats in top["classes"].items():
            parts.append(f"<h3>class {_e(label)}</h3>")
            parts.append(_table(["feature", "weight"], [[f["feature"], f["weight"]] for f in feats],
                                id_=f"top-features-{label}"))
    else:
        parts.append(f"<p>per-class weights: {_e(top.get('note') or 'not available for this model')}</p>")
    parts.append(f"<h3>Permutation importance (hold-out, {importance['repeats']} shuffles per column, "
                 f"baseline macro F1 {importance['baseline']:.4f})</h3>")
    parts.append(_table(["column", "drop in macro F1", "std"], [[r["feature"], r["mean"], r["std"]] for r in shown],
                        id_="permutation-table"))
    parts.append("<div class=\"plots\">" + _img(by_name["permutation_importance.png"], "permutation importance")
                 + "</div>")

    parts.append("<h2 id=\"schema\">Input schema</h2>")
    parts.append(_table(["column", "type"], [[c.name, c.type] for c in schema.columns][:200], id_="schema-table"))
    page = out / "report.html"
    page.write_text(_page(f"mco report: {card['name']}", "".join(parts)), encoding="utf-8")
    return {"report": str(page), "pngs": [str(p) for p in pngs], "accuracy": rep["accuracy"],
            "macro_f1": rep["macro"]["f1"], "permutation_importance": importance["features"][:5]}


def compare_bundles(a: Bundle, b: Bundle, *, data: Path | None = None,
                    label_column: str | None = None) -> dict[str, Any]:
    """Both models on the same rows (default: A's hold-out); B minus A for every metric."""
    if [str(c) for c in a.card["classes"]] != [str(c) for c in b.card["classes"]]:
        raise ModelError(f"the bundles predict different classes ({a.card['classes']} and {b.card['classes']})",
                         hint="compare models of the same task")
    model_a = OnnxModel(a.model_path.read_bytes())
    model_b = OnnxModel(b.model_path.read_bytes())
    source = data or a.path / a.card["evaluation"]["data"]
    label = label_column or a.card.get("evaluation", {}).get("label_column")
    ja = _judge(a, model_a, source, label)
    try:
        jb = _judge(b, model_b, source, label)
    except ModelError as exc:
        raise ModelError(f"bundle {b.name} cannot read {source}: {exc.message}",
                         hint="compare bundles with the same input columns, or pass --data") from exc
    fa, fb = flatten_metrics(ja.report), flatten_metrics(jb.report)
    rows = []
    for m in COMPARED_METRICS:
        va, vb = fa.get(m), fb.get(m)
        delta = None if va is None or vb is None else vb - va
        better = None if delta is None or delta == 0 else ((delta < 0) == (m in LOWER_IS_BETTER))
        rows.append({"metric": m, "a": va, "b": vb, "delta": delta, "b_better": better})
    per_class = [{"class": label_, "a_f1": ja.report["per_class"][label_]["f1"],
                  "b_f1": jb.report["per_class"][label_]["f1"],
                  "delta": jb.report["per_class"][label_]["f1"] - ja.report["per_class"][label_]["f1"]}
                 for label_ in ja.report["per_class"]]
    agree = float(np.mean([str(x) == str(y) for x, y in zip(ja.labels, jb.labels)]))
    return {"a": {"name": a.name, "version": a.card.get("version"), "digest": a.digest, "path": str(a.path)},
            "b": {"name": b.name, "version": b.card.get("version"), "digest": b.digest, "path": str(b.path)},
            "data": str(source), "n_samples": ja.report["n_samples"], "metrics": rows, "per_class_f1": per_class,
            "prediction_agreement": agree}


def write_compare_page(comparison: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    a, b = comparison["a"], comparison["b"]
    rows, cls = [], []
    for r in comparison["metrics"]:
        mark = "" if r["b_better"] is None else ("better" if r["b_better"] else "worse")
        delta = "–" if r["delta"] is None else f"{r['delta']:+.4f}"
        rows.append([r["metric"], r["a"], r["b"], _Raw(f"<span class=\"{mark}\">{_e(delta)}</span>")])
        cls.append("")
    body = [f"<h1>Compare: {_e(a['name'])} v{_e(a['version'])} → {_e(b['name'])} v{_e(b['version'])}</h1>",
            (f"<p class=\"meta\">both judged on the same {comparison['n_samples']} rows: "
             f"<code>{_e(comparison['data'])}</code> · A <code>{_e(a['digest'][:16])}…</code> · "
             f"B <code>{_e(b['digest'][:16])}…</code> · "
             f"the two agree on {comparison['prediction_agreement']:.1%} of predictions</p>"),
            "<h2>Metrics (delta = B − A)</h2>",
            _table(["metric", "A", "B", "delta"], rows, cls=cls, id_="compare-table"),
            "<h2>F1 per class</h2>",
            _table(["class", "A", "B", "delta"],
                   [[r["class"], r["a_f1"], r["b_f1"], _Raw(_e(f"{r['delta']:+.4f}"))]
                    for r in comparison["per_class_f1"]], id_="compare-per-class")]
    page = out / "compare.html"
    page.write_text(_page(f"mco compare: {a['name']} vs {b['name']}", "".join(body)), encoding="utf-8")
    return page
