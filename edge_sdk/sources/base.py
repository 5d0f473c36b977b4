"""The one interface all ECG sources implement (BLE sensors, file replay): an async iterator of items.

Items are :class:`EcgChunk` (samples with per-sample times) and :class:`SourceEvent` (connection,
gap, duplicate, sensor stop...). Sources never bridge gaps: a gap is reported on the chunk after it
(``gap_before_s``) and as an event.
"""
from __future__ import annotations

import abc
from collections import deque
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

import numpy as np


@dataclass
class EcgChunk:
    """Consecutive samples of one lead.

    ``samples_uv``: (n,) float64 microvolts. ``sensor_time_s``: (n,) per-sample time on the sensor clock, in
    seconds (Unix time for BLE sensors, time from the first sample for file replay). ``host_time_s``: (n,) the same instants mapped to the host clock (``time.time()`` base).
    ``received_host_s``: host time when the bytes arrived. ``gap_before_s``: seconds of signal missing right
    before this chunk (0 if none). ``fs_hz``: the source's current estimate of its sample rate.
    """

    samples_uv: np.ndarray
    sensor_time_s: np.ndarray
    host_time_s: np.ndarray
    received_host_s: float
    fs_hz: float
    gap_before_s: float = 0.0
    sequence: int = 0

    def __len__(self) -> int:
        return int(self.samples_uv.shape[0])


@dataclass
class SourceEvent:
    """Something that happened to the stream: ``kind`` in connected, disconnected, reconnecting, gap,
    duplicate, sensor_stopped, restarted, end."""

    kind: str
    host_time_s: float = field(default_factory=time.time)
    detail: dict = field(default_factory=dict)


SourceItem = EcgChunk | SourceEvent


#: Events an :class:`EcgSource` keeps in :attr:`EcgSource.events`.
MAX_EVENTS = 1000


class EcgSource(abc.ABC):
    """Base class. Subclasses implement :meth:`stream`; ``on_event`` callbacks see every event."""

    name: str = "source"
    nominal_fs_hz: float = 130.0
    #: host clock the source stamps arrivals with (Unix seconds), and how many of its seconds pass per
    #: physical second (an emulator running 10x faster than real time has clock_rate 10)
    clock: Callable[[], float] = staticmethod(time.time)
    clock_rate: float = 1.0

    def __init__(self) -> None:
        self._event_callbacks: list[Callable[[SourceEvent], None]] = []
        #: the most recent events (bounded: a session may run for days)
        self.events: deque[SourceEvent] = deque(maxlen=MAX_EVENTS)

    def on_event(self, callback: Callable[[SourceEvent], None]) -> None:
        self._event_callbacks.append(callback)

    def _event(self, kind: str, **detail) -> SourceEvent:
        ev = SourceEvent(kind, time.time(), detail)
        self.events.append(ev)
        for cb in self._event_callbacks:
            cb(ev)
        return ev

    @abc.abstractmethod
    def stream(self) -> AsyncIterator[SourceItem]:
        """Yield chunks and events until the source ends or :meth:`close` is called."""

    async def close(self) -> None:
        """Stop streaming and release the transport."""

    def __aiter__(self) -> AsyncIterator[SourceItem]:
        return self.stream()
