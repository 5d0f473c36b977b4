"""ONNX Runtime backend (fp32 or int8 QDQ models)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .backend import Backend

#: the ``metadata_props`` key under which a bundle's ONNX file names its outputs (JSON list, output order)
LABELS_KEY = "ecg_edge_labels"

class OnnxBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 1):
        """Open the ONNX model at ``path`` on the CPU with ``threads`` intra-op threads."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.window_samples = int(self.session.get_inputs()[0].shape[-1])
        out_shape = self.session.get_outputs()[0].shape
        self.n_outputs = int(out_shape[-1]) if isinstance(out_shape[-1], int) else None
        self.path = Path(path)
        #: the label names the file carries (``metadata_props`` key ``ecg_edge_labels``, written by the bundle
        #: build since 2026-11-27), or None
        labels = self.session.get_modelmeta().custom_metadata_map.get(LABELS_KEY)
        try:
            self.label_names: list[str] | None = None if labels is None else [str(n) for n in json.loads(labels)]
        except (ValueError, TypeError):
            self.label_names = None

    def predict(self, windows: np.ndarray) -> np.ndarray:
        x = self._check(windows)[:, None, :]
        return self.session.run(None, {self.input_name: x})[0].astype(np.float32, copy=False)


def int8_kernel() -> str:
    """Which integer dot product this machine's CPU gives ONNX Runtime's int8 (u8s8) kernels: ``avx512_vnni``
    or ``avx_vnni`` (exact 32-bit accumulation), ``avx2`` (VPMADDUBSW, whose 16-bit pair sums saturate on
    large products: ONNX Runtime's quantization notes, ``reduce_range``), else the machine's architecture.
    int8 figures measured on one kind can differ slightly on another."""
    import platform

    info = Path("/proc/cpuinfo")
    flags: set[str] = set()
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    for flag in ("avx512_vnni", "avx_vnni", "avx2"):
        if flag in flags:
            return flag
    return platform.machine() or "unknown"
