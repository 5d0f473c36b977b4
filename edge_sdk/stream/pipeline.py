"""EcgStream: source -> StreamingResampler -> Windower -> preprocess_window -> backend -> Prediction.

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
from ..inference import Backend, open_backend
from ..preprocessing import preprocess_window
from ..signal import StreamingResampler, assess_quality
from ..sources.base import EcgChunk, EcgSource, SourceEvent
from .latency import LatencyStats
from .recorder import Recorder
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
                "detected": [{"label": n, "probability": round(self.probabilities[n], 4),
                              "threshold": round(self.thresholds[n], 4)} for n in self.detected],
                "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
                "thresholds": {k: round(v, 4) for k, v in self.thresholds.items()},
                "quality": self.quality, "segment": self.segment,
                "latency_ms": {k: round(v, 2) for k, v in self.latency_ms.items()},
                "events": [{"kind": e.kind, **{k: v for k, v in e.detail.items()}} for e in self.events]}


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
        hop = hop_s if hop_s is not None else float(self.bundle.card["hop_seconds"])
        if hop <= 0:
            raise ValueError(f"hop_s must be positive, got {hop}")
        self.resampler = StreamingResampler(self.config.fs_hz)
        self.windower = Windower(self.config.window_samples, int(round(hop * self.config.fs_hz)))
        self.latency = LatencyStats()
        self.recorder = Recorder(record_to, overwrite_recording) if record_to else None
        self._callbacks = [on_prediction] if on_prediction else []
        self._event_callbacks = [on_event] if on_event else []
        self._windows: asyncio.Queue = asyncio.Queue(max_queue)
        self._pending_events: list[SourceEvent] = []
        self._resample_s = 0.0
        self.samples_received = 0
        self.fs_estimate = source.nominal_fs_hz
        self.prediction_count = 0  # a count, not a list: a monitoring session may run for days
        # end-to-end latency is read on the source's host clock; an emulator running `clock_rate` times faster
        # than real time scales it back to physical milliseconds
        self._clock = source.clock
        self._clock_rate = float(source.clock_rate) or 1.0

    def on_prediction(self, callback: Callable[[Prediction], None]) -> None:
        self._callbacks.append(callback)

    def on_event(self, callback: Callable[[SourceEvent], None]) -> None:
        self._event_callbacks.append(callback)

    async def _pump(self) -> None:
        """Read the source, resample, window; put windows (or None at the end) on the queue."""
        try:
            async for item in self.source:
                if self.recorder:
                    self.recorder.write(item)
                if isinstance(item, SourceEvent):
                    self._pending_events.append(item)
                    for cb in self._event_callbacks:
                        cb(item)
                    if item.kind in ("disconnected", "gap", "sensor_stopped"):
                        self.resampler.reset()
                        self.windower.reset()
                    continue
                await self._on_chunk(item)
        finally:
            await self._windows.put(None)

    async def _on_chunk(self, chunk: EcgChunk) -> None:
        t0 = time.perf_counter()
        if chunk.gap_before_s > 0:
            self.resampler.reset()
            self.windower.reset()
        self.samples_received += len(chunk)
        self.fs_estimate = chunk.fs_hz
        block = self.resampler.push(chunk.samples_uv * 1e-3, chunk.sensor_time_s, chunk.host_time_s)
        windows = self.windower.push(block.values_mv, block.sensor_time_s, block.host_time_s)
        self._resample_s += time.perf_counter() - t0
        for w in windows:
            await self._windows.put((w, self._resample_s, list(self._pending_events), chunk.received_host_s))
            self._resample_s = 0.0
            self._pending_events.clear()

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
                item = await self._windows.get()
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
                self.prediction_count += 1
                for cb in self._callbacks:
                    cb(pred)
                yield pred
            await pump  # surface source errors
        finally:
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
                await self.source.close()
            if self.recorder:
                self.recorder.close()

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
