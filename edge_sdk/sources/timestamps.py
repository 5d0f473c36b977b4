"""Per-sample timestamps from frame timestamps, gap/duplicate detection, and sensor-to-host clock mapping.

PMD frames carry the time of their LAST sample. The rule (Polar SDK): ``delta = (ts - ts_prev) / n``
and sample ``i`` sits at ``ts_prev + (i + 1) * delta``; on the first frame ``delta = 1 / fs``. Real H10s
sample at 128-131 Hz (one measured 130.045 Hz), so the sample period is tracked from the timestamps
rather than assumed. A frame whose implied period is far above the tracked one carries a gap before it
(frames were lost); a frame not newer than the previous one is a duplicate.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class FrameTiming:
    """Result of :meth:`FrameTimestamper.place`: per-sample sensor times (s), gap before (s), duplicate flag."""

    times_s: np.ndarray
    gap_before_s: float
    duplicate: bool
    period_s: float


class FrameTimestamper:
    """Places the samples of successive frames on the sensor time axis.

    ``gap_tolerance``: a frame whose per-sample delta exceeds ``gap_tolerance`` x the tracked period is
    treated as following a gap. The tracked period is an exponential average of gap-free deltas,
    bounded to +-5 % of the nominal rate (the H10 is specified +-2 %).
    """

    def __init__(self, nominal_fs_hz: float = 130.0, gap_tolerance: float = 1.5, smoothing: float = 0.05):
        self.nominal_period = 1.0 / nominal_fs_hz
        self.period = self.nominal_period
        self.gap_tolerance = gap_tolerance
        self.smoothing = smoothing
        self.last_time_s: float | None = None
        self.n_gaps = 0
        self.n_duplicates = 0
        self.samples_placed = 0

    @property
    def fs_hz(self) -> float:
        return 1.0 / self.period

    def reset(self) -> None:
        """Forget the previous frame (after a reconnection the next frame starts a new segment)."""
        self.last_time_s = None

    def place(self, last_sample_time_s: float, n: int) -> FrameTiming:
        if n <= 0:
            return FrameTiming(np.empty(0), 0.0, False, self.period)
        if self.last_time_s is None:
            times = last_sample_time_s - self.period * np.arange(n - 1, -1, -1, dtype=np.float64)
            self.last_time_s = last_sample_time_s
            self.samples_placed += n
            return FrameTiming(times, 0.0, False, self.period)
        span = last_sample_time_s - self.last_time_s
        if span <= self.period * 0.5:
            self.n_duplicates += 1
            return FrameTiming(np.empty(0), 0.0, True, self.period)
        delta = span / n
        gap = 0.0
        if delta > self.gap_tolerance * self.period or delta < self.period / self.gap_tolerance:
            if delta > self.period:
                # lost frames: the n samples are the last n before the timestamp, at the tracked period
                times = last_sample_time_s - self.period * np.arange(n - 1, -1, -1, dtype=np.float64)
                gap = max(0.0, times[0] - self.last_time_s - self.period)
                self.n_gaps += 1
            else:  # clock step backwards or burst: keep order, use the tracked period
                times = self.last_time_s + self.period * np.arange(1, n + 1, dtype=np.float64)
        else:
            times = self.last_time_s + delta * np.arange(1, n + 1, dtype=np.float64)
            lo, hi = self.nominal_period / 1.05, self.nominal_period * 1.05
            self.period = float(np.clip((1 - self.smoothing) * self.period + self.smoothing * delta, lo, hi))
        self.last_time_s = float(times[-1])
        self.samples_placed += n
        return FrameTiming(times, gap, False, self.period)


class ClockMapper:
    """Maps sensor time to host time: ``host = offset + skew * (sensor - t0)``.

    Each frame gives a pair (sensor time of its last sample, host time of arrival). Arrival = true time +
    transport delay (>= 0), so the lower envelope of ``host - sensor`` is the clock offset. The mapper keeps
    the minimum offset in buckets of ``bucket_s`` seconds over the last ``window_s`` seconds and fits a line
    through those minima: its slope is the drift (skew - 1), reported in ppm.
    """

    def __init__(self, bucket_s: float = 5.0, window_s: float = 600.0):
        self.bucket_s = bucket_s
        self.buckets: deque[tuple[float, float]] = deque(maxlen=max(2, int(window_s / bucket_s)))
        self._bucket_start: float | None = None
        self._bucket_min: tuple[float, float] | None = None
        self.t0: float | None = None
        self.offset = 0.0
        self.skew = 1.0

    def observe(self, sensor_time_s: float, host_time_s: float) -> None:
        if self.t0 is None:
            self.t0 = sensor_time_s
            self.offset = host_time_s - sensor_time_s
        d = host_time_s - sensor_time_s
        if self._bucket_start is None or sensor_time_s - self._bucket_start >= self.bucket_s:
            if self._bucket_min is not None:
                self.buckets.append(self._bucket_min)
            self._bucket_start = sensor_time_s
            self._bucket_min = (sensor_time_s, d)
        elif d < self._bucket_min[1]:
            self._bucket_min = (sensor_time_s, d)
        pts = list(self.buckets) + [self._bucket_min]
        if len(pts) >= 3:
            s = np.array([p[0] for p in pts]) - self.t0
            o = np.array([p[1] for p in pts])
            slope, intercept = np.polyfit(s, o, 1)
            self.skew = 1.0 + float(slope)
            self.offset = float(intercept) + self.t0  # host = sensor + intercept + slope * (sensor - t0)
        else:
            self.offset = min(p[1] for p in pts) + self.t0

    @property
    def drift_ppm(self) -> float:
        return (self.skew - 1.0) * 1e6

    def to_host(self, sensor_time_s: np.ndarray | float) -> np.ndarray:
        t = np.asarray(sensor_time_s, np.float64)
        if self.t0 is None:
            return t.copy()
        return t + (self.offset - self.t0) + (self.skew - 1.0) * (t - self.t0)
