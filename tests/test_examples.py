"""Every script in examples/ runs, as a subprocess with short settings, on real data (the BLE ones through
the emulated Polar H10)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TESTED = {"replay_record.py", "polar_h10.py", "emulated_h10.py", "predict_array.py", "distill_labels.py",
          "gateway.py", "benchmark_latency.py"}


def run(script: str, *args, timeout: int = 240) -> str:
    r = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, cwd=REPO)
    assert r.returncode == 0, f"{script} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_every_example_has_a_header_and_a_test():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == TESTED
    for name in scripts:
        text = (EXAMPLES / name).read_text()
        assert text.startswith('"""') and "python examples/" + name in text, name  # header with usage


def test_replay_record(shared):
    out = run("replay_record.py", shared / "data/cinc2017/training2017/A00009", "--speed", "0", "--duration", "25")
    lines = [ln for ln in out.splitlines() if " s  " in ln]
    assert len(lines) == 3 and "3 windows" in out and "inference" in out  # windows end at 10, 15, 20 s
    assert "record: ATRIAL FIBRILLATION (logistic rule over 3 windows)" in out  # A00009 is an AF record


def test_predict_on_array_and_csv(shared, tmp_path):
    from edge_sdk.inference import open_backend
    from edge_sdk.records import read_record
    from edge_sdk.windowing import record_windows

    rec = read_record(shared / "data/cinc2017/training2017/A00009")
    np.save(tmp_path / "ecg.npy", rec.signal_mv)
    out = run("predict_array.py", "--npy", tmp_path / "ecg.npy", "--fs", rec.fs_hz)
    n = len(record_windows(rec.signal_mv, rec.fs_hz))
    assert out.count("window ") == n and "detected:" in out
    mean = open_backend(REPO / "bundles/default").predict(record_windows(rec.signal_mv, rec.fs_hz)).mean(0)
    assert f"ATRIAL FIBRILLATION {mean[1]:.3f}" in out  # A00009 is an AF record
    np.savetxt(tmp_path / "ecg.csv", rec.signal_mv[:, None], header="ecg_mv", comments="", fmt="%.6f")
    out_csv = run("predict_array.py", "--csv", tmp_path / "ecg.csv", "--fs", rec.fs_hz)
    assert out_csv.count("window ") == n


def test_emulated_h10():
    out = run("emulated_h10.py", "--record", "201", "--seconds", "12", "--speed", "10")
    assert "ATRIAL FIBRILLATION" in out and "samples, sensor rate" in out


def test_polar_h10_records_to_a_file_through_the_emulator(tmp_path):
    from edge_sdk.records import read_record

    csv = tmp_path / "h10.csv"
    out = run("polar_h10.py", "--emulate", "--out", csv, "--duration", "12", "--speed", "10")
    assert "samples recorded" in out
    rec = read_record(csv)
    assert rec.signal_mv.shape[0] >= 12 * 130 and abs(rec.fs_hz - 130) < 1.5 and rec.time_s is not None


def test_gateway_runs_several_sensors_in_one_process():
    out = run("gateway.py", "--emulate", "2", "--seconds", "12", "--speed", "10")
    assert "[h10-0:mitdb/201]" in out and "[h10-1:mitdb/100]" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("windows per sensor:") and last.count(" 2") >= 2


def test_benchmark_latency():
    out = run("benchmark_latency.py", "--repeats", "5")
    assert "preprocessing" in out and "student_int8.onnx" in out and "student_int8.tflite" in out


def test_distill_the_labels_you_need(models_dir, tmp_path):
    out_path = tmp_path / "student.pth"
    out = run("distill_labels.py", "--teacher", models_dir / "reference_teacher.pth", "--labels",
              "ATRIAL FIBRILLATION,NOISE", "--limit", "16", "--epochs", "1", "--samples-per-epoch", "64",
              "--threads", "1", "--out", out_path, timeout=400)
    ck = torch.load(out_path, weights_only=False)
    assert ck["state_dict"]["head.bias"].shape == (2,)
    assert "['ATRIAL FIBRILLATION', 'NOISE']" in out
