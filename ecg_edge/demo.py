"""The main job (README's first command): bundle -> emulated Polar H10 stream of real ECG -> live
predictions -> benchmark table."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from edge_sdk.bundle import load_bundle
from edge_sdk.errors import BundleError
from edge_sdk.outputs import new_run_dir

from .stream_command import open_source, record_line, stream_predictions

#: The recipe of the committed bundle (paths relative to the file); the demo rebuilds a missing bundle with it.
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "default_bundle.json"


def ensure_bundle(path: str, run_dir: Path) -> None:
    """Load the bundle; build it with :data:`RECIPE` when it is missing (a broken one is an error)."""
    try:
        load_bundle(path)
        print(f"[demo] bundle {path}: checksums and model card verified")
    except BundleError as e:
        if Path(path, "model_card.json").exists():
            raise
        print(f"[demo] {e}\n[demo] building it with the recipe {RECIPE.name} ...")
        from quantize.recipe import QuantizeRecipe, run_recipe

        recipe = QuantizeRecipe.from_file(RECIPE, out=path, qat_out=str(run_dir / "student_qat.pth"))
        run_recipe(recipe)


def run_demo(a) -> int:
    t0 = time.time()
    run_dir = Path(a.out) if a.out else new_run_dir("demo")
    ensure_bundle(a.bundle, run_dir)
    bundle = load_bundle(a.bundle)
    card = bundle.card
    fid = card["fidelity"]["student_onnx_int8_vs_fp32"]
    auroc = ", ".join(f"{n} {v:.3f}" for n, v in (fid.get("auroc") or {}).items())
    print(f"[demo] student int8: {card['student']['params']:,} params, {card['student']['macs_per_window'] / 1e6:.1f} "
          f"MMAC/window, outputs {bundle.labels}; int8 vs fp32 max |dp| {fid['max_abs_prob_error']:.4f}"
          + (f"; held-out AUROC {auroc}" if auroc else ""))
    print(f"[demo] streaming MIT-BIH record {a.record} through an emulated Polar H10 (bumble + bleak), "
          f"{a.seconds:.0f} s of ECG at {a.speed:g}x\n")

    async def stream():
        async with open_source(None, True, None, a.record, a.speed) as src:
            return await stream_predictions(src, a.bundle, a.seconds, True)

    s = asyncio.run(stream())
    print(f"\n[demo] {s.prediction_count} windows, {s.samples_received} samples received, "
          f"sensor rate estimate {s.fs_estimate:.3f} Hz")
    if s.prediction_count:
        print(f"[demo] {record_line(s)}")
    print("latency per stage (ms):\n" + s.latency.table())
    from .bench import markdown_table, run_bench

    print("\n[demo] benchmark (quick settings; `ecg-edge bench` for the full run)")
    report = run_bench(a.bundle, None, str(run_dir), repeats=30, eval_limit=300, stream_records=4, stream_seconds=12.0,
                       emulated_count=4, force=True)
    print(markdown_table(report))
    print(f"[demo] done in {time.time() - t0:.0f} s; results in {run_dir}/ (results.json, results.md, latency.png)")
    return 0
