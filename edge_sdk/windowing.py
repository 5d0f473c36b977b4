"""Cut records into model windows through the shared preprocessing (used by training, calibration, replay).

The one windowing module for whole records: :func:`split_windows` (raw cut) and :func:`record_windows`
(resample + cut + preprocess). Streams are cut as they arrive by :class:`edge_sdk.stream.Windower`, on the
same grid, so a streamed window equals the training window.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import SignalError
from .preprocessing import (DEFAULT_CONFIG, WINDOW_SAMPLES, PreprocessingConfig, check_signal, check_source_fs,
                            preprocess_window, resample)

#: the shortest record :func:`record_windows` zero-pads to one window, as a fraction of the window (5 s of 10)
MIN_PADDED_FRACTION = 0.5


def hop_samples(hop_s: object, fs_hz: float) -> int:
    """``hop_s`` seconds as a whole number of samples at ``fs_hz`` Hz (rounded); :class:`SignalError` unless it
    is a positive, finite number of seconds of at least one sample. Records and streams are cut with it."""
    if isinstance(hop_s, bool) or not isinstance(hop_s, numbers.Real) or not math.isfinite(hop_s) or hop_s <= 0:
        raise SignalError(f"hop_s must be a positive number of seconds (e.g. 5), got {hop_s!r}")
    n = int(round(hop_s * fs_hz))
    if n < 1:
        raise SignalError(f"hop_s {hop_s!r} s is less than one sample at {fs_hz:g} Hz; give at least {1 / fs_hz:g} s")
    return n


def split_windows(x: np.ndarray, window_samples: int = WINDOW_SAMPLES, hop_samples: int | None = None) -> np.ndarray:
    """Cut ``x`` (n,) into ``(n_windows, window_samples)`` windows every ``hop_samples`` (default: no overlap).

    Raises :class:`SignalError` if ``x`` is shorter than one window.
    """
    arr = check_signal(x, min_samples=window_samples, name="record")
    if arr.ndim != 1:
        raise SignalError(f"split_windows takes one lead of shape (n,), got {arr.shape}")
    hop = window_samples if hop_samples is None else hop_samples
    if not isinstance(hop, numbers.Integral) or isinstance(hop, bool) or hop <= 0:
        raise SignalError(f"hop_samples must be a positive whole number of samples (None: no overlap), got {hop!r}")
    starts = range(0, arr.shape[0] - window_samples + 1, hop)
    return np.stack([arr[s:s + window_samples] for s in starts])

def record_windows(signal_mv: np.ndarray, fs_hz: float, hop_s: float = 5.0,
                   config: PreprocessingConfig = DEFAULT_CONFIG, pad_short: bool = True) -> np.ndarray:
    """Resample a record to the model rate (:func:`~edge_sdk.preprocessing.resample` with the config's method,
    by default the exact grid a stream uses), cut windows every
    ``hop_s`` seconds, preprocess each window with :func:`preprocess_window`.

    Returns float32 ``(n_windows, window_samples)``. A record shorter than one window gives one window,
    preprocessed at its own length and zero-padded at the end (zero is the z-scored mean), when
    ``pad_short`` and it holds at least :data:`MIN_PADDED_FRACTION` of a window (5 s of 10); otherwise
    :class:`~edge_sdk.errors.SignalError` is raised. Also :class:`SignalError` for a sample rate below
    :data:`~edge_sdk.preprocessing.MIN_SOURCE_FS_HZ` (:func:`~edge_sdk.preprocessing.check_source_fs`) and a
    bad hop (:func:`hop_samples`).
    """
    fs_hz = check_source_fs(fs_hz, config)
    hop = hop_samples(hop_s, config.fs_hz)
    x = resample(check_signal(signal_mv, 2), fs_hz, config.fs_hz, config.resampling)
    w = config.window_samples
    if x.shape[-1] < w:
        seconds = x.shape[-1] / config.fs_hz
        if not pad_short or x.shape[-1] < MIN_PADDED_FRACTION * w:
            raise SignalError(f"record is {seconds:.2f} s long; a window needs {config.window_seconds} s"
                              + (f" (records of {MIN_PADDED_FRACTION * config.window_seconds:g} s or more are "
                                 "zero-padded to one; a shorter one would be mostly padding)" if pad_short else ""))
        out = np.zeros((1, w), np.float32)
        out[0, :x.shape[-1]] = preprocess_window(x, config)
        return out
    return preprocess_window(split_windows(x, w, hop), config)
