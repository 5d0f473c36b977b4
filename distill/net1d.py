"""Net1D: the 1-D CNN of ECGFounder (single lead: 1 x 5000 samples at 500 Hz in, 150 logits out).

A faithful re-implementation of the official ``net1d.py`` so that official checkpoints
(``{'state_dict': ...}``) load with ``strict=True`` and reproduce the official logits:
"same" padding computed at run time, grouped k-wide convolutions, squeeze-excitation
gating, max-pooled and zero-channel-padded residuals, Swish activations.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Net1DConfig:
    """Hyper-parameters of a Net1D, named exactly as in the official config files."""

    in_channels: int = 1
    base_filters: int = 64
    ratio: float = 1
    filter_list: tuple[int, ...] = (64, 160, 160, 400, 400, 1024, 1024)
    m_blocks_list: tuple[int, ...] = (2, 2, 2, 3, 3, 4, 4)
    kernel_size: int = 16
    stride: int = 2
    groups_width: int = 16
    n_classes: int = 150
    use_bn: bool = False
    use_do: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> "Net1DConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown Net1D config keys {sorted(unknown)}; expected a subset of {sorted(known)}")
        d = dict(d)
        for k in ("filter_list", "m_blocks_list"):
            if k in d:
                d[k] = tuple(int(v) for v in d[k])
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["filter_list"] = list(self.filter_list)
        d["m_blocks_list"] = list(self.m_blocks_list)
        return d


#: The ECGFounder single-lead configuration (30,807,750 parameters).
ECGFOUNDER_1LEAD = Net1DConfig()


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class Conv1dPadSame(nn.Module):
    """Conv1d with TensorFlow-style "same" padding (output length = ceil(L / stride))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_dim = x.shape[-1]
        out_dim = (in_dim + self.stride - 1) // self.stride
        p = max(0, (out_dim - 1) * self.stride + self.kernel_size - in_dim)
        return self.conv(F.pad(x, (p // 2, p - p // 2), "constant", 0.0))


class MaxPool1dPadSame(nn.Module):
    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.max_pool = nn.MaxPool1d(kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = max(0, self.kernel_size - 1)
        return self.max_pool(F.pad(x, (p // 2, p - p // 2), "constant", 0.0))


class BasicBlock(nn.Module):
    """Pre-activation bottleneck block: 1x1 -> grouped kxk (strided) -> 1x1, SE gate, residual."""

    def __init__(self, in_channels: int, out_channels: int, ratio: float, kernel_size: int, stride: int,
                 groups: int, downsample: bool, is_first_block: bool, use_bn: bool, use_do: bool):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.downsample = downsample
        self.stride = stride if downsample else 1
        self.is_first_block = is_first_block
        self.use_bn = use_bn
        self.use_do = use_do
        middle = int(out_channels * ratio)

        self.bn1 = nn.BatchNorm1d(in_channels)
        self.activation1 = Swish()
        self.do1 = nn.Dropout(p=0.5)
        self.conv1 = Conv1dPadSame(in_channels, middle, kernel_size=1, stride=1)

        self.bn2 = nn.BatchNorm1d(middle)
        self.activation2 = Swish()
        self.do2 = nn.Dropout(p=0.5)
        self.conv2 = Conv1dPadSame(middle, middle, kernel_size=kernel_size, stride=self.stride, groups=groups)

        self.bn3 = nn.BatchNorm1d(middle)
        self.activation3 = Swish()
        self.do3 = nn.Dropout(p=0.5)
        self.conv3 = Conv1dPadSame(middle, out_channels, kernel_size=1, stride=1)

        r = 2
        self.se_fc1 = nn.Linear(out_channels, out_channels // r)
        self.se_fc2 = nn.Linear(out_channels // r, out_channels)
        self.se_activation = Swish()

        if downsample:
            self.max_pool = MaxPool1dPadSame(kernel_size=self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = x
        if not self.is_first_block:
            if self.use_bn:
                out = self.bn1(out)
            out = self.activation1(out)
            if self.use_do:
                out = self.do1(out)
        out = self.conv1(out)

        if self.use_bn:
            out = self.bn2(out)
        out = self.activation2(out)
        if self.use_do:
            out = self.do2(out)
        out = self.conv2(out)

        if self.use_bn:
            out = self.bn3(out)
        out = self.activation3(out)
        if self.use_do:
            out = self.do3(out)
        out = self.conv3(out)

        se = out.mean(-1)
        se = self.se_activation(self.se_fc1(se))
        se = torch.sigmoid(self.se_fc2(se))
        out = out * se.unsqueeze(-1)

        if self.downsample:
            identity = self.max_pool(identity)
        if self.out_channels != self.in_channels:
            ch1 = (self.out_channels - self.in_channels) // 2
            ch2 = self.out_channels - self.in_channels - ch1
            identity = F.pad(identity, (0, 0, ch1, ch2), "constant", 0.0)
        return out + identity


class BasicStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, ratio: float, kernel_size: int, stride: int,
                 groups: int, i_stage: int, m_blocks: int, use_bn: bool, use_do: bool):
        super().__init__()
        self.block_list = nn.ModuleList()
        for i_block in range(m_blocks):
            first = i_block == 0
            self.block_list.append(BasicBlock(
                in_channels=in_channels if first else out_channels,
                out_channels=out_channels,
                ratio=ratio,
                kernel_size=kernel_size,
                stride=stride if first else 1,
                groups=groups,
                downsample=first,
                is_first_block=(i_stage == 0 and first),
                use_bn=use_bn,
                use_do=use_do,
            ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block_list:
            x = block(x)
        return x


class Net1D(nn.Module):
    """ECGFounder's Net1D.

    Input: ``(batch, in_channels, length)`` float32, z-scored ECG (see :mod:`edge_sdk.preprocessing`),
    for ECGFounder ``(batch, 1, 5000)`` = 10 s at 500 Hz. Output: ``(batch, n_classes)`` logits.
    With ``return_features=True`` also the pooled ``(batch, filter_list[-1])`` features.
    """

    def __init__(self, config: Net1DConfig = ECGFOUNDER_1LEAD, return_features: bool = False):
        super().__init__()
        self.config = config
        self.return_features = return_features
        c = config
        self.first_conv = Conv1dPadSame(c.in_channels, c.base_filters, kernel_size=c.kernel_size, stride=2)
        self.first_bn = nn.BatchNorm1d(c.base_filters)
        self.first_activation = Swish()
        self.stage_list = nn.ModuleList()
        in_ch = c.base_filters
        for i_stage, (out_ch, m_blocks) in enumerate(zip(c.filter_list, c.m_blocks_list)):
            self.stage_list.append(BasicStage(
                in_ch, out_ch, c.ratio, c.kernel_size, c.stride, groups=out_ch // c.groups_width,
                i_stage=i_stage, m_blocks=m_blocks, use_bn=c.use_bn, use_do=c.use_do))
            in_ch = out_ch
        self.dense = nn.Linear(in_ch, c.n_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.first_conv(x)
        if self.config.use_bn:
            out = self.first_bn(out)
        out = self.first_activation(out)
        for stage in self.stage_list:
            out = stage(out)
        return out.mean(-1)

    def forward(self, x: torch.Tensor):
        features = self.forward_features(x)
        logits = self.dense(features)
        if self.return_features:
            return logits, features
        return logits
