"""The one preprocessing implementation (numpy/scipy only), shared by training, calibration and streaming.

It reproduces ECGFounder's official chain on a single-lead signal:

1. :func:`resample_linear` - any input rate to 500 Hz by linear interpolation (official ``resample_unequal``),
2. :func:`bandpass_filter` - 50 Hz notch (Q=30), 4th-order Butterworth band-pass 0.67-40 Hz, both
   zero-phase (``filtfilt``), minus a 0.4 s (+1 sample) median baseline (official ``filter_bandpass``),
3. :func:`zscore` - ``(x - mean) / (std + 1e-8)`` per window.

:func:`preprocess_window` runs 2-3 on one 10-s window; :func:`preprocess_record` runs 1-3 on a record.
Units: input in millivolts (any affine scaling is removed by the z-score), rates in Hz.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import median_filter
from scipy.interpolate import interp1d
from scipy.signal import butter, filtfilt, iirnotch

from .errors import SignalError

MODEL_FS_HZ = 500
WINDOW_SECONDS = 10.0
WINDOW_SAMPLES = int(MODEL_FS_HZ * WINDOW_SECONDS)


@dataclass(frozen=True)
class PreprocessingConfig:
    """Parameters of the chain; written to model cards so that apps can check them."""

    fs_hz: int = MODEL_FS_HZ
    window_seconds: float = WINDOW_SECONDS
    notch_hz: float = 50.0
    notch_q: float = 30.0
    bandpass_low_hz: float = 0.67
    bandpass_high_hz: float = 40.0
    bandpass_order: int = 4
    median_window_seconds: float = 0.4
    zscore_eps: float = 1e-8
    #: "uniform-linear": linear interpolation onto the exact grid k / fs_hz from the first sample, the same
    #: in training (:func:`resample_uniform`) and streaming (:class:`edge_sdk.signal.StreamingResampler`).
    resampling: str = "uniform-linear"

    @property
    def window_samples(self) -> int:
        return int(round(self.fs_hz * self.window_seconds))

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_CONFIG = PreprocessingConfig()


def _padlen(b: np.ndarray, a: np.ndarray) -> int:
    return 3 * max(len(a), len(b))


def check_signal(x: np.ndarray, min_samples: int = 1, name: str = "signal") -> np.ndarray:
    """Return ``x`` as a float64 array of shape ``(n,)`` or ``(batch, n)``; raise :class:`SignalError` if unusable."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise SignalError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim not in (1, 2):
        raise SignalError(f"{name} must have shape (n_samples,) or (batch, n_samples), got {arr.shape}; "
                          "pass one lead at a time")
    if arr.shape[-1] < min_samples:
        raise SignalError(f"{name} has {arr.shape[-1]} samples, at least {min_samples} are needed")
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise SignalError(f"{name} contains {n_bad} NaN/inf samples; mask or interpolate gaps before preprocessing")
    return arr


def resample_linear(x: np.ndarray, fs_in: float, fs_out: float = MODEL_FS_HZ) -> np.ndarray:
    """Resample ``x`` (..., n) from ``fs_in`` Hz to ``fs_out`` Hz by linear interpolation.

    Same as ECGFounder's ``resample_unequal``: ``int(n / fs_in * fs_out)`` output samples spanning the
    same first and last instant as the input.
    """
    if not fs_in or fs_in <= 0 or fs_out <= 0:
        raise SignalError(f"sample rates must be positive, got fs_in={fs_in}, fs_out={fs_out}")
    arr = check_signal(x, min_samples=2)
    if fs_in == fs_out:
        return arr.copy()
    n_in = arr.shape[-1]
    n_out = int(n_in / fs_in * fs_out)
    x_old = np.linspace(0.0, 1.0, num=n_in, endpoint=True)
    x_new = np.linspace(0.0, 1.0, num=n_out, endpoint=True)
    return interp1d(x_old, arr, kind="linear", axis=-1)(x_new)


def resample_uniform(x: np.ndarray, fs_in: float, fs_out: float = MODEL_FS_HZ) -> np.ndarray:
    """Resample ``x`` (n,) onto the exact grid ``k / fs_out`` (k = 0, 1, ...) inside the input's span.

    This is what a stream can do sample by sample, so training windows use it too (see
    :func:`edge_sdk.windowing.record_windows`). It differs from :func:`resample_linear` (the official
    ``resample_unequal``, which stretches the grid to hit the last input sample) by under one input sample.
    """
    if not fs_in or fs_in <= 0 or fs_out <= 0:
        raise SignalError(f"sample rates must be positive, got fs_in={fs_in}, fs_out={fs_out}")
    arr = check_signal(x, min_samples=2)
    if arr.ndim != 1:
        raise SignalError(f"resample_uniform takes one lead of shape (n,), got {arr.shape}")
    t_in = np.arange(arr.shape[0]) / fs_in
    n_out = int(np.floor(t_in[-1] * fs_out + 1e-9)) + 1
    return np.interp(np.arange(n_out) / fs_out, t_in, arr)


def bandpass_filter(x: np.ndarray, fs_hz: float = MODEL_FS_HZ, config: PreprocessingConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Notch + band-pass (zero phase) and median-baseline removal along the last axis."""
    b_n, a_n = iirnotch(config.notch_hz, config.notch_q, fs_hz)
    nyq = 0.5 * fs_hz
    b_b, a_b = butter(config.bandpass_order, [config.bandpass_low_hz / nyq, config.bandpass_high_hz / nyq], btype="band")
    arr = check_signal(x, min_samples=max(_padlen(b_n, a_n), _padlen(b_b, a_b)) + 1)
    y = filtfilt(b_n, a_n, arr, axis=-1)
    y = filtfilt(b_b, a_b, y, axis=-1)
    k = int(config.median_window_seconds * fs_hz) + 1
    size = (1,) * (y.ndim - 1) + (k,)
    # median_filter with zero padding == scipy.signal.medfilt (the official call), but much faster.
    baseline = median_filter(y, size=size, mode="constant", cval=0.0)
    return y - baseline


def zscore(x: np.ndarray, eps: float = DEFAULT_CONFIG.zscore_eps) -> np.ndarray:
    """``(x - mean) / (std + eps)`` along the last axis."""
    arr = np.asarray(x, dtype=np.float64)
    return (arr - arr.mean(-1, keepdims=True)) / (arr.std(-1, keepdims=True) + eps)


def preprocess_window(x: np.ndarray, config: PreprocessingConfig = DEFAULT_CONFIG,
                      dtype: type = np.float32) -> np.ndarray:
    """Filter and z-score window(s) already at ``config.fs_hz``.

    ``x``: ``(n,)`` or ``(batch, n)`` in mV at ``config.fs_hz``. Returns ``dtype`` (float32: the model's
    input; add the channel axis with ``[:, None, :]``) of the same shape.
    """
    return zscore(bandpass_filter(x, config.fs_hz, config), config.zscore_eps).astype(dtype, copy=False)


def preprocess_record(x: np.ndarray, fs_in: float, config: PreprocessingConfig = DEFAULT_CONFIG,
                      dtype: type = np.float32) -> np.ndarray:
    """Resample a whole record to ``config.fs_hz`` then filter and z-score it as one piece (official order)."""
    return preprocess_window(resample_linear(x, fs_in, config.fs_hz), config, dtype)


def split_windows(x: np.ndarray, window_samples: int = WINDOW_SAMPLES, hop_samples: int | None = None) -> np.ndarray:
    """Cut ``x`` (n,) into ``(n_windows, window_samples)`` windows every ``hop_samples`` (default: no overlap).

    Raises :class:`SignalError` if ``x`` is shorter than one window.
    """
    arr = check_signal(x, min_samples=window_samples, name="record")
    if arr.ndim != 1:
        raise SignalError(f"split_windows takes one lead of shape (n,), got {arr.shape}")
    hop = hop_samples or window_samples
    if hop <= 0:
        raise SignalError(f"hop must be positive, got {hop}")
    starts = range(0, arr.shape[0] - window_samples + 1, hop)
    return np.stack([arr[s:s + window_samples] for s in starts])
