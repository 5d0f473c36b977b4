"""Activation bounds: clamp the float student's activations to the ranges its int8 files cover.

int8 activations (ONNX Runtime QDQ and TFLite alike) hold each tensor on the range calibration saw, and a
window whose activations go beyond it (an electrode artefact of 15 standard deviations, say) is clipped
there in the int8 file but not in the float one. On the default student, the training window whose int8
error stayed above 0.03 whichever part was kept in float exceeds the calibrated range of several tensors by
up to 80 %. A wider range (more calibration windows) rounds every window more coarsely instead (``python -m
quantize.precision_study --calibrations``).

:func:`bound_activations` therefore puts the clipping into the float model too, as a ReLU6-style bound:
each quantized activation of an :class:`~distill.student.EdgeStudent` (every block's output, and in a
residual block the Conv-BN output that meets the shortcut) is clamped to the [min, max] it takes on the
calibration windows (``nn.Hardtanh``; ``Clip`` in ONNX, ``MINIMUM``/``MAXIMUM`` in TFLite). On those
windows nothing changes; the int8 files calibrated on them then hold exactly the float model's ranges,
and int8 against float is rounding alone. The bounded student is what the bundle's fp32 and int8 files are
made from, and the model card says how far it moved from the unbounded one (``activation_bounds``).

Measured on the default student (README, the int8 bullet under the result tables): the bounds take the
clipped windows out of the tail of the precision plan's windows, but the held-out maximum is a near tie
that rounding turns round, not a clipped window, so the committed recipe leaves them off.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from distill.torch_dataset import predict
from edge_sdk.errors import ConfigError

from .equalize import observe_quantized_tensors


#: The narrowest bound interval: a tensor that is constant on every calibration window gets this width.
MIN_WIDTH = 1e-6


def check_boundable(student: nn.Module) -> None:
    """:class:`ConfigError` unless ``student`` is an EdgeStudent whose blocks this module can bound."""
    _blocks(student)


def _blocks(student: nn.Module):
    from distill.student import ConvBNReLU, EdgeStudent, ResidualConv

    if not isinstance(student, EdgeStudent):
        raise ConfigError(f"activation bounds apply to the EdgeStudent architecture, not {type(student).__name__}; "
                          "set activation_bounds to false")
    for i, block in enumerate(student.features):
        if not isinstance(block, (ConvBNReLU, ResidualConv)):
            raise ConfigError(f"activation bounds: block {i} ({type(block).__name__}) is neither a Conv-BN-ReLU "
                              "nor a residual block; set activation_bounds to false")
    return list(student.features)


@torch.no_grad()
def activation_ranges(student: nn.Module, windows: np.ndarray, batch: int = 64) -> list[dict]:
    """Per block of ``student.features``: ``{"out": (lo, hi)}`` of its output and, for a residual block,
    ``"branch": (lo, hi)`` of its Conv-BN output, over the windows ``(n, L)`` (float, eval mode;
    :func:`quantize.equalize.observe_quantized_tensors`)."""
    found: list[dict] = [{} for _ in _blocks(student)]

    def keep(i: int, kind: str, out: torch.Tensor) -> None:
        lo, hi = float(out.min()), float(out.max())
        old = found[i].get(kind)
        found[i][kind] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))

    observe_quantized_tensors(student, windows, keep, batch)
    return found


@torch.no_grad()
def bound_activations(student: nn.Module, windows: np.ndarray) -> tuple[nn.Module, dict]:
    """A copy of ``student`` whose activations are clamped to their range on ``windows`` (see the module
    docstring); the original is untouched.

    ``windows``: the int8 calibration windows ``(n, L)``, z-scored and clipped as the int8 input is. Returns
    the bounded student (eval mode) and a report for the model card: per block the bounds, and the largest
    change of the logits on ``windows`` (none: float rounding at most). :class:`ConfigError` for a model other
    than an EdgeStudent; ValueError for no windows."""
    x = np.asarray(windows, np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"activation bounds need windows (n, L) with n >= 1, not shape {x.shape}")
    bounded = copy.deepcopy(student).eval()
    ranges = activation_ranges(bounded, x)
    report_blocks = []
    for i, (block, r) in enumerate(zip(bounded.features, ranges)):
        # a block that is all zeros (or a constant branch) on every window still gets a valid, tiny interval:
        # nn.Hardtanh needs max > min
        hi = max(r["out"][1], MIN_WIDTH)
        entry = {"block": i, "out": [0.0, round(hi, 6)]}
        if "branch" in r:
            lo_b, hi_b = r["branch"]
            hi_b = max(hi_b, lo_b + MIN_WIDTH)
            block.branch_bound = nn.Hardtanh(lo_b, hi_b)
            block.act = nn.Hardtanh(0.0, hi)
            entry["branch"] = [round(lo_b, 6), round(hi_b, 6)]
        else:
            block[2] = nn.Hardtanh(0.0, hi)
        report_blocks.append(entry)
    was_training = student.training
    try:
        diff = float(np.abs(predict(student, x) - predict(bounded, x)).max())
    finally:
        student.train(was_training)
    return bounded, {"windows": int(len(x)), "blocks": report_blocks, "max_abs_logit_change": diff,
                     "rule": "each block's output clamped to [0, its max], a residual block's Conv-BN output to "
                             "[its min, its max], over the calibration windows"}


def bound_input(student: nn.Module, input_range: float) -> nn.Module:
    """A copy of ``student`` (eval mode) whose input (z-scores) is clipped to [-input_range, input_range]
    before the first convolution (``nn.Hardtanh``; ``Clip`` in ONNX, ``MINIMUM``/``MAXIMUM`` in TFLite); the
    original is untouched.

    The int8 input is quantized on that range (the QAT range, :data:`quantize.qat.INPUT_RANGE`), so it clips
    there, and so do the calibration windows (:func:`quantize.onnx_int8.clip_input`); with the first
    convolution kept float, nothing else would. An electrode artefact of 20 standard deviations then drives
    the float part's outputs beyond the ranges the int8 tensors after it were calibrated on, and int8 and
    float part ways on it. With the bound the float model sees what the int8 one sees, on every window.
    ValueError for a range that is not a positive number; :class:`ConfigError` for a model other than an
    EdgeStudent."""
    from distill.student import EdgeStudent

    if not isinstance(student, EdgeStudent):
        raise ConfigError(f"the input clip applies to the EdgeStudent architecture, not {type(student).__name__}; "
                          "set input_clip to false")
    if isinstance(input_range, bool) or not isinstance(input_range, (int, float)) or not input_range > 0:
        raise ValueError(f"the input range is a positive number of standard deviations, not {input_range!r}")
    bounded = copy.deepcopy(student).eval()
    bounded.input_bound = nn.Hardtanh(-float(input_range), float(input_range))
    return bounded


def bounds_effect(unbounded: np.ndarray, bounded: np.ndarray) -> dict:
    """How far the bounds move the float student: probabilities ``(n, C)`` of the student as trained and of
    the bounded one on the same (held-out) windows -> windows changed at all (by more than 1e-6), the largest
    absolute change, and the share of windows whose top output stays the same."""
    a, b = np.asarray(unbounded), np.asarray(bounded)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"probabilities (n, C) of the same windows expected, not shapes {a.shape} and {b.shape}")
    change = np.abs(a - b).max(1) if len(a) else np.zeros(0)
    return {"windows": int(len(a)), "windows_changed": int((change > 1e-6).sum()),
            "max_abs_prob_change": float(change.max()) if len(a) else 0.0,
            "top_label_same": float((a.argmax(1) == b.argmax(1)).mean()) if len(a) else 1.0}
