"""A picture of a streaming session (``ecg-edge stream ... --report FILE.png``).

Three panels on one time axis (seconds from the first sample): the ECG strip (mV, as received) with each
window's detected labels written above it and windows with quality flags shaded, gaps in the signal shaded
red; each label's probability per window with its threshold; end-to-end and SDK latency per window. Beside
the PNG, ``FILE.png.json`` holds the data the plot was drawn from (windows, gaps, latency, signal extent).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: Figure size in inches and resolution: the PNG is REPORT_SIZE * REPORT_DPI pixels.
REPORT_SIZE = (14.0, 8.0)
REPORT_DPI = 100


def find_gaps(time_s: np.ndarray, fs_hz: float, factor: float = 1.5) -> list[tuple[float, float]]:
    """Intervals ``(start, end)`` in seconds where consecutive samples are more than ``factor`` periods apart."""
    if time_s is None or len(time_s) < 2:
        return []
    d = np.diff(time_s)
    idx = np.flatnonzero(d > factor / fs_hz)
    return [(float(time_s[i]), float(time_s[i + 1])) for i in idx]


def report_data(predictions: list, time_s: np.ndarray, signal_mv: np.ndarray, fs_hz: float) -> dict:
    """The data the picture shows, times in seconds from the first received sample."""
    t = np.asarray(time_s, np.float64) if time_s is not None else np.arange(len(signal_mv)) / fs_hz
    t0 = float(t[0]) if len(t) else (predictions[0].start_sensor_s if predictions else 0.0)
    labels = list(predictions[0].probabilities) if predictions else []
    windows = [{"window": p.window_index, "start_s": round(p.start_sensor_s - t0, 3),
                "end_s": round(p.end_sensor_s - t0, 3), "top": p.top_label, "detected": list(p.detected),
                "probabilities": {k: round(float(v), 4) for k, v in p.probabilities.items()},
                "quality": list(p.quality),
                "latency_ms": {k: round(float(v), 2) for k, v in p.latency_ms.items()}} for p in predictions]
    e2e = [w["latency_ms"].get("end_to_end") for w in windows if w["latency_ms"].get("end_to_end") is not None]
    return {
        "samples": int(len(signal_mv)), "fs_hz": float(fs_hz),
        "signal_s": [0.0, round(float(t[-1] - t0), 3)] if len(t) else [0.0, 0.0],
        "signal_mv_range": [float(np.min(signal_mv)), float(np.max(signal_mv))] if len(signal_mv) else [0.0, 0.0],
        "labels": labels, "thresholds": dict(predictions[0].thresholds) if predictions else {},
        "windows": windows,
        "gaps": [[round(a - t0, 3), round(b - t0, 3)] for a, b in find_gaps(t, fs_hz)],
        "quality_windows": [w["window"] for w in windows if w["quality"]],
        "latency_end_to_end_ms": {"p50": float(np.percentile(e2e, 50)), "max": float(np.max(e2e))} if e2e else {},
    }


def plot_report(data: dict, t: np.ndarray, signal_mv: np.ndarray, path: str | Path) -> Path:
    """Draw ``data`` (from :func:`report_data`) with the signal (times from its first sample) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ecg, ax_p, ax_lat) = plt.subplots(3, 1, figsize=REPORT_SIZE, dpi=REPORT_DPI, sharex=True,
                                               gridspec_kw={"height_ratios": [3, 2, 1.3]})
    colors = {name: f"C{i}" for i, name in enumerate(data["labels"])}
    ax_ecg.plot(t, signal_mv, lw=0.5, color="k")
    lo, hi = data["signal_mv_range"]
    for w in data["windows"]:
        if w["quality"]:
            ax_ecg.axvspan(w["start_s"], w["end_s"], color="orange", alpha=0.15, lw=0)
        text = ", ".join(w["detected"]) or f"({w['top']})"
        ax_ecg.text((w["start_s"] + w["end_s"]) / 2, hi + 0.05 * (hi - lo + 1e-9) * (1 + w["window"] % 2), text,
                    ha="center", va="bottom", fontsize=7,
                    color=colors.get(w["detected"][0], "k") if w["detected"] else "gray")
        if w["quality"]:
            ax_ecg.text(w["start_s"], lo, " " + ",".join(w["quality"]), fontsize=6, color="darkorange", va="bottom")
    for a, b in data["gaps"]:
        ax_ecg.axvspan(a, b, color="red", alpha=0.3, lw=0)
    ax_ecg.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.3 * (hi - lo + 1e-9))
    ax_ecg.set_ylabel("ECG (mV)")
    ax_ecg.set_title(f"session: {data['samples']} samples at {data['fs_hz']:.1f} Hz, {len(data['windows'])} windows, "
                     f"{len(data['gaps'])} gaps (red), quality flags (orange)")
    mids = [(w["start_s"] + w["end_s"]) / 2 for w in data["windows"]]
    for name in data["labels"]:
        ax_p.plot(mids, [w["probabilities"][name] for w in data["windows"]], "o-", ms=3, color=colors[name], label=name)
        ax_p.axhline(data["thresholds"].get(name, 0.5), color=colors[name], ls=":", lw=0.8)
    ax_p.set_ylim(0, 1)
    ax_p.set_ylabel("probability")
    ax_p.legend(fontsize=7, loc="upper right", ncol=max(1, len(data["labels"]) // 2))
    for key, style in (("end_to_end", "o-"), ("since_arrival", "s--")):
        ax_lat.plot(mids, [w["latency_ms"].get(key, np.nan) for w in data["windows"]], style, ms=3, label=key)
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_xlabel("time (s)")
    ax_lat.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=REPORT_DPI)
    plt.close(fig)
    return out


def write_session_report(path: str | Path, predictions: list, recording: str | Path) -> dict:
    """Read the session's recording (every received sample, with times) and write the PNG and its JSON."""
    from edge_sdk.records import read_record

    rec = read_record(recording)
    t = rec.time_s if rec.time_s is not None else np.arange(len(rec.signal_mv)) / rec.fs_hz
    data = report_data(predictions, t, rec.signal_mv, rec.fs_hz)
    out = Path(path)
    plot_report(data, np.asarray(t) - t[0], rec.signal_mv, out)
    Path(f"{out}.json").write_text(json.dumps(data, indent=1))
    return data
