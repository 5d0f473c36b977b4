"""Replay a recorded ECG (WFDB, CSV, npz or a :class:`~edge_sdk.records.Record`) as a live source.

Samples are delivered in chunks (default 73, like a Polar H10 frame at MTU 232) at real time
(``speed=1``), faster (``speed=10``) or as fast as possible (``speed=0``). The sensor clock of a file is
the record's own time axis (``i / fs`` seconds from its first sample, exactly as training windows are
cut); host times are the Unix times at which samples become available.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from ..errors import SignalError
from ..records import Record, read_record
from .base import EcgChunk, EcgSource, SourceItem


class ReplaySource(EcgSource):
    name = "replay"

    def __init__(self, record: Record | str | Path, speed: float = 1.0, chunk_samples: int = 73,
                 start_s: float = 0.0, duration_s: float | None = None, fs_hz: float | None = None,
                 channel: int | str = 0):
        super().__init__()
        self.record = record if isinstance(record, Record) else read_record(record, fs_hz=fs_hz, channel=channel)
        if speed < 0:
            raise SignalError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        if chunk_samples <= 0:
            raise SignalError(f"chunk_samples must be positive, got {chunk_samples}")
        self.speed = speed
        self.chunk = chunk_samples
        fs = self.record.fs_hz
        a = int(start_s * fs)
        b = len(self.record.signal_mv) if duration_s is None else min(len(self.record.signal_mv), a + int(duration_s * fs))
        if b - a < 1:
            raise SignalError(f"nothing to replay between {start_s} s and {duration_s} s of {self.record.name}")
        self.samples_uv = self.record.signal_mv[a:b] * 1e3
        self.nominal_fs_hz = fs
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    async def stream(self) -> AsyncIterator[SourceItem]:
        fs = self.nominal_fs_hz
        t_start = time.time()
        yield self._event("connected", source=self.name, record=self.record.name)
        for seq, i in enumerate(range(0, len(self.samples_uv), self.chunk)):
            if self._closed:
                break
            x = self.samples_uv[i:i + self.chunk]
            sensor_t = (i + np.arange(len(x))) / fs
            if self.speed > 0:  # wait until the chunk's last sample "exists"
                due = t_start + sensor_t[-1] / self.speed
                delay = due - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            now = time.time()
            host_t = now - (sensor_t[-1] - sensor_t) / (self.speed or np.inf)
            yield EcgChunk(x.astype(np.float64), sensor_t, host_t, now, fs, 0.0, seq)
        yield self._event("end", source=self.name)
