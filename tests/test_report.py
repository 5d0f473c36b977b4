"""`ecg-edge stream ... --report FILE` draws the session: ECG strip, labels per window, quality flags, gaps and
latency. Checked on a real record replayed with a 3-s gap in its timestamps."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_stream_report_png_and_its_data(shared, tmp_path):
    from edge_sdk.records import read_record

    rec = read_record(shared / "data/cinc2017/training2017/A00009")  # 30 s of atrial fibrillation at 300 Hz
    t = np.arange(rec.signal_mv.shape[0]) / rec.fs_hz
    t[t >= 15.0] += 3.0  # the sensor lost 3 s of signal after 15 s
    csv = tmp_path / "gap.csv"
    np.savetxt(csv, np.c_[t, rec.signal_mv], delimiter=",", header="time_s,ecg_mv", comments="", fmt="%.6f")
    png = tmp_path / "session.png"
    r = subprocess.run([sys.executable, "-m", "ecg_edge", "stream", "--replay", str(csv), "--speed", "0",
                        "--report", str(png)], capture_output=True, text=True, timeout=240, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    printed = [ln for ln in r.stdout.splitlines() if "latency: end-to-end" in ln]
    data = json.loads(Path(f"{png}.json").read_text())
    # the data the plot was drawn from
    assert data["samples"] == rec.signal_mv.shape[0] and abs(data["fs_hz"] - 300) < 1
    assert len(data["windows"]) == len(printed) == 2  # one 10-s window each side of the gap (15 s = 1 window)
    assert len(data["gaps"]) == 1 and abs(data["gaps"][0][0] - 15.0) < 0.01 and abs(data["gaps"][0][1] - 18.0) < 0.01
    for w in data["windows"]:
        assert not (w["start_s"] < data["gaps"][0][0] < w["end_s"])  # no window spans the gap
        assert set(w["probabilities"]) == set(data["labels"]) and w["latency_ms"]["end_to_end"] > 0
    assert any("ATRIAL FIBRILLATION" in w["detected"] for w in data["windows"])
    assert data["signal_s"][1] > 32.9
    # the picture: its size, not blank, the gap shaded red, the ECG drawn in black
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert img.shape[:2] == (800, 1400)
    rgb = img[..., :3]
    assert (rgb.mean(-1) < 0.95).mean() > 0.03  # not blank
    pink = (rgb[..., 0] > 0.9) & (rgb[..., 1] > 0.6) & (rgb[..., 1] < 0.8) & (rgb[..., 2] > 0.6) & (rgb[..., 2] < 0.8)
    assert pink.sum() > 1000  # the gap
    assert (rgb.max(-1) < 0.2).sum() > 2000  # the ECG trace
