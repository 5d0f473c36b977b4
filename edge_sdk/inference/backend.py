"""The backend interface and its factory."""
from __future__ import annotations

import numbers
import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..bundle import ModelBundle, check_labels_match, load_bundle
from ..errors import BundleError, ConfigError, SignalError
from ..preprocessing import WINDOW_SAMPLES


class Backend(ABC):
    """Runs one model. ``predict`` takes preprocessed windows ``(n, window_samples)`` float32 and returns
    label probabilities ``(n, n_labels)`` float32."""

    name: str = ""
    window_samples: int = WINDOW_SAMPLES

    def _check(self, windows: np.ndarray) -> np.ndarray:
        """``windows`` as float32 ``(n, window_samples)``; :class:`SignalError` for anything else: other shapes,
        non-real dtypes (text, complex, objects), NaN/inf."""
        raw = np.asarray(windows)
        if raw.dtype.kind not in "fiu":
            raise SignalError(f"{self.name}: windows must be real numbers (float32), got dtype {raw.dtype}")
        x = raw.astype(np.float32, copy=False)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.window_samples:
            raise SignalError(f"{self.name}: windows must be (n, {self.window_samples}), got {np.shape(windows)}")
        if not np.isfinite(x).all():
            bad = np.flatnonzero(~np.isfinite(x).all(1))
            raise SignalError(f"{self.name}: window(s) {bad[:5].tolist()} hold NaN or inf; a model output on them "
                              "would be meaningless - drop or repair those samples first")
        return x

    @abstractmethod
    def predict(self, windows: np.ndarray) -> np.ndarray: ...


def open_backend(bundle: ModelBundle | str | Path, runtime: str = "onnxruntime", precision: str = "int8",
                 file_name: str | None = None, threads: int = 1) -> Backend:
    """Open a bundle's model on ``runtime`` (``onnxruntime`` or ``tflite``) with ``threads`` CPU threads
    (1 up to this machine's CPU count; :class:`ConfigError` otherwise: more threads than cores only slow a
    10-s window down, and tens of thousands of them stall the process)."""
    cores = os.cpu_count() or 1
    if not isinstance(threads, numbers.Integral) or isinstance(threads, bool) or not 1 <= threads <= cores:
        raise ConfigError(f"threads must be a whole number from 1 to {cores} (this machine's CPU count), got "
                          f"{threads!r}")
    threads = int(threads)
    if not isinstance(bundle, ModelBundle):
        bundle = load_bundle(bundle)
    name = file_name or bundle.default_file(runtime, precision)
    entry = bundle.card["files"][name] if name in bundle.card["files"] else None
    if entry is None:
        raise BundleError(f"{name!r} is not in bundle {bundle.root}")
    if entry["runtime"] == "onnxruntime":
        from .onnx_backend import OnnxBackend
        backend: Backend = OnnxBackend(bundle.path(name), threads)
    elif entry["runtime"] == "tflite":
        from .tflite_backend import TFLiteBackend
        backend = TFLiteBackend(bundle.path(name), threads)
    else:
        raise BundleError(f"unknown runtime {entry['runtime']!r} for {name}")
    _check_against_card(backend, bundle, name)
    return backend


def _check_against_card(backend: Backend, bundle: ModelBundle, name: str) -> None:
    """The model graph's input length and output count must be what the card says."""
    want_in, want_out = int(bundle.card["window_samples"]), len(bundle.labels)
    if backend.window_samples != want_in:
        raise BundleError(f"{name} takes windows of {backend.window_samples} samples but the card says {want_in}; "
                          "the model file and card do not belong together - rebuild the bundle")
    inside = getattr(backend, "label_names", None)
    if inside is not None:
        check_labels_match(name, inside, bundle.labels)
    n_out = getattr(backend, "n_outputs", None)
    if n_out is not None and n_out != want_out:
        raise BundleError(f"{name} has {n_out} outputs but the card lists {want_out} labels; the model file and "
                          "card do not belong together - rebuild the bundle")
