"""TFLite backend through ``ai-edge-litert`` (the successor of ``tflite-runtime``), full-integer models.

``tflite-runtime`` 2.14 is the last release under that name and is built against numpy 1.x, which cannot
share a process with the numpy 2 this SDK's other dependencies need; ``ai-edge-litert`` is used when it
is installed and ``tflite_runtime`` otherwise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BundleError
from .backend import Backend


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as e:
            raise BundleError("no TFLite runtime installed: pip install 'ecg-edge[tflite]' (ai-edge-litert)") from e
    return Interpreter


class TFLiteBackend(Backend):
    name = "tflite"

    def __init__(self, path: str | Path, threads: int = 1):
        """Open the TFLite model at ``path`` with ``threads`` interpreter threads (batch 1 per invoke)."""
        self.interpreter = _interpreter_class()(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        self.window_samples = int(self.inp["shape"][1])
        self.n_outputs = int(self.out["shape"][-1])
        self.path = Path(path)

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        scale, zero = self.inp["quantization"]
        if self.inp["dtype"] != np.float32:
            info = np.iinfo(self.inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(self.inp["dtype"])
        self.interpreter.set_tensor(self.inp["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.out["index"])
        if self.out["dtype"] != np.float32:
            o_scale, o_zero = self.out["quantization"]
            y = (y.astype(np.float32) - o_zero) * o_scale
        return y

    def predict(self, windows: np.ndarray) -> np.ndarray:
        x = self._check(windows)
        if len(x) == 0:  # as ONNX Runtime answers an empty batch
            return np.empty((0, self.n_outputs), np.float32)
        shape = list(self.inp["shape"])
        outs = [self._run_one(x[i:i + 1].reshape(shape)) for i in range(len(x))]
        return np.concatenate(outs).reshape(len(x), -1).astype(np.float32)
