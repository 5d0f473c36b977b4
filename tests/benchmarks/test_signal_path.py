"""pytest-benchmark suite: the signal path per window next to int8 inference of that window.

The budget (issue "Streaming cost"): preprocessing a 10-s window (5000 samples at 500 Hz) should cost no more
than int8 inference of it on one thread. The default test run disables timing (``--benchmark-disable`` in
pyproject), so each benchmark runs once as a check of its result. Measure with::

    python -m pytest tests/benchmarks/test_signal_path.py --benchmark-enable --benchmark-columns=min,median,ops

``test_preprocess_one_window_scipy_reference`` times the plain scipy chain (filters designed on every call,
``scipy.signal.filtfilt``, ``scipy.signal.medfilt``), the implementation before the fast path, for comparison.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, filtfilt, iirnotch, medfilt

from edge_sdk.inference import open_backend
from edge_sdk.preprocessing import preprocess_window, preprocess_windows, resample_uniform
from edge_sdk.windowing import split_windows
from edge_sdk.signal import StreamingResampler

SENSOR_FS_HZ = 130.0  # a wearable's ECG rate that is not a divisor of 500 Hz
CHUNK_SAMPLES = 73  # one BLE notification's worth of samples


def scipy_reference_preprocess(x: np.ndarray, fs: float = 500.0) -> np.ndarray:
    """Official chain on one window ``(n,)`` in mV at ``fs`` Hz, every step a plain scipy/numpy call."""
    b_n, a_n = iirnotch(50.0, 30.0, fs)
    b_b, a_b = butter(4, [0.67 / (fs / 2), 40.0 / (fs / 2)], btype="band")
    y = filtfilt(b_b, a_b, filtfilt(b_n, a_n, x))
    y = y - medfilt(y, int(0.4 * fs) + 1)
    return ((y - y.mean()) / (y.std() + 1e-8)).astype(np.float32)


@pytest.fixture(scope="module")
def windows_mv(cinc) -> np.ndarray:
    """(64, 5000) raw windows in mV at 500 Hz from real Challenge 2017 records (hop 2.5 s)."""
    wins = []
    for name in cinc.records[:40]:
        rec = cinc.read(name)
        x = resample_uniform(rec.signal_mv, rec.fs_hz)
        if x.size >= 5000:
            wins.append(split_windows(x, 5000, 1250))
        if sum(len(w) for w in wins) >= 64:
            break
    return np.concatenate(wins)[:64]


def test_preprocess_one_window(benchmark, windows_mv):
    z = benchmark(preprocess_window, windows_mv[0])
    assert z.shape == (5000,) and z.dtype == np.float32
    np.testing.assert_allclose(z, scipy_reference_preprocess(windows_mv[0]), atol=1e-6, rtol=0)


def test_preprocess_one_window_scipy_reference(benchmark, windows_mv):
    z = benchmark(scipy_reference_preprocess, windows_mv[0])
    assert z.shape == (5000,) and abs(float(z.std()) - 1) < 1e-4


def test_preprocess_batch_64(benchmark, windows_mv):
    z = benchmark(preprocess_windows, windows_mv)
    assert z.shape == (64, 5000) and z.dtype == np.float32
    np.testing.assert_allclose(z[-1], scipy_reference_preprocess(windows_mv[-1]), atol=1e-6, rtol=0)


def test_resampler_push_one_chunk(benchmark, cinc):
    """One push of 73 samples of a 130 Hz stream (about 281 outputs at 500 Hz), jittered BLE timestamps."""
    rec = cinc.read("A00001")
    x = resample_uniform(rec.signal_mv, rec.fs_hz, SENSOR_FS_HZ)
    t = 1.7e9 + (np.arange(x.size) + np.random.default_rng(0).uniform(-0.2, 0.2, x.size)) / SENSOR_FS_HZ
    chunks = [(x[i:i + CHUNK_SAMPLES], t[i:i + CHUNK_SAMPLES], t[i:i + CHUNK_SAMPLES] + 0.05)
              for i in range(0, x.size - CHUNK_SAMPLES + 1, CHUNK_SAMPLES)]
    resampler = StreamingResampler(500.0)
    state = {"i": 0}
    resampler.push(*chunks[0])

    def push_next():
        state["i"] = state["i"] % (len(chunks) - 1) + 1
        if state["i"] == 1:  # wrapped around: the stream restarts, as after a gap
            resampler.reset()
            resampler.push(*chunks[0])
        return resampler.push(*chunks[state["i"]])

    block = benchmark(push_next)
    n = block.values_mv.size
    assert abs(n - CHUNK_SAMPLES * 500.0 / SENSOR_FS_HZ) <= 3 and np.all(np.diff(block.sensor_time_s) > 0)


def test_int8_inference_one_window(benchmark, bundle_dir, windows_mv):
    """For comparison: the default bundle's int8 model on one preprocessed window, one thread."""
    backend = open_backend(bundle_dir, threads=1)
    x = preprocess_windows(windows_mv[:1])
    probs = benchmark(backend.predict, x)
    assert probs.shape[0] == 1 and abs(float(probs.sum()) - 1) < 0.02
