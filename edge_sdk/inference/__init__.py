"""Inference backends: the same ``predict(windows) -> probabilities`` over ONNX Runtime or the TFLite runtime."""
from .backend import Backend, open_backend

__all__ = ["Backend", "open_backend"]
