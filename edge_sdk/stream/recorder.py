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

from ..errors import ConfigError, OutputPathError
from ..outputs import check_new_file, open_new_file
from ..sources.base import EcgChunk, SourceEvent

HEADER = "sensor_time_s,host_time_s,ecg_uv"


class Recorder:
    """Write samples (µV, with sensor and host times in seconds) to ``path``; an existing file is refused
    (:class:`~edge_sdk.errors.OutputExistsError`) unless ``overwrite``."""

    def __init__(self, path: str | Path, overwrite: bool = False):
        if Path(path).suffix.lower() != ".csv":
            raise ConfigError(f"recording {path}: a recording is a CSV file that read_record and ReplaySource read "
                              "back by its .csv name; end the file name with .csv")
        self.path = check_new_file(path, overwrite, "recording")
        events = check_new_file(self.path.with_suffix(self.path.suffix + ".events.jsonl"), overwrite,
                                "events file of the recording")
        self._f = open_new_file(self.path, "recording", buffering=1)
        self._f.write(HEADER + "\n")
        self._events = open_new_file(events, "events file of the recording", buffering=1)
        self.samples_written = 0
        #: NaN/inf samples received and not written (the replay sees a gap in the times there)
        self.samples_not_finite = 0

    def write(self, item: EcgChunk | SourceEvent) -> None:
        """Append one source item: a chunk's finite samples to the CSV, an event to the events file.

        Non-finite samples (a sensor's invalid values) are not written: readers refuse NaN, and the missing
        rows leave a step in ``sensor_time_s`` that a replay reports as a gap, where the live stream restarted
        too. Each such run is noted in the events file (``non_finite_samples_not_written``)."""
        if self._f.closed:
            raise OutputPathError(f"recording {self.path} is closed; start a new Recorder to record more")
        if isinstance(item, SourceEvent):
            self._write_event(asdict(item))
            return
        samples = np.asarray(item.samples_uv, np.float64)
        finite = np.isfinite(samples)
        rows = np.column_stack([item.sensor_time_s, item.host_time_s, samples])
        if not finite.all():
            bad = int((~finite).sum())
            self.samples_not_finite += bad
            self._write_event({"kind": "non_finite_samples_not_written", "host_time_s": float(item.received_host_s),
                               "detail": {"samples": bad,
                                          "first_sensor_time_s": float(item.sensor_time_s[~finite][0])}})
            rows = rows[finite]
        np.savetxt(self._f, rows, fmt=["%.6f", "%.6f", "%.1f"], delimiter=",")
        self._f.flush()
        self.samples_written += len(rows)

    def _write_event(self, event: dict) -> None:
        self._events.write(json.dumps(event, default=str) + "\n")

    def close(self) -> None:
        for f in (self._f, self._events):
            if not f.closed:
                f.flush()
                f.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
