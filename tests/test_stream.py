"""The streaming pipeline on real records: replay -> resample -> windows -> preprocessing -> int8 model."""
import asyncio

import numpy as np
import pytest

from edge_sdk.errors import SignalError
from edge_sdk.inference import open_backend
from edge_sdk.preprocessing import preprocess_window
from edge_sdk.records import read_record
from edge_sdk.signal import StreamingResampler, assess_quality
from edge_sdk.sources import EcgChunk, EcgSource, ReplaySource, SourceEvent
from edge_sdk.stream import EcgStream, LatencyStats, Windower
from edge_sdk.windowing import record_windows


def run(coro):
    return asyncio.run(coro)


def test_streamed_windows_equal_training_windows(cinc, bundle_dir):
    rec = cinc.read("A00009")  # AF record of the held-out split
    stream = EcgStream(ReplaySource(rec, speed=0, chunk_samples=41), bundle_dir, hop_s=5.0)
    streamed = []
    classify = stream._classify
    stream._classify = lambda w: (streamed.append(preprocess_window(w.values_mv)), classify(w))[1]
    preds = run(stream.run())
    # sources carry microvolts; on the same mV values the stream cuts the training windows bit for bit
    training = record_windows(rec.signal_mv * 1e3 * 1e-3, rec.fs_hz, hop_s=5.0)
    assert np.array_equal(np.stack(streamed), training)
    np.testing.assert_allclose(training, record_windows(rec.signal_mv, rec.fs_hz, hop_s=5.0), atol=1e-4)
    expected = open_backend(bundle_dir).predict(training)
    got = np.array([[p.probabilities[l] for l in stream.labels] for p in preds])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert cinc.labels["A00009"] == "A"
    assert np.mean([p.top_label == "ATRIAL FIBRILLATION" for p in preds]) > 0.5
    lat = stream.latency.summary()
    assert set(lat) == {"resample", "preprocess", "inference", "since_arrival", "end_to_end"}
    assert all(s["n"] == len(preds) and s["p50"] <= s["p95"] <= s["p99"] for s in lat.values())


def test_callback_and_async_iterator_see_the_same_predictions(cinc, bundle_dir):
    seen = []
    stream = EcgStream(ReplaySource(cinc.read("A00001"), speed=0), bundle_dir, on_prediction=seen.append)

    async def consume():
        return [p async for p in stream]

    preds = run(consume())
    rec = cinc.read("A00001")
    assert preds == seen and len(preds) == len(record_windows(rec.signal_mv, rec.fs_hz, 5.0)) == 4  # 30 s, hop 5 s
    assert stream.prediction_count == 4
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-4 for p in preds)


def test_tflite_backend_streams_too(cinc, bundle_dir):
    stream = EcgStream(ReplaySource(cinc.read("A00008"), speed=0), bundle_dir, runtime="tflite")
    preds = run(stream.run())
    onnx = EcgStream(ReplaySource(cinc.read("A00008"), speed=0), bundle_dir)
    ref = run(onnx.run())
    diff = max(abs(a.probabilities[k] - b.probabilities[k]) for a, b in zip(preds, ref) for k in a.probabilities)
    assert len(preds) == len(ref) and diff < 0.1


def test_real_time_replay_is_paced(cinc, bundle_dir):
    src = ReplaySource(cinc.read("A00001"), speed=25.0, duration_s=20.1)
    stream = EcgStream(src, bundle_dir, hop_s=5.0)
    import time
    t = time.perf_counter()
    preds = run(stream.run())
    elapsed = time.perf_counter() - t
    assert len(preds) == 3 and elapsed >= 20.1 / 25.0 * 0.9
    # end-to-end latency is measured from the arrival of the window's last sample
    assert all(0 <= p.latency_ms["end_to_end"] < 1000 for p in preds)


class GapSource(EcgSource):
    """Real samples with a hole: frames in the middle are never delivered."""

    name = "gappy"

    def __init__(self, signal_uv, fs, hole):
        super().__init__()
        self.x, self.fs, self.hole = signal_uv, fs, hole
        self.nominal_fs_hz = fs

    async def stream(self):
        t0 = 1.7e9
        prev_end = None
        for i in range(0, len(self.x), 65):
            if self.hole[0] <= i < self.hole[1]:
                continue
            x = self.x[i:i + 65]
            t = t0 + (i + np.arange(len(x))) / self.fs
            gap = 0.0 if prev_end is None or i == prev_end else (i - prev_end) / self.fs
            if gap:
                yield SourceEvent("gap", detail={"seconds": gap})
            prev_end = i + len(x)
            yield EcgChunk(x, t, t, t[-1], self.fs, gap)


def test_gap_is_never_bridged(mitdb, bundle_dir):
    rec = mitdb.read("100", sampto=360 * 60)
    fs = rec.fs_hz
    hole = (int(25 * fs) // 65 * 65, int(27 * fs) // 65 * 65)
    stream = EcgStream(GapSource(rec.signal_mv * 1e3, fs, hole), bundle_dir, hop_s=2.0)
    preds = run(stream.run())
    t_hole = (1.7e9 + hole[0] / fs, 1.7e9 + hole[1] / fs)
    assert preds, "windows before and after the gap"
    for p in preds:  # no window spans the hole
        assert p.end_sensor_s < t_hole[0] or p.start_sensor_s >= t_hole[1]
    assert {p.segment for p in preds} == {0, 1}
    after = [p for p in preds if p.segment == 1]
    assert after[0].start_sensor_s >= t_hole[1] and any(e.kind == "gap" for e in after[0].events)


def test_recorder_loses_no_sample_and_replays(tmp_path, cinc, bundle_dir):
    rec = cinc.read("A00001")
    out = tmp_path / "rec.csv"
    stream = EcgStream(ReplaySource(rec, speed=0, chunk_samples=50), bundle_dir, record_to=out)
    run(stream.run())
    back = read_record(out)
    assert len(back.signal_mv) == len(rec.signal_mv) == stream.samples_received
    np.testing.assert_allclose(back.signal_mv, rec.signal_mv, atol=1e-4)
    assert abs(back.fs_hz - 300) < 0.01
    assert (tmp_path / "rec.csv.events.jsonl").read_text().count('"kind"') == 2


def test_streaming_resampler_matches_interp_on_irregular_times(mitdb):
    rec = mitdb.read("100", sampto=3600)
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.9, 1.1, rec.signal_mv.size)) / 130.0
    r = StreamingResampler(500.0)
    outs = [r.push(rec.signal_mv[i:i + 73], t[i:i + 73], t[i:i + 73]) for i in range(0, t.size, 73)]
    v = np.concatenate([o.values_mv for o in outs])
    grid = t[0] + np.arange(v.size) / 500.0
    assert grid[-1] <= t[-1] < grid[-1] + 1 / 500.0
    np.testing.assert_allclose(v, np.interp(grid, t, rec.signal_mv), atol=1e-12)


def test_quality_flags_on_real_and_broken_signals(cinc):
    x = cinc.read("A00001").signal_mv[:3000]
    assert assess_quality(x, 300) == []
    flat = x.copy()
    flat[1000:2000] = flat[1000]
    assert "flatline" in assess_quality(flat, 300)
    clipped = np.clip(x, -0.2, 0.25)
    assert "clipping" in assess_quality(clipped, 300)
    assert "excessive_amplitude" in assess_quality(x * 20, 300)
    assert "low_amplitude" in assess_quality(x * 0.05, 300)
    wander = x + 5 * np.sin(2 * np.pi * 0.1 * np.arange(x.size) / 300)
    assert "baseline_wander" in assess_quality(wander, 300)


def test_windower_and_latency_and_bad_arguments(cinc, bundle_dir):
    w = Windower(10, 4)
    out = w.push(np.arange(30.0), np.arange(30.0), np.arange(30.0))
    assert [list(o.values_mv[:2]) for o in out] == [[0, 1], [4, 5], [8, 9], [12, 13], [16, 17], [20, 21]]
    with pytest.raises(ValueError):
        Windower(10, 0)
    s = LatencyStats()
    for v in range(1, 101):
        s.add("x", v / 1e3)
    assert abs(s.summary()["x"]["p50"] - 50.5) < 1e-9 and "| x |" in s.table()
    with pytest.raises(SignalError):
        ReplaySource(cinc.read("A00001"), speed=-1)
    with pytest.raises(SignalError, match="windows must be"):
        open_backend(bundle_dir).predict(np.zeros((2, 100)))
