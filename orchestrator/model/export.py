"""ONNX export and the one way mco runs an ONNX model (onnxruntime).

No pickle anywhere: a model leaves training as ONNX and is only ever read as ONNX.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orchestrator.errors import ExportError, MissingExtraError, ModelError

__all__ = ["OnnxModel", "export_onnx"]

# One-vs-one classifiers have no predict_proba: their ONNX graph emits vote scores.
# We append a softmax so every bundle serves a distribution, and say so in the card.
OVO_PROBABILITY_NOTE = "softmax of one-vs-one vote scores; a ranking score, not a calibrated probability"


def export_onnx(model: Any, sample: np.ndarray, *, strategy: str, name: str) -> tuple[bytes, str]:
    """Convert a fitted scikit-learn pipeline to ONNX bytes; returns (bytes, probability kind)."""
    try:
        from skl2onnx import to_onnx
    except ImportError as exc:
        raise MissingExtraError("skl2onnx", "train", purpose="ONNX export") from exc
    try:
        onx = to_onnx(model, sample[:1].astype(np.float32), options={"zipmap": False},
                      target_opset=17)
    except Exception as exc:  # skl2onnx raises many kinds; none of them may become a pickle fallback
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ExportError(
            f"strategy '{strategy}' cannot be exported to ONNX: {first_line}",
            hint="choose another strategy (multinomial, ovr, ovo); mco never falls back to pickle",
        ) from exc
    kind = "predict_proba"
    if strategy == "ovo":
        onx = _append_softmax(onx)
        kind = OVO_PROBABILITY_NOTE
    onx.doc_string = f"mco model {name} ({strategy})"
    return onx.SerializeToString(deterministic=True), kind


def _append_softmax(onx: Any) -> Any:
    from onnx import helper

    graph = onx.graph
    prob_out = graph.output[1]
    scores = prob_out.name + "_ovo_scores"
    for node in graph.node:
        for i, out in enumerate(node.output):
            if out == prob_out.name:
                node.output[i] = scores
    graph.node.append(helper.make_node("Softmax", [scores], [prob_out.name], axis=1, name="mco_ovo_softmax"))
    return onx


class OnnxModel:
    """A loaded ONNX classifier: ``predict(X) -> (labels, probabilities)``."""

    def __init__(self, model_bytes: bytes, *, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingExtraError("onnxruntime", "serve", purpose="running ONNX models") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"the ONNX model cannot be loaded: {exc}",
                             hint="the file is not a valid ONNX model; retrain or pull the bundle again") from exc
        inputs = self._session.get_inputs()
        self.input_names = [i.name for i in inputs]
        self.input_name = inputs[0].name
        self.n_features = inputs[0].shape[1] if len(inputs[0].shape) > 1 else None
        self.output_names = [o.name for o in self._session.get_outputs()]

    def predict(self, X: np.ndarray | dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``X``: one ``[N, F]`` array for a one-input model, or a feed per input (tables)."""
        feeds = X if isinstance(X, dict) else {self.input_name: X}
        labels, probabilities = self._session.run(self.output_names[:2], feeds)
        return np.asarray(labels).reshape(-1), np.asarray(probabilities)
