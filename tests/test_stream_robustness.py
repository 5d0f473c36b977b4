"""A stream survives what a wearable and a slow app do: bounded memory, prompt close, NaN spans, bad rates."""
import asyncio
import time

import numpy as np
import pytest
import torch

from ecg_edge.cli import main
from distill.errors import CheckpointError
from edge_sdk.errors import SignalError
from edge_sdk.inference import open_backend
from edge_sdk.records import Record
from edge_sdk.signal import assess_quality
from edge_sdk.sources import ReplaySource
from edge_sdk.stream import EcgStream
from edge_sdk.stream.latency import LatencyStats


@pytest.fixture(scope="module")
def long_record(mitdb):
    """10 minutes of MIT-BIH 201 (MLII, 360 Hz)."""
    rec = mitdb.read("201")
    n = int(600 * rec.fs_hz)
    return Record("201-10min", rec.signal_mv[:n].copy(), rec.fs_hz, rec.lead)


def test_breaking_out_with_a_full_queue_returns_promptly(long_record, bundle_dir):
    async def consume():
        stream = EcgStream(ReplaySource(long_record, speed=0), bundle_dir, max_queue=2)
        async for _ in stream:
            await asyncio.sleep(0.3)  # the fast replay fills the queue meanwhile
            break
        return stream

    t0 = time.perf_counter()
    stream = asyncio.run(asyncio.wait_for(consume(), 20))
    assert time.perf_counter() - t0 < 20 and stream.prediction_count == 1


def test_slow_consumer_drops_oldest_windows_never_samples(long_record, bundle_dir, tmp_path):
    rec_path = tmp_path / "session.csv"

    async def consume():
        stream = EcgStream(ReplaySource(long_record, speed=0), bundle_dir, max_queue=3, record_to=rec_path)
        dropped_events = 0
        async for p in stream:
            dropped_events += sum(e.kind == "windows_dropped" for e in p.events)
            await asyncio.sleep(0.05)  # an app that takes longer per prediction than the sensor needs
        return stream, dropped_events

    stream, dropped_events = asyncio.run(consume())
    assert stream.windows_dropped > 0 and dropped_events > 0
    assert stream._windows.maxsize == 3
    # every received sample reached the recording
    assert stream.recorder.samples_written == stream.samples_received == long_record.signal_mv.size
    assert sum(1 for _ in rec_path.open()) - 1 == long_record.signal_mv.size


def test_a_nan_span_is_an_event_and_the_stream_goes_on(long_record, bundle_dir):
    x = long_record.signal_mv[: int(120 * long_record.fs_hz)].copy()
    fs = long_record.fs_hz
    x[int(60 * fs): int(61 * fs)] = np.nan
    rec = Record("nan-span", x, fs)
    events = []
    preds = asyncio.run(EcgStream(ReplaySource(rec, speed=0), bundle_dir, on_event=events.append).run())
    kinds = [e.kind for e in events]
    assert "invalid_samples" in kinds
    ev = events[kinds.index("invalid_samples")]
    assert ev.detail["samples"] == int(fs) and abs(ev.detail["sensor_time_s"] - 60.0) < 0.01
    after = [p for p in preds if p.start_sensor_s > 61.0]
    assert len(after) >= 8 and all(np.isfinite(list(p.probabilities.values())).all() for p in preds)
    assert all(not (p.start_sensor_s <= 60.5 <= p.end_sensor_s) for p in preds)  # no window spans the NaNs
    assert len({p.segment for p in preds}) == 2


def test_backend_and_quality_refuse_nan_windows(bundle_dir):
    w = np.zeros((2, 5000), np.float32)
    w[1, 10] = np.nan
    with pytest.raises(SignalError, match=r"window\(s\) \[1\] hold NaN"):
        open_backend(bundle_dir).predict(w)
    assert assess_quality(w[1], 500) == ["non_finite"]


@pytest.mark.parametrize("fs", [1.0, 50.0])
def test_implausible_source_rates_are_refused(long_record, bundle_dir, fs):
    rec = Record("slow", long_record.signal_mv[:3000], fs)
    with pytest.raises(SignalError, match="below 80 Hz"):
        EcgStream(ReplaySource(rec, speed=0), bundle_dir)


@pytest.mark.parametrize("hop", [0, -1, float("nan")])
def test_bad_hop_is_a_named_error(long_record, bundle_dir, hop):
    with pytest.raises(SignalError, match="hop_s"):
        EcgStream(ReplaySource(long_record, speed=0), bundle_dir, hop_s=hop)


def test_latency_stats_stay_bounded():
    stats = LatencyStats(window=100)
    for i in range(10_000):
        stats.add("inference", i / 1e3)
    s = stats.summary()["inference"]
    assert len(stats.samples["inference"]) == 100 and s["n"] == 10_000
    assert s["max"] == pytest.approx(9999.0) and s["p50"] > 9800  # percentiles over the recent window


@pytest.mark.parametrize("duration, span", [("3", "2.997"), ("10", "9.997")])
def test_short_stream_says_why_there_is_no_prediction(shared, bundle_dir, capsys, duration, span):
    """Exactly 10 s of samples at 300 Hz (3,000) span 9.997 s, one sample short of a 500-Hz window: the summary
    says so (it used to blame gaps that were not there)."""
    rec = shared / "data" / "cinc2017" / "training2017" / "A00001"
    assert main(["stream", "--replay", str(rec), "--duration", duration, "--speed", "0", "--bundle",
                 str(bundle_dir)]) == 0
    assert (f"no prediction: a window needs 10 s of continuous ECG (its first and last samples 9.998 s apart) and "
            f"the stream's samples span {span} s") in capsys.readouterr().out


def test_recording_is_never_overwritten_without_force(shared, bundle_dir, tmp_path, capsys):
    rec = shared / "data" / "cinc2017" / "training2017" / "A00001"
    out = tmp_path / "mine.csv"
    out.write_text("precious")
    assert main(["stream", "--replay", str(rec), "--speed", "0", "--bundle", str(bundle_dir), "--save", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_text() == "precious"


def test_checkpoints_with_nan_weights_or_bad_config_are_named_errors(tmp_path, models_dir):
    from distill.checkpoint import load_model, load_net1d

    ckpt = torch.load(models_dir / "student.pth", weights_only=True)
    ckpt["state_dict"]["head.weight"][0, 0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match="NaN or inf"):
        load_model(tmp_path / "nan.pth")
    ckpt = torch.load(models_dir / "student.pth", weights_only=True)
    ckpt["config"] = {"channels": "wide"}
    torch.save(ckpt, tmp_path / "cfg.pth")
    with pytest.raises(CheckpointError, match="not usable"):
        load_model(tmp_path / "cfg.pth")
    with pytest.raises(CheckpointError, match="not usable"):
        load_net1d(models_dir / "reference_teacher.pth", {"filter_list": "x"})


def test_checkpoint_contents_of_the_wrong_kind_are_named_errors(tmp_path, shared):
    """A state_dict that is a list, meta that is a string, labels that are a string: were AttributeErrors or
    silently ignored (the 150 tasks.txt names used instead)."""
    from distill.checkpoint import load_net1d, read_net1d_config
    from distill.distiller import load_teacher
    from edge_sdk.errors import LabelError

    ref = shared / "reference"
    official = torch.load(ref / "net1d_small_checkpoint.pth", weights_only=True)
    config = read_net1d_config(ref / "net1d_small_config.json")
    for name, obj, error, match in [
        ("list.pth", {"state_dict": [1, 2, 3]}, CheckpointError, "must map parameter names to tensors"),
        ("meta.pth", {**official, "meta": "x"}, CheckpointError, "'meta' is a str"),
        ("labels.pth", {**official, "labels": "foo"}, CheckpointError, "'labels' is a str"),
        ("names.pth", {**official, "labels": [1, 2]}, LabelError, "neither label names nor a label table"),
    ]:
        torch.save(obj, tmp_path / name)
        with pytest.raises(error, match=match):
            load_teacher(tmp_path / name, config)
    assert load_net1d(ref / "net1d_small_checkpoint.pth", config)[0] is not None


def test_the_cards_resampling_method_is_read(long_record, bundle_dir, tmp_path):
    import json
    import shutil

    from edge_sdk.errors import BundleError
    from edge_sdk.preprocessing import resample, resample_linear, resample_uniform

    x = long_record.signal_mv[:3600]
    assert np.array_equal(resample(x, 360, 500), resample_uniform(x, 360, 500))
    assert np.array_equal(resample(x, 360, 500, "official-stretched"), resample_linear(x, 360, 500))
    with pytest.raises(SignalError, match="unknown resampling method"):
        resample(x, 360, 500, "cubic")
    b = tmp_path / "b"
    shutil.copytree(bundle_dir, b)
    card = json.loads((b / "model_card.json").read_text())
    card["preprocessing"]["resampling"] = "official-stretched"
    (b / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="uniform-linear"):
        EcgStream(ReplaySource(long_record, speed=0), b)


def test_sigterm_during_a_bundle_build_leaves_no_half_built_folder(tmp_path, models_dir, monkeypatch):
    """A killed quantize (SIGTERM from `timeout` or a scheduler) left `.bundle.partial-PID` with model files."""
    import os
    import signal

    import quantize.build

    def killed_mid_build(*args, **kwargs):
        out = args[5]  # the staging folder
        (out / "student_fp32.onnx").write_bytes(b"half written")
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the build")

    monkeypatch.setattr(quantize.build, "_build", killed_mid_build)
    with pytest.raises(SystemExit) as e:
        main(["quantize", "--student", str(models_dir / "student_qat.pth"), "--qat-epochs", "0", "--limit", "3",
              "--no-tflite", "--calibration-windows", "8", "--out", str(tmp_path / "bundle")])
    assert e.value.code == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == [] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
