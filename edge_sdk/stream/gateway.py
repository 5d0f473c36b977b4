"""EcgGateway: many sensors in one process, one model, one inference worker.

Each sensor keeps its own pipeline up to the window (its :class:`~edge_sdk.sources.EcgSource`, resampler,
windower, gap and NaN handling, optional recording: the :class:`EcgStream` machinery). Windows that fall due
while the worker is busy wait in one shared queue; the worker takes up to ``max_batch`` of them at a time,
preprocesses them in one vectorised call (:func:`~edge_sdk.preprocessing.preprocess_windows`) and classifies
them in one backend call. Outputs equal those of one :class:`EcgStream` per sensor (the model sees the same
windows); only the bookkeeping and the calls are shared.

Bounded like a single stream: the shared queue holds ``max_queue`` windows; when it is full the oldest
pending window (of any sensor) is dropped with a ``windows_dropped`` event on its sensor.

Usage::

    gateway = EcgGateway("bundles/default")
    for address in addresses:
        gateway.add(PolarH10Source(address), name=address)
    async for name, prediction in gateway:
        ...
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import AsyncIterator, Callable

import numpy as np

from ..bundle import ModelBundle, load_bundle
from ..errors import ConfigError
from ..inference import open_backend
from ..preprocessing import preprocess_windows
from ..signal import assess_quality
from ..sources.base import EcgSource, SourceEvent
from .pipeline import EcgStream, Prediction

logger = logging.getLogger(__name__)


class _Member(EcgStream):
    """One sensor's pipeline; its windows go to the gateway's shared queue instead of its own."""

    gateway: "EcgGateway"
    name: str

    def _enqueue(self, item) -> None:
        self.gateway._put(self, item)


class EcgGateway:
    """Stream predictions from many sources with the model in ``bundle`` (one backend, batched calls).

    ``runtime``/``precision``/``threads`` pick and run the model as in :class:`EcgStream`; ``hop_s`` defaults
    to the card's hop; ``max_batch``: most windows per model call; ``max_queue``: windows waiting at most
    (all sensors together). Iterate to get ``(name, Prediction)`` pairs until every source has ended.
    """

    def __init__(self, bundle: ModelBundle | str | Path, runtime: str = "onnxruntime", precision: str = "int8",
                 threads: int = 1, hop_s: float | None = None, max_batch: int = 64, max_queue: int = 1024):
        for key, v in (("max_batch", max_batch), ("max_queue", max_queue)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{key} must be a positive int (windows), got {v!r}")
        self.bundle = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
        self.backend = open_backend(self.bundle, runtime, precision, threads=threads)
        self.hop_s = hop_s
        self.max_batch = max_batch
        self.members: list[_Member] = []
        self._queue: asyncio.Queue = asyncio.Queue(max_queue)
        self.batches = 0
        self.windows_classified = 0
        #: sensors whose source failed while the others went on: name -> the exception (also a
        #: ``source_failed`` event on that sensor when it happens; iteration re-raises the first at the end)
        self.failed: dict[str, BaseException] = {}
        self._started = False

    def add(self, source: EcgSource, name: str | None = None, record_to: str | Path | None = None,
            on_prediction: Callable[[Prediction], None] | None = None,
            on_event: Callable[[SourceEvent], None] | None = None) -> EcgStream:
        """Add a sensor; returns its pipeline (latency stats, counters). ``name`` defaults to ``sensor-N``.
        :class:`ConfigError` once iteration has started (its pump would never run)."""
        if self._started:
            raise ConfigError("add() every sensor before iterating the gateway: one added while it runs would never "
                              "be read; start another EcgGateway for late sensors")
        member = _Member(source, self.bundle, hop_s=self.hop_s, record_to=record_to, backend=self.backend,
                         on_prediction=on_prediction, on_event=on_event)
        member.gateway = self
        member.name = name or f"sensor-{len(self.members)}"
        if member.name in {m.name for m in self.members}:
            raise ConfigError(f"a sensor named {member.name!r} is already in the gateway; give each its own name")
        self.members.append(member)
        return member

    def _put(self, member: _Member, item) -> None:
        if self._queue.full():  # the worker is behind: drop the oldest pending window, whoever's it is
            old_member, old = self._queue.get_nowait()
            ev = old_member._dropped(old)
            if old_member is member:  # the event rides on this sensor's newest window
                item = (item[0], item[1], [*old[2], *item[2], ev], item[3])
            else:  # what the dropped window carried (gaps, reconnects) still reaches that sensor's next one
                old_member._pending_events.extend([*old[2], ev])
        self._queue.put_nowait((member, item))

    def _classify(self, batch: list) -> tuple[np.ndarray, list[list[str]], float, float]:
        t0 = time.perf_counter()
        raw = np.stack([item[0].values_mv for _, item in batch])
        x = preprocess_windows(raw, self.members[0].config)
        quality = [assess_quality(w, self.members[0].config.fs_hz) for w in raw]
        t1 = time.perf_counter()
        probs = self.backend.predict(x)
        return probs, quality, t1 - t0, time.perf_counter() - t1

    async def stream(self) -> AsyncIterator[tuple[str, Prediction]]:
        """Run every source; yield ``(name, prediction)`` as batches are classified, until all have ended."""
        if not self.members:
            raise ConfigError("the gateway has no sensor; add() at least one source first")
        self._started = True
        pumps = [asyncio.create_task(m._pump()) for m in self.members]
        try:
            while True:
                self._report_failures(pumps)
                if all(p.done() for p in pumps) and self._queue.empty():
                    break
                if self._queue.empty():
                    getter = asyncio.ensure_future(self._queue.get())
                    done, _ = await asyncio.wait({getter, *[p for p in pumps if not p.done()]},
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:
                        getter.cancel()
                        continue
                    batch = [getter.result()]
                else:
                    batch = [self._queue.get_nowait()]
                while len(batch) < self.max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                probs, quality, pre_s, inf_s = await asyncio.to_thread(self._classify, batch)
                self.batches += 1
                self.windows_classified += len(batch)
                for k, (member, (w, resample_s, events, received_s)) in enumerate(batch):
                    now = member._clock()
                    lat = {"resample": resample_s * 1e3, "preprocess": pre_s / len(batch) * 1e3,
                           "inference": inf_s / len(batch) * 1e3,
                           "since_arrival": (now - received_s) / member._clock_rate * 1e3,
                           "end_to_end": (now - w.end_host_s) / member._clock_rate * 1e3}
                    for stage, v in lat.items():
                        member.latency.add(stage, v / 1e3)
                    pred = member._prediction(w, probs[k], quality[k], lat, events)
                    member._count(probs[k])
                    for cb in member._callbacks:
                        cb(pred)
                    yield member.name, pred
            for p in pumps:
                await p  # surface source errors
        finally:
            for m, p in zip(self.members, pumps):
                if not p.done():
                    p.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await p
                    await m.source.close()
                elif not p.cancelled():
                    p.exception()  # retrieved: reported as source_failed, or re-raised above
                if m.recorder:
                    m.recorder.close()

    def _report_failures(self, pumps: list[asyncio.Task]) -> None:
        """A sensor whose source failed gets a ``source_failed`` event now, not when every other sensor ends."""
        for m, p in zip(self.members, pumps):
            if p.done() and not p.cancelled() and p.exception() is not None and m.name not in self.failed:
                exc = p.exception()
                self.failed[m.name] = exc
                logger.warning("sensor %s failed: %s: %s; the other sensors go on", m.name, type(exc).__name__, exc)
                m._emit(SourceEvent("source_failed", detail={
                    "error": f"{type(exc).__name__}: {exc}",
                    "action": "this sensor's stream ended; the gateway goes on with the others and raises this "
                              "error when they have ended"}))

    def __aiter__(self) -> AsyncIterator[tuple[str, Prediction]]:
        return self.stream()
