"""Cut records into model windows through the shared preprocessing (used by training, calibration, replay).

The one windowing module for whole records: :func:`split_windows` (raw cut) and :func:`record_windows`
(resample + cut + preprocess). Streams are cut as they arrive by :class:`edge_sdk.stream.Windower`, on the
same grid, so a streamed window equals the training window.
"""
from __future__ import annotations

import numpy as np

from .errors import SignalError
from .preprocessing import DEFAULT_CONFIG, WINDOW_SAMPLES, PreprocessingConfig, check_signal, preprocess_window, resample

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

def record_windows(signal_mv: np.ndarray, fs_hz: float, hop_s: float = 5.0,
                   config: PreprocessingConfig = DEFAULT_CONFIG, pad_short: bool = True) -> np.ndarray:
    """Resample a record to the model rate (:func:`~edge_sdk.preprocessing.resample` with the config's method,
    by default the exact grid a stream uses), cut windows every
    ``hop_s`` seconds, preprocess each window with :func:`preprocess_window`.

    Returns float32 ``(n_windows, window_samples)``. A record shorter than one window gives one window,
    preprocessed at its own length and zero-padded at the end (zero is the z-scored mean), when
    ``pad_short``; otherwise :class:`~edge_sdk.errors.SignalError` is raised.
    """
    x = resample(check_signal(signal_mv, 2), fs_hz, config.fs_hz, config.resampling)
    w = config.window_samples
    if x.shape[-1] < w:
        if not pad_short:
            raise SignalError(f"record is {x.shape[-1] / config.fs_hz:.2f} s long; a window needs {config.window_seconds} s")
        out = np.zeros((1, w), np.float32)
        out[0, :x.shape[-1]] = preprocess_window(x, config)
        return out
    return preprocess_window(split_windows(x, w, max(1, int(round(hop_s * config.fs_hz)))), config)
