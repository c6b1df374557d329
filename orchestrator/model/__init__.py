"""The reference model: train, export to ONNX, evaluate, gate, and bundle.

Only ``bundle`` (digests, card) is light; training and evaluation import
scikit-learn and onnxruntime lazily, behind the ``train`` extra.
"""
