"""ASGI model server.

    POST /v1/predict   {"instances": [[...], ...]} -> {"predictions", "probabilities", "model_digest"}
                       rows may also be objects naming each column: {"instances": [{"age": 41, ...}]}
    GET  /healthz      liveness: the process answers
    GET  /readyz       readiness: the model is loaded and its sha256 verified
    GET  /v1/model     the model card
    GET  /metrics      Prometheus text
    /v2/...            the Open Inference Protocol over REST (see ``v2``)

Client mistakes are 4xx with a message naming the problem, never 500. The model is
verified before the app is built (see ``loader``), so a tampered model never serves.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.model.bundle import Bundle
from orchestrator.model.export import OnnxModel
from orchestrator.model.schema import InputSchema, RowError
from orchestrator.serving import v2
from orchestrator.serving.body import BadBody, parse_json

__all__ = ["ServerSettings", "build_app"]


@dataclass(frozen=True)
class ServerSettings:
    max_body_bytes: int = 1 << 20
    max_instances: int = 4096


class _PayloadTooLarge(Exception):
    pass


class _BadInput(Exception):
    pass


def _json(status: int, body: dict[str, Any]) -> Response:
    # orjson writes a 64-row answer in about a tenth of json.dumps' time, numpy arrays included
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


class ClassCounts(Collector):
    """``mco_model_predictions_total{label}``: predicted rows per class, one numpy add per request.

    A prometheus_client Counter child per class costs a lock and a Python call per row
    (64 of them for a 64-row batch); here a batch is one ``bincount``."""

    def __init__(self, classes: list[Any]) -> None:
        self.names = [str(c) for c in classes]
        self._sorted = np.asarray(sorted(classes, key=lambda c: (str(type(c)), c)))
        order = sorted(range(len(classes)), key=lambda i: (str(type(classes[i])), classes[i]))
        self._names_sorted = [self.names[i] for i in order]
        self.counts = np.zeros(len(classes), dtype=np.int64)  # in sorted order

    def add(self, labels: np.ndarray) -> None:
        if len(self._sorted) == 0:
            return
        at = np.searchsorted(self._sorted, labels)
        at = np.clip(at, 0, len(self._sorted) - 1)
        known = self._sorted[at] == labels  # a label the card does not list is not counted
        self.counts += np.bincount(at[known], minlength=len(self._sorted))

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("mco_model_predictions", "Predicted rows per class", labels=["label"])
        for name, count in zip(self._names_sorted, self.counts.tolist()):
            family.add_metric([name], count)
        yield family


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _PayloadTooLarge
        except ValueError:
            raise _BadInput("Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _PayloadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_instances(raw: bytes, n_features: int, max_instances: int,
                     schema: InputSchema | None = None) -> np.ndarray | dict[str, np.ndarray]:
    try:
        payload = parse_json(raw)
    except BadBody as exc:
        raise _BadInput(str(exc)) from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise _BadInput('body must be a JSON object with an "instances" list')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise _BadInput('"instances" must be a non-empty list of rows')
    if len(instances) > max_instances:
        raise _BadInput(f'"instances" has {len(instances)} rows; at most {max_instances} per request')
    if schema is not None and (schema.layout == "columns" or schema.tensor_dtype != "float32"
                               or any(isinstance(row, dict) for row in instances)):
        # Named columns, or a table model's mixed types: the schema checks every row and value.
        try:
            return schema.feeds_from_rows(instances)
        except RowError as exc:
            raise _BadInput(str(exc)) from None
    if raw.count(b'"') == 2 and b"true" not in raw and b"false" not in raw and b"null" not in raw:
        # Fastest path: the only string is the "instances" key and there are no true/false/null,
        # so every value is a number: convert straight to float32 (numpy would otherwise take a
        # string like "1.5" as a number). A ragged batch raises and takes the slow path.
        try:
            X = np.array(instances, dtype=np.float32)
        except (ValueError, TypeError):
            X = None
        if X is not None and X.ndim == 2 and X.shape[1] == n_features:
            if not np.all(np.isfinite(X)):
                raise _BadInput("a feature value overflows float32")
            return X
    elif b"true" not in raw and b"false" not in raw:  # bools would pass numpy as 0/1
        # Fast path: numpy does the type and shape check for well-formed batches.
        # Strings, nulls and ragged rows give a non-numeric dtype or raise; those take the slow path.
        try:
            X = np.asarray(instances)
        except (ValueError, TypeError):
            X = None
        if X is not None and X.dtype.kind in "iuf" and X.ndim == 2 and X.shape[1] == n_features:
            X32 = X.astype(np.float32)
            if not np.all(np.isfinite(X32)):
                raise _BadInput("a feature value overflows float32")
            return X32
    _explain_bad_rows(instances, n_features)  # slow path: name the first bad row and feature
    X = np.asarray(instances, dtype=np.float32)
    if not np.all(np.isfinite(X)):
        raise _BadInput("a feature value overflows float32")
    return X


def _explain_bad_rows(instances: list[Any], n_features: int) -> None:
    for i, row in enumerate(instances):
        if not isinstance(row, list):
            raise _BadInput(f"instance {i} is not a list of numbers")
        if len(row) != n_features:
            raise _BadInput(f"instance {i} has {len(row)} features; the model expects {n_features}")
        for j, value in enumerate(row):
            # bool is an int in Python; a feature is never true/false
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _BadInput(f"instance {i}, feature {j} is {json.dumps(value)}, not a number")
            if isinstance(value, float) and not math.isfinite(value):
                raise _BadInput(f"instance {i}, feature {j} is not finite")


def build_app(bundle: Bundle, model: OnnxModel, settings: ServerSettings | None = None) -> Starlette:
    """The app for one verified bundle. ``loader.load_verified`` makes the arguments."""
    settings = settings or ServerSettings()
    n_features = int(bundle.card["input_schema"]["n_features"])
    schema = InputSchema.from_card(bundle.card, input_name=model.input_name)
    classes = list(bundle.card["classes"])
    digest = bundle.digest
    card_bytes = orjson.dumps(bundle.card)

    registry = CollectorRegistry()
    requests = Counter("mco_model_requests", "Requests by route and status", ["route", "status"], registry=registry)
    latency = Histogram("mco_model_request_seconds", "Request latency", ["route"], registry=registry,
                        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
    class_counts = ClassCounts(classes)
    registry.register(class_counts)
    predict_latency = latency.labels("/v1/predict")
    predict_ok = requests.labels("/v1/predict", "200")

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        try:
            raw = await _read_body(request, settings.max_body_bytes)
            X = _parse_instances(raw, n_features, settings.max_instances, schema)
        except _PayloadTooLarge:
            requests.labels("/v1/predict", "413").inc()
            return _error(413, f"body is larger than {settings.max_body_bytes} bytes")
        except _BadInput as exc:
            requests.labels("/v1/predict", "422").inc()
            return _error(422, str(exc))
        except ClientDisconnect:
            return Response(status_code=499)
        labels, proba = model.predict(X)
        body = {
            "predictions": labels.tolist(),
            "probabilities": np.round(proba.astype(np.float64), 6),
            "model_digest": digest,
        }
        class_counts.add(labels)
        predict_ok.inc()
        predict_latency.observe(time.perf_counter() - started)
        return _json(200, body)

    model_name = str(bundle.card["name"])
    model_version = str(bundle.card.get("version", "1"))
    metadata = orjson.dumps(v2.model_metadata(bundle.card, schema, n_features))
    infer_latency = latency.labels("/v2/infer")
    infer_ok = requests.labels("/v2/infer", "200")

    def _v2_model(request: Request) -> None:
        """The model the path names is this server's (and the version, if named), else a 404."""
        name = request.path_params["name"]
        if name != model_name:
            raise v2.V2Error(f"model '{name}' is not served here; this server serves '{model_name}'", 404)
        version = request.path_params.get("version")
        if version is not None and version != model_version:
            raise v2.V2Error(f"model '{name}' has no version '{version}'; '{model_name}' has version '{model_version}'", 404)

    async def v2_infer(request: Request) -> Response:
        started = time.perf_counter()
        try:
            _v2_model(request)
            if request.headers.get("inference-header-content-length") is not None:
                raise v2.V2Error("the binary tensor data extension is not supported: send JSON tensors with data")
            raw = await _read_body(request, settings.max_body_bytes)
            try:
                payload = parse_json(raw)
            except BadBody as exc:
                raise v2.V2Error(str(exc)) from None
            X = v2.decode_inputs(payload, schema, n_features, settings.max_instances,
                                 plain=v2.numbers_only(raw, payload))
            outputs = v2.select_outputs(payload)
        except v2.V2Error as exc:
            requests.labels("/v2/infer", str(exc.status)).inc()
            return _error(exc.status, str(exc))
        except _PayloadTooLarge:
            requests.labels("/v2/infer", "413").inc()
            return _error(413, f"body is larger than {settings.max_body_bytes} bytes")
        except _BadInput as exc:  # from _read_body: a Content-Length that is not a number
            requests.labels("/v2/infer", "400").inc()
            return _error(400, str(exc))
        except ClientDisconnect:
            return Response(status_code=499)
        labels, proba = model.predict(X)
        body = v2.infer_answer(model_name=model_name, model_version=model_version, request_id=payload.get("id"),
                               outputs=outputs, labels=labels, proba=proba)
        class_counts.add(labels)
        infer_ok.inc()
        infer_latency.observe(time.perf_counter() - started)
        return _json(200, body)

    async def v2_server(_: Request) -> Response:
        from orchestrator import __version__

        return _json(200, {"name": "mco", "version": __version__, "extensions": []})

    async def v2_live(_: Request) -> Response:
        return _json(200, {"live": True})

    async def v2_ready(_: Request) -> Response:
        return _json(200, {"ready": True})  # verified before the app existed, as /readyz

    async def v2_metadata(request: Request) -> Response:
        try:
            _v2_model(request)
        except v2.V2Error as exc:
            return _error(exc.status, str(exc))
        return Response(metadata, media_type="application/json")

    async def v2_model_ready(request: Request) -> Response:
        try:
            _v2_model(request)
        except v2.V2Error as exc:
            return _error(exc.status, str(exc))
        return _json(200, {"name": model_name, "ready": True})

    async def healthz(_: Request) -> Response:
        return _json(200, {"status": "ok"})

    async def readyz(_: Request) -> Response:
        # The model was verified before this app existed; readiness is therefore true.
        return _json(200, {"status": "ready", "model_digest": digest, "model_sha256": bundle.model_sha256})

    async def model_card(_: Request) -> Response:
        return Response(card_bytes, media_type="application/json")

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/v1/predict", predict, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/v1/model", model_card, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v2", v2_server, methods=["GET"]),
        Route("/v2/health/live", v2_live, methods=["GET"]),
        Route("/v2/health/ready", v2_ready, methods=["GET"]),
        Route("/v2/models/{name}", v2_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", v2_model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}", v2_metadata, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", v2_model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/infer", v2_infer, methods=["POST"]),
    ]

    async def http_error(_: Request, exc: Exception) -> Response:
        # an unknown route or a wrong method: the same {"error": ...} body as every other mistake
        status = exc.status_code if isinstance(exc, HTTPException) else 400
        detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
        return _error(status, str(detail))

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
