"""Replay a recorded ECG (WFDB, CSV, npz or a :class:`~edge_sdk.records.Record`) as a live source.

Samples are delivered in chunks (default 73, like a Polar H10 frame at MTU 232) at real time
(``speed=1``), faster (``speed=10``) or as fast as possible (``speed=0``). Samples are in microvolts on
the chunks (the record's millivolts x 1000). The sensor clock of a file without timestamps is the record's
own time axis (``i / fs`` seconds from its first sample, exactly as training windows are cut). A record
that carries per-sample times (:attr:`Record.time_s`, e.g. a recording of
:class:`edge_sdk.stream.Recorder`) is replayed on those recorded times, in seconds: a step longer than 1.5
sample periods comes back as a ``gap`` event (``gap_s``, ``samples``, ``reason='recorded'``) and as
``gap_before_s`` on the chunk after it, never bridged, and no chunk spans a gap. Host times are the Unix
times at which samples become available.
"""
from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from ..errors import SignalError
from ..records import Record, check_fs, read_record
from .base import EcgChunk, EcgSource, SourceItem

#: a step between recorded sample times longer than this many sample periods is a gap
GAP_TOLERANCE = 1.5


class ReplaySource(EcgSource):
    """Replays ``record`` (a :class:`Record` or a path read with :func:`~edge_sdk.records.read_record`).

    Args:
        record: the record, or its path (``fs_hz`` in Hz, ``channel``, ``column``, ``units`` go to
            :func:`~edge_sdk.records.read_record`).
        speed: replay speed (1 = real time, 0 = as fast as possible); finite and >= 0.
        chunk_samples: samples per chunk (> 0).
        start_s, duration_s: replay ``duration_s`` seconds (None: to the end) from ``start_s`` seconds after
            the first sample (on the recorded times when the record has them).

    Raises :class:`SignalError` for bad arguments or an empty selection, and whatever ``read_record`` raises
    for a bad file (:class:`~edge_sdk.errors.RecordNotFoundError`, :class:`~edge_sdk.errors.RecordFormatError`).
    """

    name = "replay"

    def __init__(self, record: Record | str | Path, speed: float = 1.0, chunk_samples: int = 73,
                 start_s: float = 0.0, duration_s: float | None = None, fs_hz: float | None = None,
                 channel: int | str = 0, *, column: int | str | None = None, units: str | None = None):
        super().__init__()
        if isinstance(record, Record):  # built in code: numbers of one lead at a real rate (NaN runs are allowed:
            signal = np.asarray(record.signal_mv)  # the stream restarts around them)
            if signal.dtype.kind not in "fiu" or signal.ndim != 1 or signal.size < 1:
                raise SignalError(f"record {record.name!r}: signal_mv must be (n,) numbers in mV, one lead; got "
                                  f"shape {signal.shape}, dtype {signal.dtype}")
            record = Record(record.name, signal.astype(np.float64, copy=False),
                            check_fs(record.fs_hz, f"fs_hz of record {record.name!r}"), record.lead, record.time_s)
        else:
            record = read_record(record, fs_hz=fs_hz, channel=channel, units=units, column=column)
            if fs_hz is not None and record.time_s is None and abs(record.fs_hz - float(fs_hz)) > 1e-9 * record.fs_hz:
                raise SignalError(f"record {record.name} states its own sample rate, {record.fs_hz:g} Hz, and "
                                  f"fs_hz (--fs) asks for {float(fs_hz):g} Hz; drop --fs (it is for CSV files "
                                  "without a time column)")
        self.record = record
        for what, v in (("start_s", start_s), ("duration_s", duration_s)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer))):
                raise SignalError(f"{what} must be a number of seconds, got {v!r}")
        try:
            speed = float(speed)
        except (TypeError, ValueError):
            raise SignalError(f"speed must be a number >= 0 (0 = as fast as possible), got {speed!r}") from None
        if not (math.isfinite(speed) and speed >= 0):
            raise SignalError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        if not (isinstance(chunk_samples, (int, np.integer)) and chunk_samples > 0):
            raise SignalError(f"chunk_samples must be a positive integer, got {chunk_samples}")
        if not (math.isfinite(start_s) and start_s >= 0):
            raise SignalError(f"start_s must be >= 0 seconds, got {start_s}")
        if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
            raise SignalError(f"duration_s must be > 0 seconds or None (to the end), got {duration_s}")
        self.speed = speed
        self.chunk = int(chunk_samples)
        fs = self.record.fs_hz
        n = len(self.record.signal_mv)
        recorded = self.record.time_s
        if recorded is not None:
            recorded = np.asarray(recorded, np.float64)
            if recorded.shape != (n,) or not np.all(np.diff(recorded) > 0):
                raise SignalError(f"record {self.record.name}: time_s must be ({n},) strictly increasing seconds; "
                                  "drop it (time_s=None) to replay at fs_hz")
            rel = recorded - recorded[0]
            a = int(np.searchsorted(rel, start_s - 0.5 / fs))
            b = n if duration_s is None else int(np.searchsorted(rel, start_s + duration_s - 0.5 / fs))
        else:
            a = int(start_s * fs)
            b = n if duration_s is None else min(n, a + int(duration_s * fs))
        if b - a < 1:
            raise SignalError(f"nothing to replay between {start_s} s and {duration_s} s of {self.record.name}")
        self.samples_uv = self.record.signal_mv[a:b] * 1e3
        #: per-sample sensor times (s) of what is replayed
        self.sensor_time_s = recorded[a:b].copy() if recorded is not None else np.arange(b - a) / fs
        self.nominal_fs_hz = fs
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    def _chunks(self) -> list[tuple[int, int, float]]:
        """(start, end, gap_before_s) of every chunk: segments split at recorded gaps, then by chunk size."""
        t = self.sensor_time_s
        period = 1.0 / self.nominal_fs_hz
        breaks = np.flatnonzero(np.diff(t) > GAP_TOLERANCE * period) + 1
        bounds = [0, *breaks.tolist(), len(t)]
        out = []
        for s, e in zip(bounds, bounds[1:]):
            gap = float(t[s] - t[s - 1] - period) if s > 0 else 0.0
            for i in range(s, e, self.chunk):
                out.append((i, min(e, i + self.chunk), gap if i == s else 0.0))
        return out

    async def stream(self) -> AsyncIterator[SourceItem]:
        """Yield ``connected``, then chunks (and a ``gap`` event before each chunk after a recorded gap), then ``end``."""
        fs = self.nominal_fs_hz
        t_first = float(self.sensor_time_s[0])
        t_start = time.time()
        yield self._event("connected", source=self.name, record=self.record.name)
        for seq, (i, j, gap) in enumerate(self._chunks()):
            if self._closed:
                break
            x = self.samples_uv[i:j]
            sensor_t = self.sensor_time_s[i:j]
            if gap > 0:
                yield self._event("gap", gap_s=gap, samples=int(round(gap * fs)), reason="recorded",
                                  before_sensor_time_s=float(sensor_t[0]))
            if self.speed > 0:  # wait until the chunk's last sample "exists"
                due = t_start + (float(sensor_t[-1]) - t_first) / self.speed
                delay = due - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            now = time.time()
            host_t = now - (sensor_t[-1] - sensor_t) / (self.speed or np.inf)
            yield EcgChunk(x.astype(np.float64), sensor_t.copy(), host_t, now, fs, gap, seq)
        yield self._event("end", source=self.name)
