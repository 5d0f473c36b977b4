"""Latency benchmark of a bundle's model files on real preprocessed windows: p50/p95/p99 per 10-s window
(batch 1) and the preprocessing time, on this machine.

    python examples/benchmark_latency.py --record ../shared/data/cinc2017/training2017/A00009 --repeats 200
    python examples/benchmark_latency.py --threads 2

For the full benchmark (teacher, throughput, memory, AUROC, streaming) use `ecg-edge bench`.
"""
import argparse
import time

import numpy as np

from edge_sdk.bundle import load_bundle
from edge_sdk.inference import open_backend
from edge_sdk.preprocessing import preprocess_window, resample_uniform
from edge_sdk.records import read_record


def percentiles(ms: list[float]) -> str:
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return f"p50 {p50:7.3f}  p95 {p95:7.3f}  p99 {p99:7.3f} ms"


def main(a) -> dict:
    bundle = load_bundle(a.bundle)
    rec = read_record(a.record)
    raw = resample_uniform(rec.signal_mv, rec.fs_hz, bundle.preprocessing.fs_hz)[:bundle.card["window_samples"]]
    pre_ms = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        window = preprocess_window(raw, bundle.preprocessing)
        pre_ms.append((time.perf_counter() - t) * 1e3)
    print(f"{'preprocessing (numpy/scipy)':<28} {percentiles(pre_ms)}")
    results = {"preprocess": float(np.median(pre_ms))}
    for name in bundle.card["files"]:
        backend = open_backend(bundle, file_name=name, threads=a.threads)
        for _ in range(5):
            backend.predict(window[None])  # warm-up
        ms = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            backend.predict(window[None])
            ms.append((time.perf_counter() - t) * 1e3)
        print(f"{name:<28} {percentiles(ms)}  ({bundle.card['files'][name]['bytes'] / 1024:.0f} KB)")
        results[name] = float(np.median(ms))
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="bundles/default")
    ap.add_argument("--record", default=None, help="record for the window (default: Challenge 2017 A00009)")
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.record is None:
        from edge_sdk.paths import shared_dir

        args.record = str(shared_dir() / "data" / "cinc2017" / "training2017" / "A00009")
    main(args)
