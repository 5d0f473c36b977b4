"""Training-time augmentation that mimics wearable conditions, applied to preprocessed windows on the device.

The windows it gets are already preprocessed (500 Hz, band-passed, z-scored; see
:mod:`edge_sdk.preprocessing`), so it only adds what survives that preprocessing on a wearable:

- **heart-rate / sample-rate jitter**: each window is resampled in time by a factor drawn from
  ``time_scale`` (linear interpolation from a random start; positions past the end are mirrored back),
  e.g. 1.15 = 15 % faster rhythm, or a device clock 15 % off;
- **in-band noise** (muscle, electrode motion): Gaussian noise low-passed by a 7-sample moving average
  (about the preprocessing's 40 Hz corner), standard deviation drawn from ``noise_std`` in units of the
  window's own standard deviation (1 after z-scoring);
- **residual baseline wander**: a sinusoid of 0.05-0.5 Hz and amplitude drawn from ``wander``.

Each window is z-scored again afterwards, as the preprocessing would. Amplitude scaling is left out on
purpose: the preprocessing z-scores every window, so a gain change never reaches the model.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from edge_sdk.errors import ConfigError
from edge_sdk.preprocessing import DEFAULT_CONFIG


@dataclass(frozen=True)
class WearableAugment:
    """Augmentation settings; each effect is applied to a window with probability ``p_*``.

    ``time_scale``: (low, high) resampling factor; ``noise_std``: (low, high) noise standard deviation in
    window standard deviations; ``wander``: (low, high) sinusoid amplitude, same unit; ``fs_hz``: the
    windows' sample rate.
    """

    time_scale: tuple[float, float] = (0.87, 1.15)
    p_time_scale: float = 0.5
    noise_std: tuple[float, float] = (0.02, 0.2)
    p_noise: float = 0.4
    wander: tuple[float, float] = (0.05, 0.3)
    p_wander: float = 0.3
    fs_hz: float = DEFAULT_CONFIG.fs_hz

    def __post_init__(self) -> None:
        for name in ("time_scale", "noise_std", "wander"):
            lo, hi = getattr(self, name)
            if not (0 <= lo <= hi) or (name == "time_scale" and lo <= 0):
                raise ConfigError(f"augmentation {name} must be (low, high) with 0 < low <= high, got {(lo, hi)}")
        for name in ("p_time_scale", "p_noise", "p_wander"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"augmentation {name} must be a probability in [0, 1], got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: dict) -> "WearableAugment":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown augmentation keys {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch ``x`` (batch, 1, samples) of z-scored windows; returns a new tensor, same shape.
        ``generator``, when given, must live on ``x``'s device."""
        b, _, n = x.shape
        dev = x.device

        def draw(size, lo, hi):
            return lo + (hi - lo) * torch.rand(size, generator=generator, device=dev)

        def chosen(p):
            return torch.rand(b, generator=generator, device=dev) < p

        out = x.float()
        scale = torch.where(chosen(self.p_time_scale), draw(b, *self.time_scale), torch.ones(b, device=dev))
        if bool((scale != 1).any()):
            span = (n - 1) * scale  # input samples one output window covers
            room = torch.clamp((n - 1) - span, min=0)
            start = draw(b, 0.0, 1.0) * room
            pos = start[:, None] + torch.arange(n, device=dev, dtype=torch.float32)[None] * scale[:, None]
            pos = (n - 1) - torch.abs((n - 1) - pos)  # mirror positions past the end back into the window
            pos = pos.clamp(0, n - 1)
            lo = pos.floor().long().clamp(max=n - 2)
            frac = (pos - lo.float())[:, None]
            out = torch.gather(out, 2, lo[:, None]) * (1 - frac) + torch.gather(out, 2, lo[:, None] + 1) * frac
        if self.p_noise > 0:
            noise = F.avg_pool1d(torch.randn(b, 1, n + 6, generator=generator, device=dev), 7, 1)
            noise = noise / noise.std(dim=2, keepdim=True).clamp_min(1e-6)
            amp = torch.where(chosen(self.p_noise), draw(b, *self.noise_std), torch.zeros(b, device=dev))
            out = out + amp[:, None, None] * noise
        if self.p_wander > 0:
            t = torch.arange(n, device=dev, dtype=torch.float32)[None] / self.fs_hz
            freq = draw(b, 0.05, 0.5)[:, None]
            phase = draw(b, 0.0, 2 * math.pi)[:, None]
            amp = torch.where(chosen(self.p_wander), draw(b, *self.wander), torch.zeros(b, device=dev))
            out = out + (amp[:, None] * torch.sin(2 * math.pi * freq * t + phase))[:, None]
        out = out - out.mean(dim=2, keepdim=True)
        return (out / out.std(dim=2, keepdim=True, correction=0).clamp_min(1e-6)).to(x.dtype)
