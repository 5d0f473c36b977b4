"""The main job (README's first command): bundle -> emulated Polar H10 stream of real ECG -> live
predictions -> benchmark table."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from edge_sdk.bundle import load_bundle
from edge_sdk.errors import BundleError

from .streaming import open_source, stream_predictions

STUDENT = "models/student.pth"
TEACHER = "models/reference_teacher.pth"


def ensure_bundle(path: str) -> None:
    """Load the bundle; build it from the repository's checkpoints when it is missing."""
    try:
        load_bundle(path)
        print(f"[demo] bundle {path}: checksums and model card verified")
    except BundleError as e:
        if Path(path, "model_card.json").exists():
            raise
        print(f"[demo] {e}\n[demo] building it from {STUDENT} and {TEACHER} ...")
        from distill.data import cinc2017_windows
        from quantize.build import build_bundle

        import numpy as np

        train = cinc2017_windows("train")
        calib = train.x[np.random.default_rng(0).choice(len(train), 256, replace=False)].astype(np.float32)
        build_bundle(STUDENT, path, calib, cinc2017_windows("test"), cinc2017_windows("val"), TEACHER)


def run_demo(a) -> int:
    t0 = time.time()
    ensure_bundle(a.bundle)
    card = load_bundle(a.bundle).card
    fid = card["fidelity"]["student_onnx_int8_vs_fp32"]
    print(f"[demo] student int8: {card['student']['params']:,} params, {card['student']['macs_per_window'] / 1e6:.1f} "
          f"MMAC/window; int8 vs fp32 max |dp| {fid['max_abs_prob_error']:.4f}, AF AUROC {fid['af_auroc']:.4f}")
    print(f"[demo] streaming MIT-BIH record {a.record} through an emulated Polar H10 (bumble + bleak), "
          f"{a.seconds:.0f} s of ECG at {a.speed:g}x\n")

    async def stream():
        async with open_source(None, True, None, a.record, a.speed) as src:
            return await stream_predictions(src, a.bundle, a.seconds, True)

    s = asyncio.run(stream())
    print(f"\n[demo] {s.prediction_count} windows, {s.samples_received} samples received, "
          f"sensor rate estimate {s.fs_estimate:.3f} Hz")
    print("latency per stage (ms):\n" + s.latency.table())
    from .bench import markdown_table, run_bench

    print("\n[demo] benchmark (quick settings; `ecg-edge bench` for the full run)")
    report = run_bench(a.bundle, TEACHER, a.out, repeats=30, eval_limit=300, stream_records=4, stream_seconds=12.0,
                       emulated_count=4)
    print(markdown_table(report))
    print(f"[demo] done in {time.time() - t0:.0f} s; results in {a.out}/ (results.json, results.md, latency.png)")
    return 0
