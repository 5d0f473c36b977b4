"""The one preprocessing implementation (numpy/scipy only), shared by training, calibration and streaming.

It reproduces ECGFounder's official chain on a single-lead signal:

1. :func:`resample` - any input rate to 500 Hz by linear interpolation; ``method`` (the card's
   ``resampling``) picks the exact k/500 s grid that streams use (default) or the official stretched grid
   (``resample_unequal``),
2. :func:`bandpass_filter` - 50 Hz notch (Q=30), 4th-order Butterworth band-pass 0.67-40 Hz, both
   zero-phase (``filtfilt``), minus a 0.4 s (+1 sample) median baseline (official ``filter_bandpass``),
3. :func:`zscore` - ``(x - mean) / (std + 1e-8)`` per window.

:func:`preprocess_window` runs 2-3 on one 10-s window, :func:`preprocess_windows` on a batch of windows;
:func:`preprocess_record` runs 1-3 on a record.
Units: input in millivolts (any affine scaling is removed by the z-score), rates in Hz.

Speed without changing a bit: the filters are designed once per (rate, config) (:func:`filter_design`), the
zero-phase passes are scipy's ``filtfilt`` (method "pad", odd extension) with the steady-state initial
conditions precomputed, and the median baseline always takes scipy's fast 1-D rank filter, row by row for a
batch. The official (b, a) Butterworth band-pass is ill-conditioned: a last-bit change of its input moves its
output by ~5e-7, so the notch and the band-pass stay two ``lfilter`` passes each with the official arithmetic.
On real windows, second-order sections of the same (b, a) move the z-scored output by up to 6e-5, and one
``filtfilt`` of the notch * band-pass cascade by 0.1-2 (other padding and initial conditions at the edges).
"""
from __future__ import annotations

import math

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import median_filter
from scipy.interpolate import interp1d
from scipy.signal import butter, iirnotch, lfilter, lfilter_zi

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


#: Lowest source sample rate a record or stream may have (Hz): twice the 40 Hz upper edge of the band-pass.
MIN_SOURCE_FS_HZ = 80.0


def check_fs(fs_hz: object, where: str = "fs_hz") -> float:
    """``fs_hz`` as a float sample rate in Hz; raise :class:`SignalError` unless it is positive and finite."""
    try:
        fs = float(fs_hz)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SignalError(f"{where} must be a sample rate in Hz (e.g. 130, 300), got {fs_hz!r}") from None
    if not (math.isfinite(fs) and fs > 0):
        raise SignalError(f"{where} must be a positive, finite sample rate in Hz (e.g. 130, 300), got {fs_hz!r}")
    return fs


def check_source_fs(fs_hz: object, config: "PreprocessingConfig", what: str = "sample rate") -> float:
    """``fs_hz`` (:func:`check_fs`) if the model's band fits in it: :class:`SignalError` below
    :data:`MIN_SOURCE_FS_HZ` (twice the band-pass's upper edge). Records and streams are checked here alike."""
    if isinstance(fs_hz, (bool, str, bytes)):  # check_fs would read "300" as 300
        raise SignalError(f"{what} must be a number of Hz (e.g. 130, 300), got {fs_hz!r}")
    fs = check_fs(fs_hz, what)
    if fs < MIN_SOURCE_FS_HZ:
        raise SignalError(f"{what} {fs:g} Hz is below {MIN_SOURCE_FS_HZ:g} Hz: the "
                          f"{config.bandpass_low_hz}-{config.bandpass_high_hz} Hz band the model sees needs at least "
                          "twice its upper edge; check the rate given for the record")
    return fs


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


#: most samples a resampling may produce (a day at 500 Hz is 43 M): a mistaken rate (fs_in 1e-6 Hz) would
#: otherwise ask for terabytes
MAX_RESAMPLED_SAMPLES = 200_000_000


def _check_output_length(n_out: float) -> None:
    if n_out > MAX_RESAMPLED_SAMPLES:
        raise SignalError(f"resampling would produce {n_out:.3g} samples (more than {MAX_RESAMPLED_SAMPLES:,}); the "
                          "sample rates given are probably wrong (fs_in in Hz, e.g. 130 or 300)")


def resample_linear(x: np.ndarray, fs_in: float, fs_out: float = MODEL_FS_HZ) -> np.ndarray:
    """Resample ``x`` (..., n) from ``fs_in`` Hz to ``fs_out`` Hz by linear interpolation.

    Same as ECGFounder's ``resample_unequal``: ``int(n / fs_in * fs_out)`` output samples spanning the
    same first and last instant as the input.
    """
    fs_in, fs_out = check_fs(fs_in, "fs_in"), check_fs(fs_out, "fs_out")
    arr = check_signal(x, min_samples=2)
    _check_output_length(arr.shape[-1] / fs_in * fs_out)
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
    fs_in, fs_out = check_fs(fs_in, "fs_in"), check_fs(fs_out, "fs_out")
    arr = check_signal(x, min_samples=2)
    _check_output_length(arr.shape[-1] / fs_in * fs_out)
    if arr.ndim != 1:
        raise SignalError(f"resample_uniform takes one lead of shape (n,), got {arr.shape}")
    t_in = np.arange(arr.shape[0]) / fs_in
    n_out = int(np.floor(t_in[-1] * fs_out + 1e-9)) + 1
    return np.interp(np.arange(n_out) / fs_out, t_in, arr)


#: Resampling methods by the name a card's ``preprocessing.resampling`` gives.
RESAMPLING_METHODS = {"uniform-linear": resample_uniform, "official-stretched": resample_linear}


def resample(x: np.ndarray, fs_in: float, fs_out: float = MODEL_FS_HZ, method: str = "uniform-linear") -> np.ndarray:
    """Resample ``x`` from ``fs_in`` to ``fs_out`` Hz with ``method`` (a card's ``preprocessing.resampling``):

    * ``"uniform-linear"`` (:func:`resample_uniform`): linear interpolation onto the exact grid ``k / fs_out``
      from the first sample; what streams do, so training and streaming windows are equal (default);
    * ``"official-stretched"`` (:func:`resample_linear`): ECGFounder's ``resample_unequal``, a grid stretched
      to end on the last input sample (whole records only).
    """
    if method not in RESAMPLING_METHODS:
        raise SignalError(f"unknown resampling method {method!r}; use one of {sorted(RESAMPLING_METHODS)}")
    return RESAMPLING_METHODS[method](x, fs_in, fs_out)


@dataclass(frozen=True, eq=False)
class FilterDesign:
    """The chain's filters at one sample rate, designed once (see :func:`filter_design`); arrays are read-only.

    ``notch_b``/``notch_a``: 50 Hz notch (3 coefficients each); ``band_b``/``band_a``: Butterworth band-pass
    (``2 * order + 1`` coefficients each); ``*_zi``: :func:`scipy.signal.lfilter_zi` of each (the steady state
    of the step response, what ``filtfilt`` computes on every call); ``median_samples``: odd length of the
    median-baseline window in samples (``int(median_window_seconds * fs_hz) + 1``, 201 at 500 Hz).
    """

    fs_hz: float
    notch_b: np.ndarray
    notch_a: np.ndarray
    notch_zi: np.ndarray
    band_b: np.ndarray
    band_a: np.ndarray
    band_zi: np.ndarray
    median_samples: int

    @property
    def min_samples(self) -> int:
        """Fewest samples :func:`bandpass_filter` accepts: one more than the longest ``filtfilt`` padding."""
        return max(_padlen(self.notch_b, self.notch_a), _padlen(self.band_b, self.band_a)) + 1


@lru_cache(maxsize=32)
def _design(fs_hz: float, notch_hz: float, notch_q: float, low_hz: float, high_hz: float, order: int,
            median_window_seconds: float) -> FilterDesign:
    b_n, a_n = iirnotch(notch_hz, notch_q, fs_hz)
    nyq = 0.5 * fs_hz
    b_b, a_b = butter(order, [low_hz / nyq, high_hz / nyq], btype="band")
    arrays = [np.asarray(v, np.float64) for v in (b_n, a_n, lfilter_zi(b_n, a_n), b_b, a_b, lfilter_zi(b_b, a_b))]
    for arr in arrays:
        arr.setflags(write=False)  # shared by every caller through the cache
    return FilterDesign(float(fs_hz), *arrays, int(median_window_seconds * fs_hz) + 1)


def filter_design(fs_hz: float = MODEL_FS_HZ, config: PreprocessingConfig = DEFAULT_CONFIG) -> FilterDesign:
    """The notch, band-pass and median-window of ``config`` at ``fs_hz`` Hz, cached per distinct parameters.
    :class:`SignalError` unless ``fs_hz`` is above twice the band's upper edge and the notch frequency."""
    fs_hz = check_fs(fs_hz)
    highest = max(config.bandpass_high_hz, config.notch_hz)
    if fs_hz <= 2 * highest:
        raise SignalError(f"fs_hz {fs_hz:g} Hz cannot hold the {config.bandpass_low_hz}-{config.bandpass_high_hz} Hz "
                          f"band and the {config.notch_hz} Hz notch; filter at more than {2 * highest:g} Hz (resample "
                          "first: the model's rate is 500 Hz)")
    return _design(float(fs_hz), config.notch_hz, config.notch_q, config.bandpass_low_hz, config.bandpass_high_hz,
                   config.bandpass_order, config.median_window_seconds)


def _filtfilt(b: np.ndarray, a: np.ndarray, zi: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``scipy.signal.filtfilt(b, a, x, axis=-1)`` with ``zi = lfilter_zi(b, a)`` given.

    The same steps as scipy's default (method "pad", odd extension of ``3 * max(len(a), len(b))`` samples at
    each end, forward then backward ``lfilter`` started from ``zi`` times the first sample), hence the same
    floating-point result. ``x``: ``(n,)`` or ``(batch, n)`` float64; returns the same shape (maybe a view).
    """
    n = 3 * max(len(a), len(b))
    ext = np.empty(x.shape[:-1] + (x.shape[-1] + 2 * n,))
    np.subtract(2 * x[..., :1], x[..., n:0:-1], out=ext[..., :n])
    ext[..., n:-n] = x
    np.subtract(2 * x[..., -1:], x[..., -2:-(n + 2):-1], out=ext[..., -n:])
    y, _ = lfilter(b, a, ext, zi=zi * ext[..., :1])
    y, _ = lfilter(b, a, y[..., ::-1], zi=zi * y[..., -1:])
    return y[..., n:-n][..., ::-1]


def _median_baseline(y: np.ndarray, size: int) -> np.ndarray:
    """Running median of ``size`` samples with zero padding (== ``scipy.signal.medfilt``) along the last axis.

    scipy's fast 1-D rank filter only serves 1-D input (a 2-D call with ``size=(1, k)`` takes the generic
    n-D path, ~100x slower), so a batch is filtered row by row.
    """
    if y.ndim == 1:
        return median_filter(y, size=size, mode="constant", cval=0.0)
    out = np.empty(y.shape)
    for row, row_out in zip(y, out):
        median_filter(row, size=size, mode="constant", cval=0.0, output=row_out)
    return out


def _filter(arr: np.ndarray, design: FilterDesign) -> np.ndarray:
    """Notch, band-pass, minus median baseline of a checked float64 ``(n,)``/``(batch, n)``; a new array."""
    y = _filtfilt(design.notch_b, design.notch_a, design.notch_zi, arr)
    y = _filtfilt(design.band_b, design.band_a, design.band_zi, y)  # a reversed view
    baseline = _median_baseline(y, design.median_samples)  # a new contiguous array
    return np.subtract(y, baseline, out=baseline)


def bandpass_filter(x: np.ndarray, fs_hz: float = MODEL_FS_HZ, config: PreprocessingConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Notch + band-pass (zero phase) and median-baseline removal along the last axis.

    ``x``: ``(n,)`` or ``(batch, n)`` in mV at ``fs_hz`` Hz, ``n`` > the filter padding (28 samples at the
    defaults). Returns float64 mV of the same shape.
    """
    design = filter_design(fs_hz, config)
    arr = check_signal(x, min_samples=design.min_samples)
    return _filter(arr, design)


def zscore(x: np.ndarray, eps: float = DEFAULT_CONFIG.zscore_eps) -> np.ndarray:
    """``(x - mean) / (std + eps)`` along the last axis (``x``: ``(n,)`` or ``(batch, n)``, finite)."""
    arr = check_signal(x, min_samples=1)
    return (arr - arr.mean(-1, keepdims=True)) / (arr.std(-1, keepdims=True) + eps)


def _zscore_into(y: np.ndarray, eps: float, dtype: type) -> np.ndarray:
    """:func:`zscore` of ``y`` (float64, overwritten) computed as numpy's ``mean``/``std`` do, cast to ``dtype``."""
    y -= y.mean(-1, keepdims=True)
    std = np.sqrt(np.square(y).sum(-1, keepdims=True) / y.shape[-1])  # == np.std of the uncentred y
    std += eps
    if np.dtype(dtype) == np.float64:
        return np.divide(y, std, out=y)
    return np.divide(y, std, out=np.empty(y.shape, dtype), casting="unsafe")  # == (y / std).astype(dtype)


def preprocess_window(x: np.ndarray, config: PreprocessingConfig = DEFAULT_CONFIG,
                      dtype: type = np.float32) -> np.ndarray:
    """Filter and z-score window(s) already at ``config.fs_hz``.

    ``x``: ``(n,)`` or ``(batch, n)`` in mV at ``config.fs_hz``. Returns ``dtype`` (float32: the model's
    input; add the channel axis with ``[:, None, :]``) of the same shape. Equals
    ``zscore(bandpass_filter(x, config.fs_hz, config), config.zscore_eps).astype(dtype)``.
    """
    design = filter_design(config.fs_hz, config)
    arr = check_signal(x, min_samples=design.min_samples)
    return _zscore_into(_filter(arr, design), config.zscore_eps, dtype)


def preprocess_windows(x: np.ndarray, config: PreprocessingConfig = DEFAULT_CONFIG,
                       dtype: type = np.float32) -> np.ndarray:
    """Filter and z-score a batch of windows in one call (a gateway serving many sensors).

    ``x``: ``(batch, n)`` in mV at ``config.fs_hz`` Hz (``batch`` may be 0). Returns ``dtype``
    ``(batch, n)``, row ``i`` equal to ``preprocess_window(x[i], config, dtype)``. The filters run over the
    whole batch in each ``lfilter`` call.
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise SignalError(f"preprocess_windows takes windows of shape (batch, n_samples), got {arr.shape}")
    if arr.shape[0] == 0:
        check_signal(arr, min_samples=filter_design(config.fs_hz, config).min_samples)
        return np.empty(arr.shape, dtype)
    return preprocess_window(arr, config, dtype)


def preprocess_record(x: np.ndarray, fs_in: float, config: PreprocessingConfig = DEFAULT_CONFIG,
                      dtype: type = np.float32) -> np.ndarray:
    """Resample a whole record to ``config.fs_hz`` then filter and z-score it as one piece (official order)."""
    return preprocess_window(resample_linear(x, fs_in, config.fs_hz), config, dtype)
