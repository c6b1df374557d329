"""Train on any table: preprocessing and model in one pipeline, exported to one ONNX graph.

    CSV/Parquet ─► types (inferred, overridable) ─► data look ─► stratified hold-out split
      training part: [search by CV] ─► [CV of the choice] ─► fit
      Pipeline(ColumnTransformer(numbers: median imputation + standard scaling,
                                 text: constant imputation + one-hot), logistic regression)
      ─► ONNX with one input per column ─► checked against predict_proba ─► judged on the hold-out

The hold-out rows are split off first and touched only by the final evaluation.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from orchestrator import __version__
from orchestrator.errors import ExportError, MissingExtraError, ModelError
from orchestrator.model.bundle import MODEL_FILE, Bundle, load_bundle, staged_bundle, write_card
from orchestrator.model.digests import sha256_file
from orchestrator.model.evaluate import evaluation_report, prediction_profile
from orchestrator.model.export import OnnxModel
from orchestrator.model.schema import InputColumn, InputSchema
from orchestrator.model.selection import cross_validate, parse_search, search
from orchestrator.model.table import (
    ColumnType,
    LabelledTable,
    as_text,
    check_trainable,
    column_array,
    infer_types,
    look_at,
    read_table,
    split_labels,
)
from orchestrator.model.train import HOLDOUT_FILE, STRATEGIES, classifier

__all__ = ["MISSING_CATEGORY", "TableSpec", "build_pipeline", "spec_like", "train_table", "write_rows"]

MISSING_CATEGORY = "(missing)"
# ONNX must reproduce scikit-learn's probabilities this closely, or the bundle is not written.
ONNX_TOLERANCE = 1e-5

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TableSpec:
    """Everything that decides the model, so ``--like`` can train the same one on new data."""

    data: Path
    label_column: str
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    strategy: str = "multinomial"
    seed: int = 42
    test_size: float = 0.25
    class_weight: bool = False
    max_iter: int = 2000
    cv: int | None = None
    search: tuple[str, ...] = ()
    search_metric: str = "macro_f1"
    search_random: int | None = None
    max_levels: int = 1000
    name: str | None = None
    version: str = "1"
    column_types: tuple[tuple[str, ColumnType], ...] = field(default=())  # fixed by --like: the schema it replaces

    def recipe(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("data")
        body["column_types"] = dict(self.column_types)
        return body


def spec_like(card: dict[str, Any], data: Path, **overrides: Any) -> TableSpec:
    """The spec a bundle was trained with, on new data (same pipeline, same search space)."""
    recipe = card.get("recipe")
    if not recipe:
        raise ModelError(f"bundle '{card.get('name')}' was not trained on a table by mco, so it has no recipe to repeat",
                         hint="--like needs a bundle made by `mco model train --data`")
    fields = {k: v for k, v in recipe.items() if k in TableSpec.__dataclass_fields__}
    for key in ("categorical", "numeric", "drop", "search"):
        fields[key] = tuple(fields.get(key) or ())
    fields["column_types"] = tuple((c["name"], cast(ColumnType, c["type"])) for c in card["input_schema"]["columns"])
    return replace(TableSpec(data=Path(data), **fields), **overrides)


def _param_key(strategy: str, name: str) -> str:
    return f"clf__{name}" if strategy == "multinomial" else f"clf__estimator__{name}"


def build_pipeline(spec: TableSpec, types: dict[str, ColumnType], columns: list[str],
                   params: dict[str, Any] | None = None) -> Any:
    """The unfitted pipeline over an object array whose columns are ``columns``."""
    try:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler
    except ImportError as exc:
        raise MissingExtraError("scikit-learn", "train", purpose="training") from exc
    numeric = [j for j, c in enumerate(columns) if types[c] != "string"]
    text = [j for j, c in enumerate(columns) if types[c] == "string"]
    parts: list[tuple[str, Any, list[int]]] = []
    if numeric:
        parts.append(("numeric", Pipeline([("impute", SimpleImputer(strategy="median")),
                                           ("scale", StandardScaler())]), numeric))
    if text:
        parts.append(("categorical", Pipeline([
            ("impute", SimpleImputer(missing_values="", strategy="constant", fill_value=MISSING_CATEGORY)),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]), text))
    clf = classifier(spec.strategy, class_weight=spec.class_weight, max_iter=spec.max_iter, seed=spec.seed)
    pipeline = Pipeline([("prep", ColumnTransformer(parts)), ("clf", clf)])
    if params:
        pipeline.set_params(**{_param_key(spec.strategy, k): v for k, v in params.items()})
    return pipeline


def _allowed_params() -> set[str]:
    from sklearn.linear_model import LogisticRegression

    return set(LogisticRegression().get_params())


def _feature_names(pipeline: Any, types: dict[str, ColumnType], columns: list[str]) -> list[str]:
    """Names of the columns the classifier sees: numbers as themselves, one per category."""
    names: list[str] = []
    prep = pipeline.named_steps["prep"]
    for part, transformer, idx in prep.transformers_:
        if part == "numeric":
            names.extend(columns[j] for j in idx)
        elif part == "categorical":
            for j, cats in zip(idx, transformer.named_steps["onehot"].categories_):
                names.extend(f"{columns[j]}={c}" for c in cats)
    return names


def export_table_model(pipeline: Any, schema: InputSchema, name: str) -> bytes:
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    except ImportError as exc:
        raise MissingExtraError("skl2onnx", "train", purpose="ONNX export") from exc
    initial = [(c.input, StringTensorType([None, 1]) if c.type == "string" else FloatTensorType([None, 1]))
               for c in schema.columns]
    try:
        onx = to_onnx(pipeline, initial_types=initial, options={"zipmap": False}, target_opset=17)
    except Exception as exc:  # skl2onnx raises many kinds; none of them may become a pickle fallback
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ExportError(f"the pipeline cannot be exported to ONNX: {first_line}",
                          hint="choose another --strategy; mco never falls back to pickle") from exc
    onx.doc_string = f"mco model {name} (table pipeline)"
    return bytes(onx.SerializeToString(deterministic=True))


def _input_names(columns: list[str]) -> list[str]:
    """ONNX input names: the column name where it is a plain identifier, else a safe one."""
    out: list[str] = []
    for j, c in enumerate(columns):
        safe = c if c.replace("_", "a").isalnum() and not c[0].isdigit() else f"col{j}"
        out.append(safe if safe not in out else f"col{j}")
    return out


def _object_matrix(arrays: list[np.ndarray]) -> np.ndarray:
    X = np.empty((len(arrays[0]), len(arrays)), dtype=object)
    for j, a in enumerate(arrays):
        X[:, j] = a
    return X


def _check_folds(data: LabelledTable, y_train: np.ndarray, classes: list[Any], folds: int) -> None:
    for c in classes:
        n = int((y_train == c).sum())
        if n < folds:
            total = int((data.labels == c).sum())
            raise ModelError(
                f"{data.features.path}: class '{c}' of '{data.label_column}' has {total} rows, {n} of them in the "
                f"training part; {folds}-fold cross-validation needs at least {folds} in every fold's split",
                hint=f"use fewer folds (--cv {max(2, n)}) if that class is worth keeping, add rows of '{c}', "
                     f"or remove its rows from the data")


def train_table(spec: TableSpec, out: Path, *, progress: Progress | None = None, replaces: Bundle | None = None,
                no_worse: tuple[str, ...] = ("macro_f1", "accuracy"), tolerance: float = 0.0) -> Bundle:
    """Read, look, split, select, fit, export, check, evaluate and write a bundle to ``out``.

    With ``replaces``, the bundle it replaces is judged on the new hold-out too, and the new
    one is written only if it is not worse on any of ``no_worse`` (by more than ``tolerance``).
    """
    from sklearn.model_selection import train_test_split

    say = progress or (lambda _msg: None)
    if spec.strategy not in STRATEGIES:
        raise ModelError(f"unknown strategy '{spec.strategy}'", hint=f"choose one of: {', '.join(STRATEGIES)}")
    if not 0.0 < spec.test_size < 1.0:
        raise ModelError(f"--test-size must be between 0 and 1, got {spec.test_size}")
    say(f"reading {spec.data}")
    table = read_table(spec.data)
    for name in spec.drop:
        if name not in table.cells:
            raise ModelError(f"{spec.data} has no column '{name}' to drop (columns: {', '.join(table.columns)})")
        if name == spec.label_column:
            raise ModelError(f"--drop names the label column '{name}'")
    data = split_labels(table.without(list(spec.drop)), spec.label_column)
    fixed = dict(spec.column_types) or None
    if fixed:
        _check_same_columns(data, fixed)
    types = infer_types(data.features, categorical=list(spec.categorical), numeric=list(spec.numeric), fixed=fixed)
    check_trainable(data, types, max_levels=spec.max_levels)
    look = look_at(data, types, class_weight=spec.class_weight)
    columns = list(data.features.columns)
    classes = data.classes

    for c in classes:
        if int((data.labels == c).sum()) < 2:
            raise ModelError(f"{spec.data}: class '{c}' of '{spec.label_column}' has one row; the stratified "
                             "hold-out split needs at least two of every class",
                             hint=f"add rows of '{c}', or remove its row from the data")
    arrays = [column_array(data.features, c, types[c]) for c in columns]
    X = _object_matrix(arrays)
    y = data.labels
    try:
        train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=spec.test_size, random_state=spec.seed,
                                               stratify=y)
    except ValueError as exc:
        raise ModelError(f"{spec.data}: cannot make a stratified hold-out split: {exc}",
                         hint="change --test-size so the hold-out has at least one row per class") from exc
    X_train, y_train, X_test, y_test = X[train_idx], y[train_idx], X[test_idx], y[test_idx]

    def fit(params: dict[str, Any], rows: np.ndarray) -> Any:
        return build_pipeline(spec, types, columns, params).fit(X_train[rows], y_train[rows])

    def take(M: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return M[rows]

    folds = spec.cv or (5 if spec.search else None)
    if folds is not None and folds < 2:
        raise ModelError(f"--cv needs at least 2 folds, got {folds}")
    params: dict[str, Any] = {}
    search_section = None
    cv_section = None
    if folds:
        _check_folds(data, y_train, classes, folds)
    if spec.search:
        space = parse_search(list(spec.search), allowed=_allowed_params())
        say(f"searching {', '.join(space.values)} by {folds}-fold CV on the training part")
        search_section, cv_section = search(
            fit, space, X_train, y_train, classes, folds=folds or 5, seed=spec.seed, metric=spec.search_metric,
            random_n=spec.search_random, take=take,
            progress=lambda i, n: say(f"candidate {i + 1}/{n}"))
        params = dict(search_section["chosen"])
    elif folds:
        say(f"{folds}-fold cross-validation on the training part")
        cv_section = cross_validate(fit, {}, X_train, y_train, classes, folds=folds, seed=spec.seed, take=take)

    say("fitting on the training part")
    pipeline = fit(params, np.arange(len(y_train)))
    schema = InputSchema(tuple(InputColumn(c, types[c], i) for c, i in zip(columns, _input_names(columns))),
                         "columns")
    name = spec.name or f"{Path(spec.data).stem}-{spec.strategy}"
    model_bytes = export_table_model(pipeline, schema, name)
    onnx_model = OnnxModel(model_bytes)
    test_arrays = [a[test_idx] for a in arrays]
    y_pred, proba = onnx_model.predict(schema.feeds(test_arrays))
    gap = float(np.max(np.abs(proba - pipeline.predict_proba(X_test))))
    if not gap <= ONNX_TOLERANCE:
        raise ExportError(f"the ONNX graph's probabilities differ from scikit-learn's by {gap:.2e} on the hold-out "
                          f"(tolerance {ONNX_TOLERANCE:g})", hint="report this with the data's column types")
    report = evaluation_report(y_test, y_pred, proba, classes)

    from orchestrator.model.interpret import top_features

    interpretability = {"top_features": top_features(pipeline.named_steps["clf"],
                                                     _feature_names(pipeline, types, columns), classes)}
    clf = pipeline.named_steps["clf"]
    lr_params = (clf if spec.strategy == "multinomial" else clf.estimator).get_params()
    hyper = {k: lr_params[k] for k in ("C", "class_weight", "max_iter", *params)}

    with staged_bundle(Path(out)) as staging:
        from orchestrator.model.plots import write_evaluation_plots

        (staging / MODEL_FILE).write_bytes(model_bytes)
        write_evaluation_plots(staging / "plots", report, y_test, proba, classes)
        write_rows(staging / HOLDOUT_FILE, data, test_idx)
        replaced = None
        if replaces is not None:
            say(f"judging {replaces.name} v{replaces.card.get('version')} on the new hold-out")
            replaced = _judge_against(replaces, staging / HOLDOUT_FILE, spec.label_column, report, no_worse,
                                      tolerance)
        card = {
            "schema": "mco.model-card/v1",
            "name": name,
            "version": spec.version,
            "source": "trained",
            "strategy": spec.strategy,
            "classes": classes,
            "input_schema": schema.card_fields(),
            "training_data": {
                "file": Path(spec.data).name, "sha256": sha256_file(spec.data), "label_column": spec.label_column,
                "seed": spec.seed, "test_size": spec.test_size, "split": "stratified",
                "n_train": len(train_idx), "n_test": len(test_idx),
                "class_weight": "balanced" if spec.class_weight else None,
                "class_counts": look.class_counts,
            },
            "data_look": look.as_card(),
            "preprocessing": {
                "numeric": {"columns": [c for c in columns if types[c] != "string"],
                            "impute": "median", "scale": "standard (mean 0, variance 1)"},
                "categorical": {"columns": [c for c in columns if types[c] == "string"],
                                "impute": f"constant '{MISSING_CATEGORY}'",
                                "encode": "one-hot; values not seen in training encode as all zeros"},
                "in_model": True,
            },
            "hyperparameters": hyper,
            "cross_validation": cv_section,
            "search": search_section,
            "interpretability": interpretability,
            "recipe": spec.recipe(),
            "replaces": replaced,
            "model": {"format": "onnx", "opset": 17, "outputs": ["label", "probabilities"],
                      "probabilities": "predict_proba", "inputs": "one per column",
                      "onnx_vs_sklearn_max_abs_diff": gap},
            "evaluation": {"data": HOLDOUT_FILE, "label_column": spec.label_column, "report": report,
                           "holdout_predictions": prediction_profile(y_pred, proba, classes)},
            "mco_version": __version__,
        }
        write_card(staging, card)
    return load_bundle(out)


def _judge_against(old: Bundle, holdout: Path, label_column: str, new_report: dict[str, Any],
                   metrics: tuple[str, ...], tolerance: float) -> dict[str, Any]:
    """The old bundle on the new hold-out; refuse (GateError) when the new model is worse."""
    from orchestrator.errors import GateError
    from orchestrator.model.evaluate import flatten_metrics, read_labelled_data
    from orchestrator.model.gate import Requirement, check_gate

    if [str(c) for c in old.card["classes"]] != [str(c) for c in (new_report["per_class"])]:
        raise GateError(f"the new data's classes ({', '.join(new_report['per_class'])}) differ from those of "
                        f"{old.name} ({', '.join(map(str, old.card['classes']))}); the two cannot be compared",
                        hint="train afresh without --like")
    old_model = OnnxModel(old.model_path.read_bytes())
    rows = read_labelled_data(old.card, holdout, label_column=label_column, input_name=old_model.input_name)
    labels, proba = old_model.predict(rows.feeds)
    old_flat = flatten_metrics(evaluation_report(rows.y, labels, proba, old.card["classes"]))
    reqs = []
    for m in metrics:
        if m not in old_flat:
            raise GateError(f"metric '{m}' is not in the report", hint="e.g. --no-worse macro_f1,accuracy")
        lower = m == "log_loss"
        reqs.append(Requirement(m, "<=" if lower else ">=", old_flat[m] + (tolerance if lower else -tolerance)))
    result = check_gate(new_report, reqs)
    record = {"bundle_digest": old.digest, "name": old.name, "version": old.card.get("version"),
              "judged_on": "the new hold-out", "old_metrics": {m: old_flat[m] for m in metrics},
              "checks": result.checks, "passed": result.passed}
    if not result.passed:
        raise GateError(f"the retrained model is worse than {old.name} v{old.card.get('version')} on the new hold-out: "
                        + "; ".join(f"{c['metric']} {c['value']:.4f} vs {old_flat[c['metric']]:.4f}"
                                    for c in result.failures) + "; nothing was written",
                        hint="look at the new data (mco model report), or relax with --tolerance")
    return record


def _check_same_columns(data: LabelledTable, fixed: dict[str, ColumnType]) -> None:
    """Retraining keeps the input schema: the new table has exactly the old columns."""
    for name in fixed:
        if name not in data.features.cells:
            raise ModelError(f"{data.features.path} has no column '{name}', which the bundle being replaced reads",
                             hint="the new data needs the same columns as the old (or train afresh without --like)")
    for name in data.features.columns:
        if name not in fixed:
            raise ModelError(f"{data.features.path} has column '{name}', which the bundle being replaced does not read",
                             hint=f"leave it out with --drop {name}, or train afresh without --like")


def write_rows(path: Path, data: LabelledTable, rows: np.ndarray) -> None:
    """The rows as read (text, '' for missing) plus the label: what `mco model evaluate` reads back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*data.features.columns, data.label_column])
        for i in rows:
            cells = [data.features.cells[c][i] for c in data.features.columns]
            writer.writerow([*("" if v is None else as_text(v) for v in cells), data.labels[i]])
