"""Streaming linear resampler from irregular, timestamped sensor samples to the model rate.

Output samples sit at ``t0 + k / fs_out`` on the sensor clock (t0 = first sample of the segment), exactly
like :func:`edge_sdk.preprocessing.resample_uniform` does for a whole record, so streamed windows equal
training windows. A gap ends the segment: the next chunk starts a new grid and nothing is interpolated
across the gap.

Cost: a few whole-chunk numpy calls per :meth:`StreamingResampler.push` (no per-sample Python, no
``np.r_``); the arithmetic is unchanged, so outputs are the same to the bit.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass
class ResampledBlock:
    """``values_mv`` (m,) at ``fs_hz``; ``sensor_time_s`` and ``host_time_s`` (m,) per output sample."""

    values_mv: np.ndarray
    sensor_time_s: np.ndarray
    host_time_s: np.ndarray
    new_segment: bool


class StreamingResampler:
    """Linear interpolation of one segment of timestamped samples onto the grid ``t0 + k / fs_out_hz``.

    ``fs_out_hz``: output rate in Hz (the model's, 500). Feed chunks with :meth:`push`; call :meth:`reset`
    at a gap. Holds one input sample between pushes.
    """

    #: highest output rate accepted (Hz); the model's is 500
    MAX_FS_OUT_HZ = 20_000.0

    def __init__(self, fs_out_hz: float = 500.0):
        if (not isinstance(fs_out_hz, numbers.Real) or isinstance(fs_out_hz, bool) or not math.isfinite(fs_out_hz)
                or not 0 < fs_out_hz <= self.MAX_FS_OUT_HZ):
            raise ConfigError(f"fs_out_hz must be an output rate in (0, {self.MAX_FS_OUT_HZ:g}] Hz (the model's: 500), "
                              f"got {fs_out_hz!r}")
        self.fs_out = float(fs_out_hz)
        self.reset()

    def reset(self) -> None:
        """Start a new segment with the next sample."""
        self._t0: float | None = None
        self._k = 0  # index of the next output sample
        self._last: tuple[float, float, float] | None = None  # (sensor t, host t, value) of last input

    def push(self, values_mv: np.ndarray, sensor_time_s: np.ndarray, host_time_s: np.ndarray) -> ResampledBlock:
        """Add input samples (strictly increasing sensor times); return every output sample now computable.

        ``values_mv``, ``sensor_time_s``, ``host_time_s``: ``(n,)`` in mV, seconds (sensor clock) and seconds
        (host clock). The returned block holds the ``(m,)`` outputs at ``fs_out`` Hz up to the last input time.
        """
        v = np.asarray(values_mv, np.float64)
        if v.size == 0:
            return ResampledBlock(np.empty(0), np.empty(0), np.empty(0), False)
        ts = np.asarray(sensor_time_s, np.float64)
        th = np.asarray(host_time_s, np.float64)
        new_segment = self._t0 is None
        if self._t0 is None:
            self._t0 = float(ts[0])
        t0 = self._t0
        if self._last is None:
            rel = ts - t0  # interpolate on times relative to the segment start: no loss from Unix-time magnitudes
        else:  # prepend the previous chunk's last sample, the left end of the first interval
            last_ts, last_th, last_v = self._last
            rel = np.empty(v.size + 1)
            rel[0] = last_ts - t0
            np.subtract(ts, t0, out=rel[1:])
            th = np.concatenate(((last_th,), th))
            v = np.concatenate(((last_v,), v))
        k_end = math.floor(float(rel[-1]) * self.fs_out + 1e-9)  # last computable output index
        t_rel = np.arange(self._k, k_end + 1) / self.fs_out
        out = ResampledBlock(np.interp(t_rel, rel, v), t0 + t_rel, np.interp(t_rel, rel, th), new_segment)
        self._k = k_end + 1
        self._last = (float(ts[-1]), float(th[-1]), float(v[-1]))
        return out
