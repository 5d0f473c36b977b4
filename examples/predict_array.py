"""Predict with a bundle on a numpy array or a CSV file: resample to 500 Hz, cut 10-s windows every 5 s,
preprocess, run the int8 model, print per-window and record-level labels (card thresholds).

    python examples/predict_array.py --csv my_ecg.csv --fs 250        # one column of mV (or a time column)
    python examples/predict_array.py --npy ecg.npy --fs 130
    python examples/predict_array.py --wfdb ../shared/data/cinc2017/training2017/A00009

In your own code it is four lines:

    from edge_sdk.inference import open_backend
    from edge_sdk.windowing import record_windows
    probs = open_backend("bundles/default").predict(record_windows(signal_mv, fs_hz))   # (windows, labels)
"""
import argparse

import numpy as np

from edge_sdk.bundle import load_bundle
from edge_sdk.inference import open_backend
from edge_sdk.records import read_record
from edge_sdk.windowing import record_windows


def predict(signal_mv: np.ndarray, fs_hz: float, bundle_path: str, runtime: str = "onnxruntime") -> dict:
    bundle = load_bundle(bundle_path)
    windows = record_windows(signal_mv, fs_hz, hop_s=bundle.card["hop_seconds"], config=bundle.preprocessing)
    probs = open_backend(bundle, runtime=runtime).predict(windows)
    mean = probs.mean(0)
    thr = bundle.thresholds
    return {"labels": bundle.labels, "windows": probs,
            "record": {n: float(p) for n, p in zip(bundle.labels, mean)},
            "detected": [n for n, p in zip(bundle.labels, mean) if p >= thr[n]]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--npy", help=".npy file with one lead in mV")
    src.add_argument("--csv", help="CSV record (see edge_sdk.records.read_csv)")
    src.add_argument("--wfdb", help="WFDB record path without extension")
    ap.add_argument("--fs", type=float, default=None, help="sample rate in Hz (.npy; CSV without time column)")
    ap.add_argument("--bundle", default="bundles/default")
    ap.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "tflite"])
    a = ap.parse_args()
    if a.npy:
        if not a.fs:
            raise SystemExit("--npy needs --fs")
        x, fs = np.load(a.npy).astype(np.float64).ravel(), a.fs
    else:
        rec = read_record(a.csv or a.wfdb, fs_hz=a.fs)
        x, fs = rec.signal_mv, rec.fs_hz
    r = predict(x, fs, a.bundle, a.runtime)
    for i, p in enumerate(r["windows"]):
        print(f"window {i:3d} ({i * 5:4d} s): " + "  ".join(f"{n[:14]} {v:.2f}" for n, v in zip(r["labels"], p)))
    print("record: " + ", ".join(f"{n} {v:.3f}" for n, v in r["record"].items()))
    print("detected: " + (", ".join(r["detected"]) or "nothing above threshold"))
