"""Bring a trained model: wrap any ONNX classifier into a bundle, judged like a trained one.

Before anything is written the graph is parsed, checked with ``onnx.checker``, loaded by
onnxruntime, and its inputs and outputs are matched to what a bundle serves:

- inputs: one ``[N, F]`` number tensor (features in the data's column order), or one
  ``[N, 1]`` input per column (numbers or text, matched to the data's columns by name);
- outputs: labels (``[N]`` integers or text) and probabilities (``[N, classes]`` numbers).
  A ZipMap output (scikit-learn's default list of ``{class: probability}``) is replaced by
  the tensor it is made from, so the server returns plain arrays; the card says so.

Pickles are refused, whatever their name: loading one runs code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from orchestrator import __version__
from orchestrator.errors import MissingExtraError, ModelError
from orchestrator.model.bundle import MODEL_FILE, Bundle, load_bundle, staged_bundle, write_card
from orchestrator.model.digests import sha256_bytes
from orchestrator.model.evaluate import evaluation_report, prediction_profile
from orchestrator.model.export import OnnxModel
from orchestrator.model.schema import InputColumn, InputSchema
from orchestrator.model.table import ColumnType, check_trainable, look_at, read_table, split_labels
from orchestrator.model.train import HOLDOUT_FILE

__all__ = ["ImportSpec", "import_onnx", "inspect_onnx"]

_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav")
_CONVERT_HINT = (
    "convert the model to ONNX where it was trained, e.g. for scikit-learn: "
    "`from skl2onnx import to_onnx; open('model.onnx', 'wb').write(to_onnx(model, X[:1].astype('float32'), "
    "options={'zipmap': False}).SerializeToString())`, then `mco model import model.onnx ...`"
)
_ELEM = {1: "float32", 11: "float64", 7: "int64", 8: "string"}
_CLASSLABEL_ATTRS = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")
# At least this share of rows must have label == the class with the largest probability,
# or the probability columns cannot be trusted to be in the classes' order.
_MIN_AGREEMENT = 0.95

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImportSpec:
    model: Path
    data: Path
    label_column: str
    name: str | None = None
    version: str = "1"
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class OnnxInspection:
    """A graph that fits: its (rewritten) bytes, its input layout, its classes if it names them."""

    model_bytes: bytes
    original_sha256: str
    inputs: list[tuple[str, str, list[Any]]]  # name, element type, shape
    label_output: str
    proba_output: str
    zipmap_removed: bool
    graph_classes: list[Any] | None
    opset: int


def _describe(value_info: Any) -> str:
    t = value_info.type
    which = t.WhichOneof("value")
    if which == "tensor_type":
        elem = _ELEM.get(t.tensor_type.elem_type, f"type {t.tensor_type.elem_type}")
        dims = [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in t.tensor_type.shape.dim]
        return f"'{value_info.name}' tensor({elem}) [{', '.join(dims)}]"
    if which == "sequence_type":
        return f"'{value_info.name}' sequence (of maps: a ZipMap?)"
    return f"'{value_info.name}' {which}"


def _tensor(value_info: Any) -> tuple[str, list[Any]] | None:
    t = value_info.type
    if t.WhichOneof("value") != "tensor_type":
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim]
    return _ELEM.get(t.tensor_type.elem_type, "other"), dims


def inspect_onnx(path: Path) -> OnnxInspection:
    """Parse, check, load and match a graph; refuse with what was found. Writes nothing."""
    try:
        import onnx
        from onnx import helper
    except ImportError as exc:
        raise MissingExtraError("onnx", "train", purpose="importing ONNX models") from exc
    path = Path(path)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelError(f"{path} is a pickle ({path.suffix}); mco never loads pickles, because reading one runs "
                         "whatever code it holds", hint=_CONVERT_HINT)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", hint="check the path to the .onnx file")
    raw = path.read_bytes()
    if raw[:1] == b"\x80" and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise ModelError(f"{path} is a pickle (whatever its name says); mco never loads pickles", hint=_CONVERT_HINT)
    try:
        proto = onnx.load_model_from_string(raw)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{path} is not an ONNX model ({len(raw)} bytes; truncated, or another format): "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                         hint="export the model to ONNX again, and copy the whole file") from exc
    if not proto.graph.node and not proto.graph.output:
        raise ModelError(f"{path} is not an ONNX model (it parses to an empty graph; truncated, or another format)",
                         hint="export the model to ONNX again, and copy the whole file")
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx.checker.ValidationError
        raise ModelError(f"{path} fails the ONNX checker: {str(exc).strip().splitlines()[0][:400]}",
                         hint="export the model again with a current converter") from exc
    _load(raw, path)

    outputs = list(proto.graph.output)
    found = "; ".join(_describe(o) for o in outputs) or "none"
    labels = [o for o in outputs if (_tensor(o) or ("", []))[0] in ("int64", "string")]
    zipmaps = {n.output[0]: n for n in proto.graph.node if n.op_type == "ZipMap"}
    probas = [o for o in outputs
              if ((_tensor(o) or ("", []))[0] in ("float32", "float64") and len((_tensor(o) or ("", []))[1]) == 2)
              or o.name in zipmaps]
    if not labels or not probas:
        missing = "labels (a [N] tensor of integers or text)" if not labels else \
            "probabilities (a [N, classes] tensor of numbers)"
        raise ModelError(f"{path} does not look like a classifier: it has no output of {missing}; its outputs are: "
                         f"{found}",
                         hint="export the classifier with both outputs (skl2onnx does: label and probabilities)")
    label_out, proba_out = labels[0], probas[0]
    graph_classes: list[Any] | None = None
    zipmap_removed = False
    graph = proto.graph
    if proba_out.name in zipmaps:
        node = zipmaps[proba_out.name]
        graph_classes = _classlabels(node)
        tensor_name = node.input[0]
        graph.node.remove(node)
        proba_out = helper.make_tensor_value_info(tensor_name, onnx.TensorProto.FLOAT,
                                                  [None, len(graph_classes) if graph_classes else None])
        zipmap_removed = True
    if graph_classes is None:
        named = [_classlabels(n) for n in graph.node if any(a.name in _CLASSLABEL_ATTRS for a in n.attribute)]
        named = [c for c in named if c]
        if named and all(c == named[0] for c in named):
            graph_classes = named[0]
    kept_label = next(o for o in graph.output if o.name == label_out.name)
    del graph.output[:]
    graph.output.extend([kept_label, proba_out])

    inputs = []
    for inp in graph.input:
        if inp.name in {i.name for i in graph.initializer}:
            continue
        spec = _tensor(inp)
        if spec is None or spec[0] == "other" or len(spec[1]) != 2:
            raise ModelError(f"{path}: input {_describe(inp)} is not a table input",
                             hint="mco serves inputs of shape [N, features] (one tensor) or [N, 1] (one per column)")
        inputs.append((inp.name, spec[0], spec[1]))
    if len(inputs) == 1 and inputs[0][1] == "string" and inputs[0][2][1] != 1:
        raise ModelError(f"{path}: its one input is a text tensor of width {inputs[0][2][1]}",
                         hint="export text columns as one [N, 1] input each")
    if len(inputs) > 1 and any(shape[1] not in (1, None) for _, _, shape in inputs):
        raise ModelError(f"{path} has several inputs, not all [N, 1]: "
                         + "; ".join(_describe(i) for i in graph.input),
                         hint="mco serves one [N, features] tensor, or one [N, 1] input per column")
    new_bytes = proto.SerializeToString(deterministic=True)
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ModelError(f"{path}: the graph with ZipMap removed fails the checker: {exc}") from exc
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return OnnxInspection(new_bytes, sha256_bytes(raw), inputs, kept_label.name, proba_out.name, zipmap_removed,
                          graph_classes, int(opset))


def _load(raw: bytes, path: Path) -> None:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingExtraError("onnxruntime", "serve", purpose="running ONNX models") from exc
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        ort.InferenceSession(raw, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"onnxruntime cannot load {path}: {first}",
                         hint="the model uses an operator or opset onnxruntime does not have; export it with standard "
                              "operators (and a lower target_opset)") from exc


def _classlabels(node: Any) -> list[Any] | None:
    from onnx import helper

    for attr in node.attribute:
        if attr.name in _CLASSLABEL_ATTRS:
            values = helper.get_attribute_value(attr)
            return [v.decode() if isinstance(v, bytes) else int(v) for v in values]
    return None


def import_onnx(spec: ImportSpec, out: Path, *, progress: Progress | None = None) -> Bundle:
    """Check the graph, evaluate it on the labelled data, and write a bundle to ``out``."""
    say = progress or (lambda _msg: None)
    say(f"checking {spec.model}")
    found = inspect_onnx(spec.model)
    say(f"reading {spec.data}")
    data = split_labels(read_table(spec.data), spec.label_column)
    columns = data.features.columns
    if len(found.inputs) == 1 and found.inputs[0][2][1] != 1:
        name, elem, shape = found.inputs[0]
        if shape[1] is not None and shape[1] != len(columns):
            raise ModelError(f"{spec.data} has {len(columns)} feature columns, the model's input '{name}' takes "
                             f"{shape[1]}", hint="one column per feature, in the model's order, plus the label column")
        schema = InputSchema(tuple(InputColumn(c, elem, name) for c in columns), "tensor", name, elem)
    else:
        by_name = {c: c for c in columns}
        for name, _, _ in found.inputs:
            if name not in by_name:
                raise ModelError(f"{spec.data} has no column '{name}', an input of the model",
                                 hint=f"the model's inputs: {', '.join(i[0] for i in found.inputs)}")
        schema = InputSchema(tuple(InputColumn(n, e, n) for n, e, _ in found.inputs), "columns")
    arrays = schema.arrays_from_table(data.features)
    model = OnnxModel(found.model_bytes)
    try:
        labels, proba = model.predict(schema.feeds(arrays))
    except Exception as exc:  # onnxruntime's run errors: wrong types or shapes for this graph
        raise ModelError(f"the model fails on {spec.data}: {str(exc).splitlines()[0][:400]}",
                         hint="the data's columns must match the model's inputs") from exc
    n = len(data.labels)
    if proba.ndim != 2 or proba.shape[0] != n or proba.shape[1] < 2:
        raise ModelError(f"the probabilities output '{found.proba_output}' has shape {list(proba.shape)} for {n} rows; "
                         f"mco needs [{n}, classes] with at least two classes")
    if labels.shape[0] != n:
        raise ModelError(f"the labels output '{found.label_output}' has {labels.shape[0]} values for {n} rows")
    classes = _classes(spec, found, labels, proba, data.classes)
    class_by_text = {str(c): c for c in classes}
    y = []
    for line, value in zip(data.features.row_numbers, data.labels.tolist()):
        if str(value) not in class_by_text:
            raise ModelError(f"{spec.data}:{line} has label '{value}', which is not one of the model's classes",
                             hint=f"classes: {', '.join(class_by_text)}")
        y.append(class_by_text[str(value)])
    y_true = np.asarray(y)
    y_pred = np.asarray([class_by_text[str(v)] for v in labels.tolist()])
    report = evaluation_report(y_true, y_pred, proba, classes)
    types = {c.name: cast(ColumnType, c.type) for c in schema.columns}
    check_trainable(data, types, max_levels=10**9)  # names an all-missing column; levels are the model's business
    look = look_at(data, types, class_weight=False)

    name = spec.name or Path(spec.model).stem
    with staged_bundle(Path(out)) as staging:
        from orchestrator.model.plots import write_evaluation_plots
        from orchestrator.model.tabular import write_rows

        (staging / MODEL_FILE).write_bytes(found.model_bytes)
        write_evaluation_plots(staging / "plots", report, y_true, proba, classes)
        write_rows(staging / HOLDOUT_FILE, data, np.arange(n))
        card = {
            "schema": "mco.model-card/v1",
            "name": name,
            "version": spec.version,
            "source": "imported",
            "strategy": "imported",
            "classes": classes,
            "input_schema": schema.card_fields(),
            "imported": {"file": Path(spec.model).name, "sha256": found.original_sha256,
                         "zipmap_removed": found.zipmap_removed, "opset": found.opset,
                         "outputs": {"label": found.label_output, "probabilities": found.proba_output},
                         "classes_from": "the graph" if found.graph_classes else
                         ("--classes" if spec.classes else "the data's labels, sorted")},
            "training_data": {"note": "trained outside mco", "class_counts": look.class_counts},
            "data_look": look.as_card(),
            "model": {"format": "onnx", "opset": found.opset, "outputs": ["label", "probabilities"],
                      "probabilities": "the model's own", "input_name": model.input_name},
            "evaluation": {"data": HOLDOUT_FILE, "label_column": spec.label_column, "report": report,
                           "holdout_predictions": prediction_profile(y_pred, proba, classes)},
            "mco_version": __version__,
        }
        write_card(staging, card)
    return load_bundle(out)


def _classes(spec: ImportSpec, found: OnnxInspection, labels: np.ndarray, proba: np.ndarray,
             data_classes: list[Any]) -> list[Any]:
    """The class of each probability column: from the graph, --classes, or the data (sorted)."""
    width = proba.shape[1]
    if found.graph_classes:
        classes = list(found.graph_classes)
    elif spec.classes:
        classes = [int(c) if c.lstrip("-").isdigit() else c for c in spec.classes]
    else:
        classes = sorted({*data_classes, *(v.item() if hasattr(v, "item") else v for v in labels)})
    if len(classes) != width:
        raise ModelError(f"the probabilities output has {width} columns but there are {len(classes)} classes "
                         f"({', '.join(map(str, classes[:10]))})",
                         hint="name the class of each probability column, in order, with --classes a,b,c")
    agreement = float(np.mean([str(classes[int(i)]) == str(v) for i, v in zip(np.argmax(proba, axis=1), labels)]))
    if agreement < _MIN_AGREEMENT:
        raise ModelError(f"the labels output agrees with the largest probability on only {agreement:.0%} of the rows; "
                         f"the probability columns are not in the order {', '.join(map(str, classes))}",
                         hint="name the class of each probability column, in order, with --classes")
    return classes
