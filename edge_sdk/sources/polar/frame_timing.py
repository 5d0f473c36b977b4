"""Frame timing of a PMD ECG stream: bytes of one data notification -> an :class:`~..base.EcgChunk` with
per-sample sensor and host times, plus the events that placing it raised (gap, duplicate, clock jump,
malformed frame). No BLE here: it is fed bytes and arrival times, so it is tested alone."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...errors import PmdError
from ..base import EcgChunk
from ..timestamps import ClockMapper, FrameTimestamper
from .pmd import parse_ecg_frame


class FrameTiming:
    """Places ECG frames on the sensor clock (:class:`FrameTimestamper`), maps them to host time
    (:class:`ClockMapper`) and numbers them. ``emit(kind, **detail)`` receives the events.

    :meth:`break_segment` marks that the next frame starts a new segment (after a reconnect or a restart):
    its distance to the last frame is then a gap with that reason, never bridged.
    """

    def __init__(self, nominal_fs_hz: float, emit: Callable[..., Any]):
        self.timestamper = FrameTimestamper(nominal_fs_hz=nominal_fs_hz)
        self.clock_mapper = ClockMapper()
        self._emit = emit
        self._segment_break: str | None = None
        self._sequence = 0

    @property
    def fs_hz(self) -> float:
        """Current estimate of the sample rate on the sensor clock (Hz)."""
        return self.timestamper.fs_hz

    def break_segment(self, reason: str) -> None:
        self._segment_break = reason

    def chunk(self, payload: bytes, received_host_s: float) -> EcgChunk | None:
        """The chunk of one ECG notification received at ``received_host_s`` (host Unix s), or ``None``
        (malformed, empty or duplicate frame: an event says which)."""
        try:
            frame = parse_ecg_frame(payload)
        except PmdError as exc:
            self._emit("malformed_frame", error=str(exc), length=len(payload))
            return None
        n = int(frame.samples_uv.shape[0])
        if n == 0:
            return None
        previous_last = self.timestamper.last_time_s
        if self._segment_break:
            self.timestamper.reset()  # keeps the tracked period
        timing = self.timestamper.place(frame.unix_time_s, n, received_host_s)
        if timing.duplicate:
            self._emit("duplicate", timestamp_ns=frame.timestamp_ns, samples=n)
            return None
        if timing.clock_jump_s:  # sensor clock stepped or a wild stamp: placed without a gap, axis re-anchored
            self._emit("clock_jump", jump_s=timing.clock_jump_s, reason=self._segment_break or "sensor_clock",
                       timestamp_ns=frame.timestamp_ns)
        gap, reason = float(timing.gap_before_s), "lost_frames"
        if self._segment_break:
            if previous_last is not None:
                step = float(timing.times_s[0]) - previous_last - timing.period_s
                if step < -0.5 * timing.period_s:  # e.g. the strap was power-cycled and its clock reset
                    self._emit("clock_jump", jump_s=step, reason=self._segment_break)
                gap = step if step > 0.5 * timing.period_s else 0.0
                reason = self._segment_break
            self._segment_break = None
        if gap > 0:
            self._emit("gap", gap_s=gap, samples=int(round(gap / timing.period_s)), reason=reason,
                       before_sensor_time_s=float(timing.times_s[0]))
        self.clock_mapper.observe(float(timing.times_s[-1]), received_host_s)
        self._sequence += 1
        return EcgChunk(samples_uv=frame.samples_uv.astype(np.float64), sensor_time_s=timing.times_s,
                        host_time_s=self.clock_mapper.to_host(timing.times_s), received_host_s=received_host_s,
                        fs_hz=self.timestamper.fs_hz, gap_before_s=gap, sequence=self._sequence)
