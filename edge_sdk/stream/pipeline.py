"""EcgStream: source -> StreamingResampler -> Windower -> preprocess_window -> backend -> Prediction.

Bounded by design (monitoring sessions run for days): windows wait in a queue of ``max_queue``; when the
consumer is slower than the sensor the **oldest pending window is dropped** with a ``windows_dropped``
event (never a recorded sample: the recorder writes each chunk as it arrives, before any processing).
Non-finite samples (NaN/inf from a sensor or a file) are never fed to the model: each run of them is an
``invalid_samples`` event and a gap (resampler and windower restart), and the stream goes on.

Predictions come as an async iterator (``async for p in stream``) and/or through callbacks. Inference runs
in a worker thread so that the source keeps receiving while a window is classified. Per-stage latency is
kept in :attr:`EcgStream.latency` (milliseconds): ``resample``, ``preprocess``, ``inference``,
``since_arrival`` (prediction ready minus arrival of the chunk that completed the window: the SDK's own
delay) and ``end_to_end`` (prediction ready minus the host time at which the window's last sample was
taken: adds the sensor's framing delay, up to one BLE frame, 73 samples = 0.56 s on an H10).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable

import numpy as np

from ..bundle import ModelBundle, load_bundle
from ..errors import BundleError, SignalError
from ..inference import Backend, open_backend
from ..preprocessing import MIN_SOURCE_FS_HZ, check_source_fs, preprocess_window  # noqa: F401 - MIN_SOURCE_FS_HZ: public here too
from ..record_rule import RecordDecision
from ..signal import StreamingResampler, assess_quality
from ..sources.base import EcgChunk, EcgSource, SourceEvent
from .latency import LatencyStats
from .recorder import Recorder
from ..windowing import hop_samples
from .windower import Window, Windower


@dataclass
class Prediction:
    """One window's result, keyed by label name (the bundle's label table).

    ``probabilities``: label -> probability in [0, 1]; ``thresholds``: label -> the card's decision threshold;
    ``detected``: labels whose probability is at or above their threshold, most probable first;
    ``top_label``: the most probable label; ``quality``: signal-quality flags (empty = usable); sensor times
    in seconds; ``latency_ms`` per stage in milliseconds; ``source_fs_hz``: the source's sample rate in Hz.
    """

    window_index: int
    start_sensor_s: float
    end_sensor_s: float
    probabilities: dict[str, float]
    top_label: str
    detected: list[str]
    quality: list[str]
    latency_ms: dict[str, float]
    segment: int
    source_fs_hz: float
    events: list[SourceEvent] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form: detected labels with probability and threshold, every probability, quality, latency."""
        return {"window": self.window_index, "start_sensor_s": round(self.start_sensor_s, 3),
                "end_sensor_s": round(self.end_sensor_s, 3), "top": self.top_label,
                # probabilities and thresholds unrounded: "detected" must follow from the numbers given
                "detected": [{"label": n, "probability": self.probabilities[n], "threshold": self.thresholds[n]}
                             for n in self.detected],
                "probabilities": dict(self.probabilities), "thresholds": dict(self.thresholds),
                "quality": self.quality, "segment": self.segment,
                "latency_ms": {k: round(v, 2) for k, v in self.latency_ms.items()},
                "events": [{"kind": e.kind, **{k: v for k, v in e.detail.items()}} for e in self.events]}


#: Events kept for the next prediction when no window comes (e.g. a sensor that keeps failing).
MAX_PENDING_EVENTS = 256
#: A chunk starting more than this many sample periods after the previous one, without ``gap_before_s``,
#: starts a new segment (a ``gap`` event): nothing is interpolated across an undeclared gap.
MAX_UNDECLARED_STEP_PERIODS = 3.0


def check_chunk(chunk: EcgChunk, source: str = "source") -> EcgChunk:
    """``chunk`` with its arrays as float64 numpy arrays, or :class:`SignalError` naming ``source``: samples and
    both time arrays must be 1-D of one length, the times finite and the sensor times strictly increasing, the
    rate positive. The built-in sources always pass; a custom :class:`EcgSource` is checked here."""
    try:
        v = np.asarray(chunk.samples_uv, np.float64)
        ts = np.asarray(chunk.sensor_time_s, np.float64)
        th = np.asarray(chunk.host_time_s, np.float64)
        fs, gap, received = float(chunk.fs_hz), float(chunk.gap_before_s), float(chunk.received_host_s)
    except (TypeError, ValueError) as exc:
        raise SignalError(f"source {source!r} yielded a chunk that is not numbers ({exc}): samples_uv, "
                          "sensor_time_s and host_time_s are (n,) arrays of floats") from None
    if v.ndim != 1 or ts.shape != v.shape or th.shape != v.shape:
        raise SignalError(f"source {source!r} yielded a chunk with samples {v.shape}, sensor times {ts.shape} and "
                          f"host times {th.shape}; all three must be (n,) of one length")
    if not (np.isfinite(ts).all() and np.isfinite(th).all() and np.isfinite(received)):
        raise SignalError(f"source {source!r} yielded a chunk with NaN/inf times; stamp every sample")
    if v.size > 1 and not np.all(np.diff(ts) > 0):
        raise SignalError(f"source {source!r} yielded a chunk whose sensor times do not increase; order its samples "
                          "by time and cut a chunk where the clock steps back")
    if not (np.isfinite(fs) and fs > 0) or not (np.isfinite(gap) and gap >= 0):
        raise SignalError(f"source {source!r} yielded a chunk with fs_hz {chunk.fs_hz!r} and gap_before_s "
                          f"{chunk.gap_before_s!r}; the rate must be positive, the gap >= 0 seconds")
    if v is chunk.samples_uv and ts is chunk.sensor_time_s and th is chunk.host_time_s:
        return chunk
    return EcgChunk(v, ts, th, received, fs, gap, chunk.sequence)


class EcgStream:
    """Stream predictions from ``source`` with the model in ``bundle``.

    ``runtime``/``precision`` pick the bundle file (``onnxruntime``/``int8`` by default, ``tflite``);
    ``hop_s`` defaults to the card's hop; ``threads`` is the CPU threads given to the backend;
    ``record_to`` writes every received sample to a CSV (see :class:`Recorder`; an existing file is refused
    unless ``overwrite_recording``).
    """

    def __init__(self, source: EcgSource, bundle: ModelBundle | str | Path, runtime: str = "onnxruntime",
                 precision: str = "int8", hop_s: float | None = None, threads: int = 1,
                 record_to: str | Path | None = None, backend: Backend | None = None,
                 overwrite_recording: bool = False,
                 on_prediction: Callable[[Prediction], None] | None = None,
                 on_event: Callable[[SourceEvent], None] | None = None, max_queue: int = 64):
        self.source = source
        self.bundle = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
        self.backend = backend or open_backend(self.bundle, runtime, precision, threads=threads)
        self.config = self.bundle.preprocessing
        self.labels = self.bundle.labels
        self.thresholds = self.bundle.thresholds
        hop = hop_samples(hop_s if hop_s is not None else float(self.bundle.card["hop_seconds"]), self.config.fs_hz)
        check_source_fs(getattr(source, "nominal_fs_hz", None), self.config, "source sample rate")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise SignalError(f"max_queue must be a positive int (windows), got {max_queue!r}")
        if self.config.resampling != "uniform-linear":
            raise BundleError(f"the bundle's preprocessing uses resampling {self.config.resampling!r}; streams "
                              "resample onto the exact grid ('uniform-linear') only - rebuild the bundle with it")
        self.resampler = StreamingResampler(self.config.fs_hz)
        self.windower = Windower(self.config.window_samples, hop)
        self.latency = LatencyStats()
        self.recorder = Recorder(record_to, overwrite_recording) if record_to else None
        self._callbacks = [on_prediction] if on_prediction else []
        self._event_callbacks = [on_event] if on_event else []
        self._windows: asyncio.Queue = asyncio.Queue(max_queue)
        self._pump_done = False
        self._invalid_run: dict | None = None
        self._pending_events: list[SourceEvent] = []
        self._last_sensor_s: float | None = None  # sensor time of the last sample pushed (None after a restart)
        self.windows_dropped = 0
        self._resample_s = 0.0
        self.samples_received = 0
        self.fs_estimate = source.nominal_fs_hz
        self.prediction_count = 0  # a count, not a list: a monitoring session may run for days
        self.record_rule = self.bundle.record_rule
        self.record_stats = self.record_rule.new_stats()  # O(outputs) summary of every window's probabilities
        # end-to-end latency is read on the source's host clock; an emulator running `clock_rate` times faster
        # than real time scales it back to physical milliseconds
        self._clock = source.clock
        self._clock_rate = float(source.clock_rate) or 1.0

    def _emit(self, ev: SourceEvent) -> None:
        self._pending_events.append(ev)
        del self._pending_events[:-MAX_PENDING_EVENTS]  # bounded even if no window comes for days
        for cb in self._event_callbacks:
            cb(ev)

    async def _pump(self) -> None:
        """Read the source, resample, window; put windows on the queue, never blocking on a slow consumer."""
        try:
            async for item in self.source:
                if isinstance(item, SourceEvent):
                    if self.recorder:
                        self.recorder.write(item)
                    self._emit(item)
                    if item.kind in ("disconnected", "gap", "sensor_stopped", "clock_jump"):
                        self._restart()
                    continue
                if not isinstance(item, EcgChunk):
                    raise SignalError(f"source {getattr(self.source, 'name', self.source)!r} yielded "
                                      f"{type(item).__name__}; an EcgSource yields EcgChunk and SourceEvent items only")
                chunk = check_chunk(item, getattr(self.source, "name", "source"))  # before it is recorded
                if self.recorder:
                    self.recorder.write(chunk)
                self._on_chunk(chunk)
                await asyncio.sleep(0)  # let the consumer run between chunks of a fast source
        finally:
            self._end_invalid_run()
            self._pump_done = True
            with contextlib.suppress(asyncio.QueueFull):
                self._windows.put_nowait(None)  # the consumer also checks _pump_done: never blocks here

    def _restart(self) -> None:
        """Start a new segment: nothing before this point is joined to what comes after it."""
        self.resampler.reset()
        self.windower.reset()
        self._last_sensor_s = None

    def _on_chunk(self, chunk: EcgChunk) -> None:
        t0 = time.perf_counter()
        if chunk.gap_before_s > 0:
            self._restart()
        elif self._last_sensor_s is not None and len(chunk):
            step = float(chunk.sensor_time_s[0]) - self._last_sensor_s
            if step <= 0 or step > MAX_UNDECLARED_STEP_PERIODS / chunk.fs_hz:  # a source that did not say so
                self._emit(SourceEvent("clock_jump" if step <= 0 else "gap", detail={
                    ("jump_s" if step <= 0 else "gap_s"): round(step, 6), "reason": "chunk_times",
                    "action": "the chunk's first time does not follow the last one's; the stream restarts here "
                              "(nothing is interpolated across)"}))
                self._restart()
        if len(chunk):
            self._last_sensor_s = float(chunk.sensor_time_s[-1])
        self.samples_received += len(chunk)
        self.fs_estimate = chunk.fs_hz
        values = np.asarray(chunk.samples_uv, np.float64) * 1e-3
        finite = np.isfinite(values)
        windows = []
        if finite.all():
            self._end_invalid_run()
            windows = self._push(values, chunk.sensor_time_s, chunk.host_time_s)
        else:  # split at each run of NaN/inf: push the finite parts, restart around the bad ones
            edges = np.flatnonzero(np.diff(np.r_[0, finite.astype(np.int8), 0]))
            pos = 0
            for a, b in zip(edges[::2], edges[1::2]):
                if a > pos:
                    self._invalid(chunk, pos, a)
                self._end_invalid_run()
                windows += self._push(values[a:b], chunk.sensor_time_s[a:b], chunk.host_time_s[a:b])
                pos = b
            if pos < len(values):
                self._invalid(chunk, pos, len(values))
        self._resample_s += time.perf_counter() - t0
        for w in windows:
            self._enqueue((w, self._resample_s, list(self._pending_events), chunk.received_host_s))
            self._resample_s = 0.0
            self._pending_events.clear()

    def _push(self, values_mv, sensor_t, host_t):
        block = self.resampler.push(values_mv, sensor_t, host_t)
        return self.windower.push(block.values_mv, block.sensor_time_s, block.host_time_s)

    def _invalid(self, chunk: EcgChunk, a: int, b: int) -> None:
        """Samples ``a:b`` of ``chunk`` are NaN/inf: restart like after a gap; one event per run of them."""
        if self._invalid_run is None:
            self._restart()
            self._invalid_run = {"samples": 0, "sensor_time_s": float(chunk.sensor_time_s[a])}
        self._invalid_run["samples"] += int(b - a)

    def _end_invalid_run(self) -> None:
        if self._invalid_run is not None:
            run, self._invalid_run = self._invalid_run, None
            self._emit(SourceEvent("invalid_samples", detail={
                **run, "action": "non-finite samples skipped; the stream restarts after them like after a gap"}))

    def _enqueue(self, item) -> None:
        """Queue a window; when the queue is full drop the oldest pending window (policy: fresh data first)."""
        if self._windows.full():
            old = self._windows.get_nowait()
            item = (item[0], item[1], [*old[2], *item[2], self._dropped(old)], item[3])
        self._windows.put_nowait(item)

    def _dropped(self, old_item) -> SourceEvent:
        """Count the dropped window ``old_item`` of this stream and tell the event callbacks; returns the event."""
        self.windows_dropped += 1
        ev = SourceEvent("windows_dropped", detail={
            "dropped_window": old_item[0].index, "total_dropped": self.windows_dropped,
            "policy": "the consumer is slower than the sensor: the oldest pending window is dropped "
                      "(recorded samples are never dropped)"})
        for cb in self._event_callbacks:
            cb(ev)
        return ev

    def _classify(self, w: Window) -> tuple[np.ndarray, list[str], float, float]:
        t0 = time.perf_counter()
        x = preprocess_window(w.values_mv, self.config)
        quality = assess_quality(w.values_mv, self.config.fs_hz)
        t1 = time.perf_counter()
        probs = self.backend.predict(x[None])[0]
        return probs, quality, t1 - t0, time.perf_counter() - t1

    def _prediction(self, w: Window, probs: np.ndarray, quality: list[str], lat: dict[str, float],
                    events: list[SourceEvent]) -> Prediction:
        p = {label: float(v) for label, v in zip(self.labels, probs)}
        detected = sorted((label for label in self.labels if p[label] >= self.thresholds[label]), key=lambda n: -p[n])
        return Prediction(w.index, w.start_sensor_s, w.end_sensor_s, p, self.labels[int(np.argmax(probs))],
                          detected, quality, lat, w.segment, self.fs_estimate, events, self.thresholds)

    async def stream(self) -> AsyncIterator[Prediction]:
        """Run the source and yield predictions until it ends."""
        pump = asyncio.create_task(self._pump())
        try:
            while True:
                if pump.done():  # drain what is left without waiting
                    if self._windows.empty():
                        break
                    item = self._windows.get_nowait()
                else:
                    getter = asyncio.ensure_future(self._windows.get())
                    done, _ = await asyncio.wait({getter, pump}, return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:  # the source ended (or failed) while the queue was empty
                        getter.cancel()
                        continue
                    item = getter.result()
                if item is None:
                    break
                w, resample_s, events, received_s = item
                probs, quality, pre_s, inf_s = await asyncio.to_thread(self._classify, w)
                now = self._clock()
                lat = {"resample": resample_s * 1e3, "preprocess": pre_s * 1e3, "inference": inf_s * 1e3,
                       "since_arrival": (now - received_s) / self._clock_rate * 1e3,
                       "end_to_end": (now - w.end_host_s) / self._clock_rate * 1e3}
                for k, v in lat.items():
                    self.latency.add(k, v / 1e3)
                pred = self._prediction(w, probs, quality, lat, events)
                self._count(probs)
                for cb in self._callbacks:
                    cb(pred)
                yield pred
            await pump  # surface source errors
        finally:
            try:
                if not pump.done():
                    pump.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pump
                    await self.source.close()
            finally:
                if self.recorder:
                    self.recorder.close()

    def _count(self, probs: np.ndarray) -> None:
        """Account for one classified window (its probabilities ``(C,)``)."""
        self.prediction_count += 1
        self.record_stats.add(probs)

    def record_decision(self) -> RecordDecision | None:
        """One label for the recording so far (every window since the start or :meth:`reset_record`, quality
        flags or not, as the rule was fitted), by the card's record rule; ``None`` before the first window.
        The rule counts windows at the card's hop; another ``hop_s`` shifts its window-count feature."""
        return self.record_rule.decide(self.record_stats) if self.record_stats.n_windows else None

    def reset_record(self) -> None:
        """Start a new recording for :meth:`record_decision`: in a long session, about every minute (the rule was
        fitted on recordings of up to ``record_rule.fitted_windows[1]`` windows; longer ones are flagged)."""
        self.record_stats = self.record_rule.new_stats()

    def __aiter__(self) -> AsyncIterator[Prediction]:
        return self.stream()

    async def run(self, max_windows: int | None = None) -> list[Prediction]:
        """Consume the stream (calling callbacks); stop after ``max_windows`` predictions if given."""
        out = []
        agen = self.stream()
        try:
            async for p in agen:
                out.append(p)
                if max_windows is not None and len(out) >= max_windows:
                    break
        finally:
            await agen.aclose()
        return out
