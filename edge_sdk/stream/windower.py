"""Cut a stream of model-rate samples into windows of ``window_samples`` every ``hop_samples``."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..preprocessing import WINDOW_SAMPLES


@dataclass
class Window:
    """``values_mv`` (window_samples,) raw (resampled, unfiltered) ECG; times of its first/last sample."""

    index: int
    values_mv: np.ndarray
    start_sensor_s: float
    end_sensor_s: float
    end_host_s: float
    segment: int


class Windower:
    """Windows of ``window_samples`` every ``hop_samples`` from pushed blocks, in one preallocated buffer.

    The buffer holds at most one window (values in mV, sensor and host times in s); after a window is
    emitted its last ``window - hop`` samples move to the front (or, when ``hop > window``, the next
    ``hop - window`` samples are skipped). Memory is constant however long the stream runs.
    :meth:`reset` (after a gap) drops the partial window: no window spans a gap.
    """

    def __init__(self, window_samples: int = WINDOW_SAMPLES, hop_samples: int = WINDOW_SAMPLES // 2):
        for what, v in (("window_samples", window_samples), ("hop_samples", hop_samples)):
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{what} must be a positive whole number of samples, got {v!r}")
        window_samples, hop_samples = int(window_samples), int(hop_samples)
        self.window = window_samples
        self.hop = hop_samples
        self._buf = np.empty((3, window_samples))  # rows: values_mv, sensor_time_s, host_time_s
        self._n = 0  # samples in the buffer
        self._skip = 0  # samples still to skip when hop > window
        self._count = 0
        self.segment = 0
        self.dropped_samples = 0
        self._fresh = True  # no sample since the start or the last reset

    def reset(self) -> None:
        """Drop the partial window and start a new segment (idempotent until new samples arrive)."""
        if not self._fresh:
            self.dropped_samples += self._n
            self._n, self._skip = 0, 0
            self.segment += 1
            self._fresh = True

    def push(self, values: np.ndarray, sensor_time_s: np.ndarray, host_time_s: np.ndarray) -> list[Window]:
        """Append samples (mV) with their times (s); return the windows completed by them."""
        k = len(values)
        if k:
            self._fresh = False
        out = []
        i = 0
        while i < k:
            if self._skip:
                step = min(self._skip, k - i)
                self._skip -= step
                i += step
                continue
            take = min(k - i, self.window - self._n)
            dst = slice(self._n, self._n + take)
            self._buf[0, dst] = values[i:i + take]
            self._buf[1, dst] = sensor_time_s[i:i + take]
            self._buf[2, dst] = host_time_s[i:i + take]
            self._n += take
            i += take
            if self._n == self.window:
                b = self._buf
                out.append(Window(self._count, b[0].copy(), float(b[1, 0]), float(b[1, -1]), float(b[2, -1]),
                                  self.segment))
                self._count += 1
                keep = max(0, self.window - self.hop)
                b[:, :keep] = b[:, self.window - keep:].copy()
                self._n = keep
                self._skip = max(0, self.hop - self.window)
        return out
