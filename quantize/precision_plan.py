"""Which parts of the student stay in float, chosen by measurement on validation windows.

int8 rounding enters at every quantized tensor and adds up on the way to the output probabilities; where it
hurts most depends on the trained weights, so the choice is measured rather than fixed.
:func:`plan_float_ops` starts from the all-int8 model and, one step at a time, keeps in float the part
(a convolution, a residual Add or the head: the op ids of :mod:`quantize.float_ops`) whose float version
helps most: fewest windows whose largest absolute probability error against the fp32 model exceeds
``target``, then the smallest maximum error. It stops when no window exceeds the target, when no part helps
any more (fewer windows over the target, or a max error at least ``min_gain`` lower), or after ``max_float``
parts. Every step records what it bought (max / p99 error, windows over the target) and what it cost
(single-thread ONNX Runtime latency), and the bundle's model card carries the steps (``precision_plan``).

The ONNX int8 model (:func:`quantize.onnx_int8.quantize_onnx_int8`) and the TFLite model
(:func:`quantize.tflite_int8.convert_tflite_int8`) keep the same parts in float.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from edge_sdk.inference.onnx_backend import OnnxBackend

from .float_ops import onnx_float_nodes, sort_ops
from .onnx_int8 import quantize_onnx_int8


def latency_ms(predict: Callable[[np.ndarray], np.ndarray], window: np.ndarray, runs: int = 200) -> float:
    """Median latency of ``predict`` on one window ``(L,)``, ms."""
    one = window[None].astype(np.float32)
    for _ in range(20):
        predict(one)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        predict(one)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def _probs(path: Path, x: np.ndarray) -> np.ndarray:
    from .build import _probs as batched

    return batched(OnnxBackend(path, threads=2), x)


def plan_float_ops(fp32_path: str | Path, calibration: np.ndarray, windows: np.ndarray, target: float = 0.03,
                   calibration_method: str = "minmax", input_range: float | None = None,
                   max_float: int | None = None, min_gain: float = 0.001, measured_on: str = "validation windows",
                   log: Callable[[str], None] = print) -> dict:
    """Greedy choice of the float parts of the int8 model of ``fp32_path`` (see the module docstring).

    ``calibration``: windows (n, 5000) the int8 models are calibrated on; ``windows``: windows (m, 5000) the
    error is measured on (validation data, never the test split); ``target``: largest acceptable absolute
    probability error per window. Returns ``{"float_ops": [...], "reached": bool, "steps": [...], ...}``.
    """
    fp32_path = Path(fp32_path)
    x = np.asarray(windows, np.float32)
    if len(x) == 0:
        raise ValueError("no windows to measure the int8 error on")
    candidates = sort_ops(onnx_float_nodes(onnx.load(str(fp32_path)).graph))
    max_float = len(candidates) if max_float is None else min(int(max_float), len(candidates))
    ref = _probs(fp32_path, x)
    steps: list[dict] = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        def measure(float_ops: list[str]) -> tuple[tuple[int, float], np.ndarray, Path]:
            """(windows over target, max error), per-window max error, and the int8 model's path."""
            path = Path(tmp) / f"float_{'_'.join(sort_ops(float_ops)) or 'none'}.onnx"
            quantize_onnx_int8(fp32_path, path, calibration, calibration_method, input_range=input_range,
                               float_ops=float_ops)
            err = np.abs(_probs(path, x) - ref).max(1)
            return (int((err > target).sum()), float(err.max())), err, path

        def record(float_ops: list[str], added: str | None, err: np.ndarray, path: Path) -> None:
            steps.append({"float_ops": sort_ops(float_ops), "added": added,
                          "max_abs_prob_error": float(err.max()), "p99_abs_prob_error": float(np.quantile(err, 0.99)),
                          "windows_over_target": int((err > target).sum()),
                          "ms_per_window_1_thread": round(latency_ms(OnnxBackend(path, threads=1).predict, x[0]), 3)})
            log(f"[precision plan] float {sort_ops(float_ops)}: max error {err.max():.4f}, "
                f"{int((err > target).sum())} of {len(x)} windows > {target}")

        chosen: list[str] = []
        score, err, path = measure(chosen)
        record(chosen, None, err, path)
        while score[0] > 0 and len(chosen) < max_float:
            trials = {op: measure(chosen + [op]) for op in candidates if op not in chosen}
            best = min(trials, key=lambda i: trials[i][0])
            (n_over, max_err), (best_over, best_max) = score, trials[best][0]
            if best_over > n_over or (best_over == n_over and best_max > max_err - min_gain):
                log("[precision plan] no further float part lowers the error; stopping")
                break
            chosen.append(best)
            score, err, path = trials[best]
            record(chosen, best, err, path)
    return {"float_ops": sort_ops(chosen), "target_max_abs_prob_error": target, "reached": score[0] == 0,
            "measured_on": f"{len(x):,} {measured_on}", "candidates": candidates,
            "rule": "greedy: each step keeps in float the part (convolution, residual Add or head) that leaves "
                    f"the fewest windows over the target, then the smallest max error; stops when none is over "
                    f"the target or no part lowers their number or the max error by {min_gain}",
            "calibration": calibration_method, "steps": steps, "seconds": round(time.time() - t0, 1)}
