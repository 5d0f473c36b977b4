"""Per-stage latency bookkeeping with p50/p95/p99 summaries (milliseconds)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np


class LatencyStats:
    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    def add(self, stage: str, seconds: float) -> None:
        self.samples[stage].append(seconds * 1e3)

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {p50, p95, p99, mean, n}} in milliseconds."""
        out = {}
        for stage, v in self.samples.items():
            a = np.asarray(v)
            out[stage] = {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
                          "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "n": int(a.size)}
        return out

    def table(self) -> str:
        rows = ["| stage | p50 ms | p95 ms | p99 ms | n |", "|---|---:|---:|---:|---:|"]
        for stage, s in self.summary().items():
            rows.append(f"| {stage} | {s['p50']:.2f} | {s['p95']:.2f} | {s['p99']:.2f} | {s['n']} |")
        return "\n".join(rows)
