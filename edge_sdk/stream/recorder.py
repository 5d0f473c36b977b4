"""Optional recording of everything a source delivers, before any processing.

Samples go to a CSV (``sensor_time_s,host_time_s,ecg_uv``), flushed after every chunk so that a crash
loses nothing already received; events go to ``<file>.events.jsonl``. :func:`edge_sdk.records.read_record`
reads the CSV back (microvolts to millivolts, sample rate from the timestamps), so a recording can be
replayed with ``ReplaySource``.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..outputs import check_new_file
from ..sources.base import EcgChunk, SourceEvent

HEADER = "sensor_time_s,host_time_s,ecg_uv"


class Recorder:
    """Write samples (µV, with sensor and host times in seconds) to ``path``; an existing file is refused
    (:class:`~edge_sdk.errors.OutputExistsError`) unless ``overwrite``."""

    def __init__(self, path: str | Path, overwrite: bool = False):
        self.path = check_new_file(path, overwrite, "recording")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("w", buffering=1)
        self._f.write(HEADER + "\n")
        self._events = self.path.with_suffix(self.path.suffix + ".events.jsonl").open("w", buffering=1)
        self.samples_written = 0

    def write(self, item: EcgChunk | SourceEvent) -> None:
        if isinstance(item, SourceEvent):
            self._events.write(json.dumps(asdict(item), default=str) + "\n")
            return
        rows = np.column_stack([item.sensor_time_s, item.host_time_s, item.samples_uv])
        np.savetxt(self._f, rows, fmt=["%.6f", "%.6f", "%.1f"], delimiter=",")
        self._f.flush()
        self.samples_written += len(item)

    def close(self) -> None:
        for f in (self._f, self._events):
            if not f.closed:
                f.flush()
                f.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
