"""Per-stage latency bookkeeping with p50/p95/p99 summaries (milliseconds), bounded for long sessions.

Each stage keeps its most recent ``window`` samples (percentiles are over those) plus a running count,
mean and maximum over the whole session, so memory stays constant however long a stream runs.
"""
from __future__ import annotations

import numbers
from collections import deque

import numpy as np

from ..errors import ConfigError

#: Samples kept per stage for the percentiles (10,000 windows = 14 h at a 5-s hop).
DEFAULT_WINDOW = 10_000


class LatencyStats:
    """``add(stage, seconds)``; ``samples[stage]``: the most recent values in ms; ``summary()``/``table()``."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if not isinstance(window, numbers.Integral) or isinstance(window, bool) or window < 1:
            raise ConfigError(f"window is the number of recent values kept per stage (>= 1), got {window!r}")
        self.window = int(window)
        #: values that were NaN/inf and not counted (a clock that failed), per stage
        self.not_finite: dict[str, int] = {}
        self.samples: dict[str, deque[float]] = {}
        self._count: dict[str, int] = {}
        self._sum: dict[str, float] = {}
        self._max: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        """Count one latency of ``stage`` in seconds; a NaN/inf value is counted in :attr:`not_finite` only,
        so one bad clock reading does not turn the percentiles NaN for the next 10,000 windows."""
        ms = float(seconds) * 1e3
        if not np.isfinite(ms):
            self.not_finite[stage] = self.not_finite.get(stage, 0) + 1
            return
        if stage not in self.samples:
            self.samples[stage] = deque(maxlen=self.window)
            self._count[stage], self._sum[stage], self._max[stage] = 0, 0.0, -np.inf
        self.samples[stage].append(ms)
        self._count[stage] += 1
        self._sum[stage] += ms
        self._max[stage] = max(self._max[stage], ms)

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {p50, p95, p99 (recent window), mean, max, n (whole session)}} in milliseconds."""
        out = {}
        for stage, v in self.samples.items():
            a = np.asarray(v)
            out[stage] = {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
                          "p99": float(np.percentile(a, 99)), "mean": self._sum[stage] / self._count[stage],
                          "max": float(self._max[stage]), "n": int(self._count[stage])}
        return out

    def table(self) -> str:
        rows = ["| stage | p50 ms | p95 ms | p99 ms | n |", "|---|---:|---:|---:|---:|"]
        for stage, s in self.summary().items():
            rows.append(f"| {stage} | {s['p50']:.2f} | {s['p95']:.2f} | {s['p99']:.2f} | {s['n']} |")
        return "\n".join(rows)
