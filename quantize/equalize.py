"""Channel equalization: rescale the student's channels so that per-tensor int8 activations lose less.

ONNX Runtime's QDQ and TFLite quantize each activation tensor with one scale for all its channels
(per-tensor uint8/int8). A channel whose values span a tenth of the tensor's range then gets a tenth of the
256 steps. ReLU is positively homogeneous (``relu(s * x) = s * relu(x)`` for ``s > 0``), so multiplying
channel ``c`` of a block's output by ``s_c`` (BatchNorm scale and shift times ``s_c``) and dividing the next
convolution's input-channel ``c`` weights by ``s_c`` leaves the network's function unchanged in exact
arithmetic, while the tensors in between change their channel ranges. This is the activation side of
cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", ICCV 2019) and of SmoothQuant's migration strength (Xiao et al., 2023).

The :class:`distill.student.EdgeStudent` stem of a stage (a strided Conv-BN-ReLU) and its residual blocks
share one tensor stream through the identity shortcuts, so a whole stage shares one scaling ``s`` (the
residual convolutions take ``1/s`` on their inputs and ``s`` on their outputs). With ``r_c`` the largest
absolute value of channel ``c`` over the stage's tensors on real windows, ``s_c = (max(r) / r_c) **
strength``: ``strength`` 1 gives every channel the stage's largest range, 0 changes nothing. Full
equalization moves the whole spread into the next convolution's weights, whose int8 grid is per output
channel, so an intermediate strength does best (measured on validation windows: ``python -m
quantize.precision_study``).

Applied to the float student before export: the fp32 ONNX, int8 ONNX and TFLite models all come from the
equalized student, and :func:`equalize_channels` reports how far its outputs moved (float rounding only).
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn

from distill.torch_dataset import predict
from edge_sdk.errors import ConfigError

#: Channels whose range is below this fraction of their stage's largest get at most ``1 / RANGE_FLOOR``.
RANGE_FLOOR = 1e-3


def check_strength(strength: float) -> float:
    """``strength`` as a float in [0, 1]; :class:`ConfigError` otherwise."""
    try:
        if isinstance(strength, bool):  # JSON true/false is not a strength
            raise TypeError
        s = float(strength)
    except (TypeError, ValueError):
        raise ConfigError(f"channel_equalization is a strength in [0, 1] (0: off), not {strength!r}") from None
    if not 0.0 <= s <= 1.0:
        raise ConfigError(f"channel_equalization is a strength in [0, 1] (0: off), not {strength!r}")
    return s


def stage_blocks(student: nn.Module) -> list[list[int]]:
    """Indices into ``student.features`` of each stage: a Conv-BN-ReLU stem and the residual blocks after it.

    :class:`ConfigError` for a model that is not an :class:`~distill.student.EdgeStudent` (a Net1D teacher
    has gated and grouped blocks that this rescaling does not cover)."""
    from distill.student import ConvBNReLU, EdgeStudent, ResidualConv

    if not isinstance(student, EdgeStudent):
        raise ConfigError(f"channel equalization applies to the EdgeStudent architecture, not "
                          f"{type(student).__name__}; set channel_equalization to 0")
    stages: list[list[int]] = []
    for i, block in enumerate(student.features):
        if isinstance(block, ConvBNReLU):
            stages.append([i])
        elif isinstance(block, ResidualConv) and stages:
            stages[-1].append(i)
        else:
            raise ConfigError(f"channel equalization: block {i} ({type(block).__name__}) is not a Conv-BN-ReLU "
                              f"stem or a residual block after one; set channel_equalization to 0")
    return stages


@torch.no_grad()
def observe_quantized_tensors(student: nn.Module, windows: np.ndarray, seen: Callable[[int, str, torch.Tensor], None],
                              batch: int = 64) -> None:
    """Run ``student`` (eval mode, its training flag restored after) on the windows ``(n, L)`` and call
    ``seen(block index, kind, tensor)`` for each batch's quantized tensors: every block's output (kind
    ``"out"``) and, in a residual block, the BatchNorm output that meets the shortcut (``"branch"``)."""
    hooks = []
    for i, block in enumerate(student.features):
        hooks.append(block.register_forward_hook(lambda _m, _in, out, i=i: seen(i, "out", out)))
        if hasattr(block, "bn") and hasattr(block, "conv"):
            hooks.append(block.bn.register_forward_hook(lambda _m, _in, out, i=i: seen(i, "branch", out)))
    was_training = student.training
    try:
        predict(student, np.asarray(windows, np.float32), batch_size=batch)
    finally:
        for h in hooks:
            h.remove()
        student.train(was_training)


@torch.no_grad()
def channel_ranges(student: nn.Module, windows: np.ndarray, batch: int = 64) -> list[torch.Tensor]:
    """Per stage of :func:`stage_blocks`: the largest absolute value of each channel ``(C,)`` over the windows
    ``(n, L)`` and the stage's quantized tensors (:func:`observe_quantized_tensors`)."""
    stages = stage_blocks(student)
    stage_of = {i: k for k, blocks in enumerate(stages) for i in blocks}
    found: dict[int, torch.Tensor] = {}

    def keep(i: int, _kind: str, out: torch.Tensor) -> None:
        r, k = out.detach().abs().amax(dim=(0, 2)).double(), stage_of[i]
        found[k] = torch.maximum(found[k], r) if k in found else r

    observe_quantized_tensors(student, windows, keep, batch)
    return [found[k] for k in range(len(stages))]


@torch.no_grad()
def equalize_channels(student: nn.Module, windows: np.ndarray, strength: float = 0.5) -> tuple[nn.Module, dict]:
    """A copy of ``student`` with each stage's channels rescaled by ``(max(r) / r_c) ** strength``.

    ``windows``: preprocessed windows ``(n, L)`` (the int8 calibration windows, clipped as the int8 input is);
    ``strength`` in [0, 1]. Returns the equalized student (eval mode; the original is untouched) and a
    report for the model card: per stage the channel-range spread (largest / smallest range) before and
    after, and the largest absolute difference of the two students' logits on the windows (float rounding).
    :class:`ConfigError` for a strength outside [0, 1] or a model other than an EdgeStudent; ValueError
    for no windows.
    """
    s_strength = check_strength(strength)
    x = np.asarray(windows, np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"channel equalization needs windows (n, L) with n >= 1, not shape {x.shape}")
    stages = stage_blocks(student)
    eq = copy.deepcopy(student).eval()
    ranges = channel_ranges(eq, x)
    feats = eq.features
    report_stages = []
    for blocks, r in zip(stages, ranges):
        r = r.clamp_min(RANGE_FLOOR * float(r.max()))
        s = (r.max() / r) ** s_strength
        for i in blocks:
            block = feats[i]
            if hasattr(block, "conv"):  # residual: its input stream is already scaled by s
                block.conv.weight.copy_(block.conv.weight.double().div(s[None, :, None]))
                bn = block.bn
            else:
                bn = block[1]
            bn.weight.copy_(bn.weight.double().mul(s))
            bn.bias.copy_(bn.bias.double().mul(s))
        nxt = blocks[-1] + 1
        if nxt < len(feats):
            conv = feats[nxt][0]
            conv.weight.copy_(conv.weight.double().div(s[None, :, None]))
        else:
            eq.head.weight.copy_(eq.head.weight.double().div(s[None, :]))
        after = r * s
        report_stages.append({"blocks": blocks, "channels": int(len(r)),
                              "range_spread_before": round(float(r.max() / r.min()), 2),
                              "range_spread_after": round(float(after.max() / after.min()), 2),
                              "largest_scale": round(float(s.max()), 3)})
    was_training = student.training
    try:
        diff = float(np.abs(predict(student, x) - predict(eq, x)).max())
    finally:  # predict leaves the model in eval mode
        student.train(was_training)
    return eq, {"strength": s_strength, "windows": int(len(x)), "stages": report_stages,
                "max_abs_logit_change": diff,
                "rule": "per stage (a strided Conv-BN-ReLU and its residual blocks), channel c times "
                        "(max range / range of c) ** strength, the next layer's inputs divided by the same"}
