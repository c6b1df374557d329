"""The benchmark's peer: KServe's own Python model server serving the same ONNX model.

    .venv/bin/python benchmarks/kserve_peer.py BUNDLE_DIR --port N [--quiet]

A ``kserve.Model`` whose ``predict`` runs the bundle's ``model.onnx`` with the same
onnxruntime settings as ``mco serve`` (orchestrator.model.export.OnnxModel: one intra-op and
one inter-op thread, CPU provider) and answers the Open Inference Protocol with the same two
outputs (label, probabilities); one worker, gRPC off. ``--quiet`` turns off KServe's
per-request latency logging and its access log, the peer at its cheapest.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    # KServe reads its own options from the command line when it is imported
    sys.argv = [sys.argv[0]] + (["--enable_latency_logging", "false", "--configure_logging", "false"]
                                if args.quiet else [])

    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

    from orchestrator.model.export import OnnxModel

    card = json.loads((Path(args.bundle) / "card.json").read_text())

    class OnnxPeer(Model):
        def __init__(self) -> None:
            super().__init__(card["name"])
            self.model = OnnxModel((Path(args.bundle) / "model.onnx").read_bytes())
            self.ready = True

        async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
            X = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
            labels, proba = self.model.predict(X)
            label = InferOutput("label", list(labels.shape), "INT64")
            label.set_data_from_numpy(labels.astype(np.int64), binary_data=False)
            probabilities = InferOutput("probabilities", list(proba.shape), "FP64")
            probabilities.set_data_from_numpy(np.round(proba.astype(np.float64), 6), binary_data=False)
            return InferResponse(response_id=payload.id or "", model_name=self.name,
                                 infer_outputs=[label, probabilities])

    server_args = {"http_port": args.port, "workers": 1, "enable_grpc": False}
    if args.quiet:
        import logging

        server_args.update(enable_latency_logging=False)
        for name in ("kserve", "kserve.trace", "uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).setLevel(logging.WARNING)
    print(f"kserve {version('kserve')} peer on {args.port}", flush=True)
    ModelServer(**server_args).start([OnnxPeer()])


if __name__ == "__main__":
    main()
