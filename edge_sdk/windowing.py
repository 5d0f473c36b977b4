"""Cut records into model windows through the shared preprocessing (used by training, calibration, replay)."""
from __future__ import annotations

import numpy as np

from .preprocessing import (DEFAULT_CONFIG, PreprocessingConfig, check_signal, preprocess_window, resample_uniform,
                            split_windows)


def record_windows(signal_mv: np.ndarray, fs_hz: float, hop_s: float = 5.0,
                   config: PreprocessingConfig = DEFAULT_CONFIG, pad_short: bool = True) -> np.ndarray:
    """Resample a record to the model rate (:func:`resample_uniform`, as a stream does), cut windows every
    ``hop_s`` seconds, preprocess each window with :func:`preprocess_window`.

    Returns float32 ``(n_windows, window_samples)``. A record shorter than one window gives one window,
    preprocessed at its own length and zero-padded at the end (zero is the z-scored mean), when
    ``pad_short``; otherwise :class:`~edge_sdk.errors.SignalError` is raised.
    """
    x = resample_uniform(check_signal(signal_mv, 2), fs_hz, config.fs_hz)
    w = config.window_samples
    if x.shape[-1] < w:
        if not pad_short:
            from .errors import SignalError
            raise SignalError(f"record is {x.shape[-1] / config.fs_hz:.2f} s long; a window needs {config.window_seconds} s")
        out = np.zeros((1, w), np.float32)
        out[0, :x.shape[-1]] = preprocess_window(x, config)
        return out
    return preprocess_window(split_windows(x, w, max(1, int(round(hop_s * config.fs_hz)))), config)
