"""Signal-quality flags for one window of raw ECG (millivolts, before filtering).

Flags: ``flatline`` (lead off / no contact: almost no variation for a second or more), ``clipping``
(samples stuck at the window's extremes: saturated front end), ``excessive_amplitude`` (motion or
electrode artefact: peak-to-peak beyond what ECG reaches), ``low_amplitude`` (too weak to read),
``baseline_wander`` (strong sub-0.5 Hz drift), ``non_finite`` (NaN or inf samples: nothing else is judged).
An empty list means the window looks usable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SignalError
from ..preprocessing import check_fs


@dataclass(frozen=True)
class QualityThresholds:
    flat_std_mv: float = 0.005  # a 1-s segment with std below 5 uV is flat
    flat_fraction: float = 0.1  # flag when more than 10 % of 1-s segments are flat
    clip_fraction: float = 0.02  # more than 2 % of samples at the min or max value
    max_peak_to_peak_mv: float = 10.0
    min_peak_to_peak_mv: float = 0.15
    wander_ratio: float = 3.0  # ptp of the 1-s moving mean over ptp of the signal minus it


def assess_quality(window_mv: np.ndarray, fs_hz: float, thresholds: QualityThresholds = QualityThresholds()) -> list[str]:
    """Return the list of quality flags of ``window_mv`` (n,) in mV sampled at ``fs_hz`` Hz.
    :class:`SignalError` for a window that is not one lead of numbers, or a bad rate."""
    fs_hz = check_fs(fs_hz)
    raw = np.asarray(window_mv)
    if raw.dtype.kind not in "fiu" or raw.ndim != 1:
        raise SignalError(f"assess_quality takes one window of shape (n,) in mV, got shape {raw.shape}, dtype "
                          f"{raw.dtype}")
    x = raw.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        return ["non_finite"]
    flags: list[str] = []
    sec = max(1, int(fs_hz))
    n_seg = x.size // sec
    if n_seg:
        segs = x[: n_seg * sec].reshape(n_seg, sec)
        if (segs.std(1) < thresholds.flat_std_mv).mean() > thresholds.flat_fraction:
            flags.append("flatline")
    ptp = float(np.ptp(x)) if x.size else 0.0
    if ptp > 0:
        at_extremes = np.mean((x >= x.max() - 1e-9) | (x <= x.min() + 1e-9))
        if at_extremes > thresholds.clip_fraction:
            flags.append("clipping")
    if ptp > thresholds.max_peak_to_peak_mv:
        flags.append("excessive_amplitude")
    if ptp < thresholds.min_peak_to_peak_mv and "flatline" not in flags:
        flags.append("low_amplitude")
    if n_seg >= 2:
        trend = np.convolve(x, np.ones(sec) / sec, mode="valid")
        detail = x[sec // 2: sec // 2 + trend.size] - trend
        if np.ptp(detail) > 0 and np.ptp(trend) / np.ptp(detail) > thresholds.wander_ratio:
            flags.append("baseline_wander")
    return flags
