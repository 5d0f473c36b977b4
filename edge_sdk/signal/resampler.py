"""Streaming linear resampler from irregular, timestamped sensor samples to the model rate.

Output samples sit at ``t0 + k / fs_out`` on the sensor clock (t0 = first sample of the segment), exactly
like :func:`edge_sdk.preprocessing.resample_uniform` does for a whole record, so streamed windows equal
training windows. A gap ends the segment: the next chunk starts a new grid and nothing is interpolated
across the gap.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ResampledBlock:
    """``values_mv`` (m,) at ``fs_hz``; ``sensor_time_s`` and ``host_time_s`` (m,) per output sample."""

    values_mv: np.ndarray
    sensor_time_s: np.ndarray
    host_time_s: np.ndarray
    new_segment: bool


class StreamingResampler:
    def __init__(self, fs_out_hz: float = 500.0):
        self.fs_out = float(fs_out_hz)
        self.reset()

    def reset(self) -> None:
        """Start a new segment with the next sample."""
        self._t0: float | None = None
        self._k = 0  # index of the next output sample
        self._last: tuple[float, float, float] | None = None  # (sensor t, host t, value) of last input

    def push(self, values_mv: np.ndarray, sensor_time_s: np.ndarray, host_time_s: np.ndarray) -> ResampledBlock:
        """Add input samples (strictly increasing sensor times); return every output sample now computable."""
        v = np.asarray(values_mv, np.float64)
        ts = np.asarray(sensor_time_s, np.float64)
        th = np.asarray(host_time_s, np.float64)
        new_segment = self._t0 is None
        if v.size == 0:
            return ResampledBlock(np.empty(0), np.empty(0), np.empty(0), False)
        if self._t0 is None:
            self._t0 = float(ts[0])
        if self._last is not None:
            ts = np.r_[self._last[0], ts]
            th = np.r_[self._last[1], th]
            v = np.r_[self._last[2], v]
        rel = ts - self._t0  # interpolate on times relative to the segment start: no loss from Unix-time magnitudes
        k_end = int(np.floor(rel[-1] * self.fs_out + 1e-9))  # last computable output index
        t_rel = np.arange(self._k, k_end + 1) / self.fs_out
        out = ResampledBlock(np.interp(t_rel, rel, v), self._t0 + t_rel, np.interp(t_rel, rel, th), new_segment)
        self._k = k_end + 1
        self._last = (float(ts[-1]), float(th[-1]), float(v[-1]))
        return out
