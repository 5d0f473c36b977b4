"""Per-sample timestamps from frame timestamps, gap/duplicate/clock-jump detection, and sensor-to-host clock mapping.

PMD frames carry the time of their LAST sample. The rule (Polar SDK): ``delta = (ts - ts_prev) / n``
and sample ``i`` sits at ``ts_prev + (i + 1) * delta``; on the first frame ``delta = 1 / fs``. Real H10s
sample at 128-131 Hz (one measured 130.045 Hz), so the sample period is tracked from the timestamps
rather than assumed. A frame whose implied period is far above the tracked one carries a gap before it
(frames were lost); a frame stamped exactly like a recent one is a duplicate (delivered twice).

A sensor clock that steps (backwards at all, or forwards by more than ``max_gap_s``), or one wild
timestamp, is a CLOCK JUMP, not a gap nor a run of duplicates: the frame is placed right after the previous
one, the tracker re-anchors its output axis on the new clock reading (``clock_offset_s`` = output axis minus
raw sensor clock) and goes on, and :attr:`FrameTiming.clock_jump_s` reports the step. The output time axis
therefore stays continuous and strictly increasing; no frame is ever dropped for a jump.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..errors import SignalError


@dataclass
class FrameTiming:
    """Result of :meth:`FrameTimestamper.place`.

    ``times_s``: per-sample times (s) on the tracker's continuous sensor axis; ``gap_before_s``: seconds of
    signal missing before the frame (lost frames); ``duplicate``: the frame was already placed (no times);
    ``period_s``: tracked sample period (s); ``clock_jump_s``: how far (s) the raw sensor clock stepped at this
    frame (0.0 if it did not; negative = backwards), the frame itself being placed without a gap.
    """

    times_s: np.ndarray
    gap_before_s: float
    duplicate: bool
    period_s: float
    clock_jump_s: float = 0.0


class FrameTimestamper:
    """Places the samples of successive frames on the sensor time axis (seconds).

    Args:
        nominal_fs_hz: nominal sample rate (Hz), > 0 and finite.
        gap_tolerance: a frame whose per-sample delta exceeds ``gap_tolerance`` x the tracked period follows
            a gap; one whose delta is below ``1 / gap_tolerance`` x the period follows a backwards clock step.
        smoothing: weight of each gap-free delta in the exponential average of the period. The tracked
            period is bounded to +-5 % of the nominal one (the H10 is specified +-2 %).
        max_gap_s: longest gap (s) that lost frames can explain within one connection; a forward step beyond
            it is a clock jump (a wild timestamp or a clock set), not a gap, unless the frames' host arrival
            times (``received_host_s`` of :meth:`place`) advanced by as much: then it is a gap (a long loss
            with the link up). Not applied to the first frame after :meth:`reset` (a reconnection may take
            minutes).
        duplicate_window: how many recent frame timestamps a re-delivered frame is compared against.

    Counters: ``n_gaps``, ``n_duplicates``, ``n_clock_jumps``, ``samples_placed``.
    """

    #: two timestamps closer than this (s) are the same frame (PMD stamps are integer nanoseconds)
    DUPLICATE_TOLERANCE_S = 1e-6

    def __init__(self, nominal_fs_hz: float = 130.0, gap_tolerance: float = 1.5, smoothing: float = 0.05,
                 max_gap_s: float = 60.0, duplicate_window: int = 8):
        if not (math.isfinite(nominal_fs_hz) and nominal_fs_hz > 0):
            raise SignalError(f"nominal_fs_hz must be a positive finite rate in Hz, got {nominal_fs_hz}")
        if not (math.isfinite(gap_tolerance) and gap_tolerance > 1):
            raise SignalError(f"gap_tolerance must be > 1 (e.g. 1.5), got {gap_tolerance}")
        if not max_gap_s > 0:
            raise SignalError(f"max_gap_s must be > 0 seconds (e.g. 60), got {max_gap_s}")
        self.nominal_period = 1.0 / nominal_fs_hz
        self.period = self.nominal_period
        self.gap_tolerance = gap_tolerance
        self.smoothing = smoothing
        self.max_gap_s = float(max_gap_s)
        #: time (s) of the last placed sample on the output axis; None before the first frame / after reset
        self.last_time_s: float | None = None
        #: output axis minus raw sensor clock (s); changes at every clock jump
        self.clock_offset_s = 0.0
        self._segment_end_s: float | None = None  # last_time_s before the latest reset
        self._undo_offset_s: float | None = None  # offset before the jump at the previous frame, if any
        self._recent_raw: deque[float] = deque(maxlen=max(1, int(duplicate_window)))
        self._last_received_s: float | None = None  # host arrival time (s) of the last placed frame
        self.n_gaps = 0
        self.n_duplicates = 0
        self.n_clock_jumps = 0
        self.samples_placed = 0

    @property
    def fs_hz(self) -> float:
        """Tracked sample rate on the sensor clock (Hz)."""
        return 1.0 / self.period

    def reset(self) -> None:
        """Forget the previous frame (after a reconnection the next frame starts a new segment).

        The tracked period and the clock offset are kept; a first frame after the reset that lies before the
        end of the previous segment is a clock jump (the strap's clock was reset), placed after it.
        """
        if self.last_time_s is not None:
            self._segment_end_s = self.last_time_s
        self.last_time_s = None

    def _backwards(self, n: int) -> np.ndarray:
        return np.arange(n - 1, -1, -1, dtype=np.float64) * self.period

    def _jump(self, corrected_last_s: float, n: int, anchor_s: float) -> tuple[np.ndarray, float]:
        """Place ``n`` samples right after ``anchor_s`` and re-anchor the clock offset; return (times, jump_s)."""
        times = anchor_s + self.period * np.arange(1, n + 1, dtype=np.float64)
        jump = corrected_last_s - float(times[-1])
        self.clock_offset_s -= jump
        self.n_clock_jumps += 1
        return times, jump

    #: a forward step beyond ``max_gap_s`` is a gap when the host clock advanced by the same within this
    #: many seconds plus :attr:`HOST_AGREEMENT` of the step (BLE delivery jitter)
    HOST_SLACK_S = 2.0
    HOST_AGREEMENT = 0.05

    def place(self, last_sample_time_s: float, n: int, received_host_s: float | None = None) -> FrameTiming:
        """Place a frame of ``n`` samples whose LAST sample the sensor stamped ``last_sample_time_s`` (s),
        received at ``received_host_s`` (host clock, s; optional: it tells a long loss from a clock step).

        Returns times on a continuous axis, with a gap, duplicate or clock-jump flag. Raises
        :class:`SignalError` for a NaN/inf timestamp (it cannot come from a PMD frame: a caller bug).
        """
        if n <= 0:
            return FrameTiming(np.empty(0), 0.0, False, self.period)
        raw = float(last_sample_time_s)
        if not math.isfinite(raw):
            raise SignalError(f"frame timestamp {last_sample_time_s!r} is not a finite number of seconds; "
                              "pass the sensor time of the frame's last sample")
        if any(abs(raw - r) <= self.DUPLICATE_TOLERANCE_S for r in self._recent_raw):
            self.n_duplicates += 1
            return FrameTiming(np.empty(0), 0.0, True, self.period)
        self._recent_raw.append(raw)
        t = raw + self.clock_offset_s  # on the output axis
        gap = jump = 0.0
        undo = self.clock_offset_s
        if self.last_time_s is None:
            times = t - self._backwards(n)
            if self._segment_end_s is not None and times[0] < self._segment_end_s + 0.5 * self.period:  # clock reset
                times, jump = self._jump(t, n, self._segment_end_s)
        else:
            span = t - self.last_time_s
            delta = span / n
            if not self._fits(delta) and self._undo_offset_s is not None:
                # right after a jump: if the previous clock fits again, the jump was ONE wild stamp
                undo_delta = (raw + self._undo_offset_s - self.last_time_s) / n
                if self._fits(undo_delta):
                    jump = self.clock_offset_s - self._undo_offset_s
                    self.clock_offset_s = self._undo_offset_s
                    self.n_clock_jumps += 1
                    t, span, delta = raw + self.clock_offset_s, undo_delta * n, undo_delta
            undo = self.clock_offset_s
            if jump:
                times = self.last_time_s + delta * np.arange(1, n + 1, dtype=np.float64)
            elif delta < self.period / self.gap_tolerance:  # clock stepped back (or a wild early stamp)
                times, jump = self._jump(t, n, self.last_time_s)
            elif span - n * self.period > self.max_gap_s and not self._host_saw(span, received_host_s):
                # clock stepped forward (or a wild late stamp): the host clock did not advance by as much
                times, jump = self._jump(t, n, self.last_time_s)
            elif delta > self.gap_tolerance * self.period:
                # lost frames: the n samples are the last n before the timestamp, at the tracked period
                times = t - self._backwards(n)
                gap = max(0.0, float(times[0]) - self.last_time_s - self.period)
                self.n_gaps += 1
            else:
                times = self.last_time_s + delta * np.arange(1, n + 1, dtype=np.float64)
                lo, hi = self.nominal_period / 1.05, self.nominal_period * 1.05
                self.period = float(np.clip((1 - self.smoothing) * self.period + self.smoothing * delta, lo, hi))
        self._undo_offset_s = undo if self.clock_offset_s != undo else None
        self._last_received_s = None if received_host_s is None else float(received_host_s)
        self.last_time_s = float(times[-1])
        self.samples_placed += n
        return FrameTiming(times, gap, False, self.period, jump)

    def _host_saw(self, span_s: float, received_host_s: float | None) -> bool:
        """Whether the host clock advanced by about ``span_s`` since the previous frame arrived."""
        if received_host_s is None or self._last_received_s is None:
            return False
        host_span = float(received_host_s) - self._last_received_s
        return abs(host_span - span_s) <= self.HOST_SLACK_S + self.HOST_AGREEMENT * span_s

    def _fits(self, delta: float) -> bool:
        """Whether a per-sample delta (s) continues the stream without a gap or a clock step."""
        return self.period / self.gap_tolerance <= delta <= self.gap_tolerance * self.period


class ClockMapper:
    """Maps sensor time to host time: ``host = offset + skew * (sensor - t0)`` (all in seconds).

    Each frame gives a pair (sensor time of its last sample, host time of arrival). Arrival = true time +
    transport delay (>= 0), so the lower envelope of ``host - sensor`` is the clock offset. The mapper keeps
    the minimum offset in buckets of ``bucket_s`` seconds over the last ``window_s`` seconds and fits a line
    through those minima: its slope is the drift (skew - 1), reported in ppm.

    Guards: a pair whose ``host - sensor`` differs from the current mapping by more than ``jump_s`` seconds
    (a sensor clock step, a wild or zero timestamp) re-anchors the mapper on that pair instead of bending the
    fit (counted in ``n_resets``); a fitted drift beyond ``max_drift_ppm`` (e.g. from a few noisy buckets) is
    not used (skew 1 until the fit is plausible). So the drift never extrapolates from a stale anchor.
    """

    def __init__(self, bucket_s: float = 5.0, window_s: float = 600.0, jump_s: float = 30.0,
                 max_drift_ppm: float = 50_000.0):
        self.bucket_s = bucket_s
        self.jump_s = float(jump_s)
        self.max_drift_ppm = float(max_drift_ppm)
        self.buckets: deque[tuple[float, float]] = deque(maxlen=max(2, int(window_s / bucket_s)))
        self.n_resets = 0
        self.reset()
        self.n_resets = 0

    def reset(self) -> None:
        """Forget every pair: the next :meth:`observe` anchors the mapping afresh (counted in ``n_resets``)."""
        self.buckets.clear()
        self._bucket_start: float | None = None
        self._bucket_min: tuple[float, float] | None = None
        self.t0: float | None = None
        self.offset = 0.0
        self.skew = 1.0
        self.n_resets += 1

    def observe(self, sensor_time_s: float, host_time_s: float) -> None:
        """Add one (sensor time, host arrival time) pair, both in seconds. Raises :class:`SignalError` if
        either is NaN/inf."""
        if not (math.isfinite(sensor_time_s) and math.isfinite(host_time_s)):
            raise SignalError(f"clock pair ({sensor_time_s}, {host_time_s}) is not finite; pass times in seconds")
        d = host_time_s - sensor_time_s
        if self.t0 is not None and abs(host_time_s - float(self.to_host(sensor_time_s))) > self.jump_s:
            self.reset()
        if self.t0 is None:
            self.t0 = sensor_time_s
            self.offset = host_time_s - sensor_time_s + self.t0
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
            if abs(slope) * 1e6 <= self.max_drift_ppm:
                self.skew = 1.0 + float(slope)
                self.offset = float(intercept) + self.t0  # host = sensor + intercept + slope * (sensor - t0)
                return
        self.skew = 1.0
        self.offset = min(p[1] for p in pts) + self.t0

    @property
    def drift_ppm(self) -> float:
        """Sensor clock drift relative to the host clock (ppm; negative: the sensor clock runs fast)."""
        return (self.skew - 1.0) * 1e6

    def to_host(self, sensor_time_s: np.ndarray | float) -> np.ndarray:
        """Host time (Unix s) of sensor time(s) ``sensor_time_s`` (s); identity before the first pair."""
        t = np.asarray(sensor_time_s, np.float64)
        if self.t0 is None:
            return t.copy()
        return t + (self.offset - self.t0) + (self.skew - 1.0) * (t - self.t0)
