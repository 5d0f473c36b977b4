"""Cut a stream of model-rate samples into windows of ``window_samples`` every ``hop_samples``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    """Ring-buffer windowing. :meth:`reset` (after a gap) drops the partial buffer: no window spans a gap."""

    def __init__(self, window_samples: int = 5000, hop_samples: int = 2500):
        if hop_samples <= 0 or window_samples <= 0:
            raise ValueError("window and hop must be positive")
        self.window = window_samples
        self.hop = hop_samples
        self._v = np.empty(0)
        self._ts = np.empty(0)
        self._th = np.empty(0)
        self._count = 0
        self.segment = 0
        self.dropped_samples = 0
        self._fresh = True  # no sample since the start or the last reset

    def reset(self) -> None:
        """Drop the partial window and start a new segment (idempotent until new samples arrive)."""
        if not self._fresh:
            self.dropped_samples += self._v.size
            self._v, self._ts, self._th = np.empty(0), np.empty(0), np.empty(0)
            self.segment += 1
            self._fresh = True

    def push(self, values: np.ndarray, sensor_time_s: np.ndarray, host_time_s: np.ndarray) -> list[Window]:
        if len(values):
            self._fresh = False
        self._v = np.r_[self._v, values]
        self._ts = np.r_[self._ts, sensor_time_s]
        self._th = np.r_[self._th, host_time_s]
        out = []
        while self._v.size >= self.window:
            w = slice(0, self.window)
            out.append(Window(self._count, self._v[w].copy(), float(self._ts[0]), float(self._ts[self.window - 1]),
                              float(self._th[self.window - 1]), self.segment))
            self._count += 1
            self._v, self._ts, self._th = self._v[self.hop:], self._ts[self.hop:], self._th[self.hop:]
        return out
