"""Compact students designed to survive int8.

Every block is Conv1d -> BatchNorm1d -> ReLU (BatchNorm folds into the conv at export, ReLU fuses with
the quantized conv), no squeeze-excitation gating, no Swish, global average pooling and one linear layer.
Input ``(batch, 1, 5000)`` z-scored ECG at 500 Hz, output ``(batch, n_classes)`` logits.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from edge_sdk.preprocessing import WINDOW_SAMPLES


@dataclass(frozen=True)
class StudentConfig:
    """Widths, kernels and strides of the conv stages (one entry per stage).

    The default spends its budget (18.8 MMAC, 278,276 parameters with 4 outputs) at low time resolution: the first conv
    strides by 4 (125 Hz is plenty after the 40 Hz low-pass), and residual blocks at 31-125 Hz give a
    receptive field of about 5 s, several RR intervals, which AF detection needs.
    """

    channels: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128)
    kernels: tuple[int, ...] = (15, 9, 7, 7, 5, 5, 3)
    strides: tuple[int, ...] = (4, 2, 2, 2, 2, 2, 1)
    extra_blocks: tuple[int, ...] = (0, 0, 0, 1, 1, 2, 1)  # stride-1 residual blocks after each stage
    extra_kernels: tuple[int, ...] = (3, 3, 3, 5, 5, 5, 3)
    n_classes: int = 4
    in_channels: int = 1
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


class ConvBNReLU(nn.Sequential):
    """Conv1d -> BatchNorm1d -> ReLU; the ReLU (index 2) may be an ``nn.Hardtanh(0, hi)``, the upper bound that
    :mod:`quantize.activation_bounds` sets."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int):
        super().__init__(
            nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm1d(c_out),
            nn.ReLU(inplace=True),
        )


class ResidualConv(nn.Module):
    """Stride-1 Conv-BN-ReLU with identity shortcut (an Add, int8-friendly).

    ``branch_bound`` (None while training) clamps the Conv-BN output before the Add, and ``act`` may be an
    ``nn.Hardtanh(0, hi)`` instead of the ReLU: the bounds :mod:`quantize.activation_bounds` sets."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.conv = nn.Conv1d(c, c, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm1d(c)
        self.act = nn.ReLU(inplace=True)
        self.branch_bound: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        if self.branch_bound is not None:
            y = self.branch_bound(y)
        return self.act(y + x)


class EdgeStudent(nn.Module):
    """Plain strided CNN; :meth:`forward` returns logits, ``return_features`` also the pooled features.

    ``input_bound`` (None while training) clips the input (z-scores) before the first convolution: the bound
    :func:`quantize.activation_bounds.bound_input` sets, so the float model clips as its int8 input does."""

    def __init__(self, config: StudentConfig = StudentConfig(), return_features: bool = False):
        super().__init__()
        self.config = config
        self.return_features = return_features
        layers: list[nn.Module] = []
        c_in = config.in_channels
        for c, k, s, extra, ek in zip(config.channels, config.kernels, config.strides, config.extra_blocks,
                                      config.extra_kernels):
            layers.append(ConvBNReLU(c_in, c, k, s))
            layers += [ResidualConv(c, ek) for _ in range(extra)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(c_in, config.n_classes)
        self.input_bound: nn.Module | None = None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_bound is not None:
            x = self.input_bound(x)
        return self.features(x).mean(-1)

    def forward(self, x: torch.Tensor):
        f = self.forward_features(x)
        logits = self.head(self.dropout(f))
        return (logits, f) if self.return_features else logits


#: The one student architecture this project ships; checkpoints name it in ``arch``.
STUDENT_ARCH = "edge_student"


def build_student(arch: str = STUDENT_ARCH, **config) -> EdgeStudent:
    """Build the student named in a checkpoint with its config (``channels=[...]``, ``n_classes=...``)."""
    if arch != STUDENT_ARCH:
        raise ValueError(f"unknown student architecture {arch!r}; this version builds {STUDENT_ARCH!r}")
    return EdgeStudent(StudentConfig.from_dict(config) if config else StudentConfig())


def count_macs(model: nn.Module, input_len: int = WINDOW_SAMPLES, in_channels: int = 1) -> int:
    """Multiply-accumulates of one forward pass on ``(1, in_channels, input_len)``: half the FLOPs that
    ``torch.utils.flop_counter.FlopCounterMode`` counts (convolutions and matrix products; BatchNorm,
    activations and pooling are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_channels, input_len))
    model.train(was_training)
    return int(counter.get_total_flops()) // 2


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
