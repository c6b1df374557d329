"""The model server that runs inside every image: ONNX model, digest-checked, with metrics."""
