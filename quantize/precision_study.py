"""Which tensors int8 hurts, and what other precisions would buy: the measurement behind the bundle's
choice of int8 per tensor.

``python -m quantize.precision_study --bundle bundles/default`` measures, on the Challenge 2017 validation
windows (never the test split), with the bundle's student and calibration recipe:

* per activation tensor, the SQNR (dB) of the int8 model's tensor against the float model's, with
  onnxruntime's QDQ debugging tools (:mod:`onnxruntime.quantization.qdq_loss_debug`);
* the max / p99 absolute probability error and single-thread latency of variants: everything int8; the
  shipped choice (first convolution float); all activations 16-bit (int8 weights); and TFLite 16x8.

It prints a Markdown table; nothing is written unless ``--out`` is given.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_sdk.bundle import load_bundle


def _session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def onnx_probs(path: str | Path, x: np.ndarray, batch: int = 256) -> np.ndarray:
    s = _session(path, threads=2)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + batch, None]})[0] for i in range(0, len(x), batch)])


def latency_ms(path: str | Path, window: np.ndarray, runs: int = 200) -> float:
    """Median single-thread latency of one window, ms."""
    s = _session(path)
    name = s.get_inputs()[0].name
    one = window[None, None].astype(np.float32)
    for _ in range(20):
        s.run(None, {name: one})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s.run(None, {name: one})
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def quantize_variant(fp32: Path, out: Path, calib: np.ndarray, input_range: float, float_first_conv: bool,
                     act16: bool = False) -> Path:
    """The bundle's ONNX Runtime QDQ recipe, optionally with every activation at 16 bits."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .onnx_int8 import WindowReader

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
    g = onnx.load(str(pre)).graph
    exclude = [n.name for n in g.node if n.op_type in ("Softmax", "Sigmoid") and n.output[0] == g.output[0].name]
    if float_first_conv:
        exclude += [n.name for n in g.node if n.op_type == "Conv"][:1]
    overrides = {g.input[0].name: [{"rmin": np.array(-input_range, np.float32), "rmax": np.array(input_range, np.float32)}]}
    extra = {}
    if act16:
        for n in g.node:
            if n.op_type in ("Conv", "Add", "Relu") and n.name not in exclude:
                overrides.setdefault(n.output[0], [{}])[0]["quant_type"] = QuantType.QUInt16
        extra["UseQDQContribOps"] = True
    quantize_static(str(pre), str(out), WindowReader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
                    extra_options={"TensorQuantOverrides": overrides, **extra})
    return out


def tensor_sqnr(fp32: Path, int8: Path, x: np.ndarray, work: Path) -> dict[str, float]:
    """SQNR (dB) of each activation tensor of ``int8`` against ``fp32`` on windows ``x`` (n, 5000)."""
    from onnxruntime.quantization import qdq_loss_debug as dbg

    from .onnx_int8 import WindowReader

    fa, qa = work / "fp32_aug.onnx", work / "int8_aug.onnx"
    dbg.modify_model_output_intermediate_tensors(str(fp32), str(fa))
    dbg.modify_model_output_intermediate_tensors(str(int8), str(qa))
    match = dbg.create_activation_matching(dbg.collect_activations(str(qa), WindowReader(x)),
                                           dbg.collect_activations(str(fa), WindowReader(x)))
    return {k: float(v["xmodel_err"]) for k, v in dbg.compute_activation_error(match).items()}


def study(bundle: str | Path, n_calibration: int = 256, n_sqnr: int = 200, tflite16: bool = True) -> dict:
    from distill.data import cinc2017_windows
    from quantize.qat import INPUT_RANGE
    from quantize.recipe import sample_calibration

    b = load_bundle(bundle)
    recipe = b.card.get("recipe") or {}
    val = cinc2017_windows("val").x.astype(np.float32)
    calib = np.clip(sample_calibration(cinc2017_windows("train"), n_calibration, recipe.get("seed", 0)),
                    -INPUT_RANGE, INPUT_RANGE)
    fp32 = Path(bundle) / "student_fp32.onnx"
    ref = onnx_probs(fp32, val)
    rows: list[dict] = []
    out = {"data": f"Challenge 2017 validation split, {len(val)} windows", "variants": rows}

    def row(name: str, probs: np.ndarray, ms: float | None) -> None:
        err = np.abs(probs - ref).max(1)
        rows.append({"variant": name, "max_abs_prob_error": float(err.max()),
                     "p99_abs_prob_error": float(np.quantile(err, 0.99)), "windows_over_0.03": float((err > 0.03).mean()),
                     "latency_ms_1_thread": ms})

    row("fp32 (reference)", ref, latency_ms(fp32, val[0]))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        all8 = quantize_variant(fp32, work / "all8.onnx", calib, INPUT_RANGE, float_first_conv=False)
        row("int8 everywhere (input too)", onnx_probs(all8, val), latency_ms(all8, val[0]))
        ship = quantize_variant(fp32, work / "ship.onnx", calib, INPUT_RANGE, float_first_conv=True)
        row("int8, first convolution float (shipped)", onnx_probs(ship, val), latency_ms(ship, val[0]))
        a16 = quantize_variant(fp32, work / "a16.onnx", calib, INPUT_RANGE, float_first_conv=True, act16=True)
        row("16-bit activations, int8 weights (ONNX Runtime)", onnx_probs(a16, val), latency_ms(a16, val[0]))
        out["tensor_sqnr_db"] = tensor_sqnr(fp32, all8, val[:n_sqnr], work)
        if tflite16:
            row(*_tflite_16x8(Path(bundle), b.card, calib, val))
    return out


def _tflite_16x8(bundle: Path, card: dict, calib: np.ndarray, val: np.ndarray) -> tuple[str, np.ndarray, float]:
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from distill.checkpoint import load_model
    from .tflite_int8 import keras_student

    ckpt = card["student"]["checkpoint"]
    recipe_qat = (card.get("recipe") or {}).get("qat_out")
    path = Path(recipe_qat) if recipe_qat and Path(recipe_qat).name == ckpt else bundle.parent.parent / "models" / ckpt
    student, _ = load_model(path)
    conv = tf.lite.TFLiteConverter.from_keras_model(keras_student(student.eval(), card["output"]["activation"]))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([w.reshape(1, -1, 1)] for w in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    it = Interpreter(model_content=conv.convert(), num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    probs, times = [], []
    for w in val:
        it.set_tensor(i["index"], w.reshape(1, -1, 1))
        t0 = time.perf_counter()
        it.invoke()
        times.append(time.perf_counter() - t0)
        probs.append(it.get_tensor(o["index"]).copy())
    return "TFLite 16x8 (16-bit activations, int8 weights)", np.concatenate(probs), 1e3 * float(np.median(times))


def markdown(result: dict) -> str:
    lines = [f"On {result['data']}:", "", "| variant | max abs prob. error | p99 | windows > 0.03 | ms / window (1 thread) |",
             "|---|---:|---:|---:|---:|"]
    for r in result["variants"]:
        ms = "n/a" if r["latency_ms_1_thread"] is None else f"{r['latency_ms_1_thread']:.2f}"
        lines.append(f"| {r['variant']} | {r['max_abs_prob_error']:.3f} | {r['p99_abs_prob_error']:.3f} | "
                     f"{100 * r['windows_over_0.03']:.1f} % | {ms} |")
    s = result["tensor_sqnr_db"]
    lines += ["", f"Per-tensor SQNR of the all-int8 model against float ({len(s)} tensors): "
                  f"{min(s.values()):.1f} to {max(s.values()):.1f} dB, median {np.median(list(s.values())):.1f} dB."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m quantize.precision_study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="bundles/default", help="bundle folder [default: bundles/default]")
    p.add_argument("--no-tflite", action="store_true", help="skip the TFLite 16x8 variant (slow reference kernels)")
    p.add_argument("--out", default=None, help="also write the result as JSON here (refused if it exists)")
    a = p.parse_args(argv)
    from edge_sdk.outputs import check_new_file

    if a.out:
        check_new_file(a.out, False, "study result")
    r = study(a.bundle, tflite16=not a.no_tflite)
    print(markdown(r))
    if a.out:
        Path(a.out).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
