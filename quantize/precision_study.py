"""Which tensors int8 hurts, and what other precisions would buy: the measurement behind the bundle's
choice of int8 per tensor.

``python -m quantize.precision_study --bundle bundles/default`` measures, on the Challenge 2017 validation
windows (never the test split), with the bundle's student and calibration recipe:

* per activation tensor, the SQNR (dB) of the int8 model's tensor against the float model's, with
  onnxruntime's QDQ debugging tools (:mod:`onnxruntime.quantization.qdq_loss_debug`);
* the max / p99 absolute probability error and single-thread latency of variants: everything int8; the
  first convolution float; the shipped choice (the card's ``float_ops``, chosen by
  :mod:`quantize.precision_plan`); every convolution float (the Adds, the head and the tensors between
  the convolutions stay 8-bit); all activations 16-bit (int8 weights); for a bundle built with channel
  equalization (:mod:`quantize.equalize`), the shipped choice without it (and at the strengths of
  ``--sweep``); for a bundle built with activation bounds (:mod:`quantize.activation_bounds`), the shipped
  choice without them, measured against its own unbounded fp32 model; for a bundle whose float student
  clips its input (:func:`quantize.activation_bounds.bound_input`), the shipped choice without the clip,
  against its own unclipped fp32 model (the other variants are measured against the bundle's fp32 file);
  and on TFLite full-integer, the
  shipped choice and 16x8. (With every part float nothing is left to quantize: that is the fp32 row.)
* with ``--calibrations N:METHOD,...``, the shipped float parts with ONNX Runtime calibrated on N training
  windows (drawn as the bundle's were) by METHOD (``minmax``, ``entropy``, ``percentile``) instead of the
  recipe's; the float student (and its channel equalization) stays the bundle's.

It prints a Markdown table; nothing is written unless ``--out`` is given.
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx

from edge_sdk.bundle import load_bundle
from edge_sdk.errors import EdgeSDKError
from edge_sdk.inference.onnx_backend import OnnxBackend

from .activation_bounds import bound_input
from .build import _probs, float_student
from .equalize import check_strength
from .float_ops import compact, onnx_float_nodes, sort_ops
from .onnx_export import export_onnx
from .onnx_int8 import CALIBRATION_METHODS, clip_input, quantize_onnx_int8
from .precision_plan import latency_ms


def onnx_figures(path: Path, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Probabilities on ``x`` (two threads) and single-thread latency of one window, ms."""
    return _probs(OnnxBackend(path, threads=2), x), latency_ms(OnnxBackend(path, threads=1).predict, x[0])


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


def study(bundle: str | Path, n_calibration: int = 256, n_sqnr: int = 200, tflite: bool = True,
          limit: int | None = None, sweep: Sequence[float] = (),
          calibrations: Sequence[tuple[int, str]] = ()) -> dict:
    """Measure the variants on the validation windows (the first ``limit`` records' windows when given);
    ``sweep``: channel-equalization strengths in [0, 1] to measure with the shipped float parts too;
    ``calibrations``: (windows, method) pairs to calibrate ONNX Runtime with, the shipped float parts kept."""
    from quantize.recipe import sample_calibration

    b = load_bundle(bundle)
    recipe = b.card.get("recipe") or {}
    val, train, calib, input_range = bundle_windows(b.card, limit, n_calibration)
    shipped_method = recipe.get("calibration_method", "minmax")
    fp32 = Path(bundle) / "student_fp32.onnx"
    ref = _probs(OnnxBackend(fp32, threads=2), val)
    rows: list[dict] = []
    out = {"data": f"Challenge 2017 validation split, {len(val):,} windows", "variants": rows}

    def row(name: str, probs: np.ndarray, ms: float | None, reference: np.ndarray | None = None) -> None:
        err = np.abs(probs - (ref if reference is None else reference)).max(1)
        rows.append({"variant": name, "max_abs_prob_error": float(err.max()),
                     "p99_abs_prob_error": float(np.quantile(err, 0.99)), "windows_over_0.03": float((err > 0.03).mean()),
                     "latency_ms_1_thread": ms})

    row("fp32 (reference)", ref, latency_ms(OnnxBackend(fp32, threads=1).predict, val[0]))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        q = b.card["files"]["student_int8.onnx"]["quantization"]
        # a card written before op ids names its float convolutions by index
        shipped = q.get("float_ops") or [f"conv{i}" for i in q.get("float_convs", [0])]
        convs = [op for op in sort_ops(onnx_float_nodes(onnx.load(str(fp32)).graph)) if op.startswith("conv")]
        variants = {"int8 everywhere (input too)": ("all8", [], 8),
                    "int8, first convolution float": ("first", ["conv0"], 8),
                    f"int8, float: {compact(shipped)} (shipped)": ("ship", shipped, 8),
                    "every convolution float (the tensors between them 8-bit)": ("convs32", convs, 8),
                    "16-bit activations, int8 weights (ONNX Runtime)": ("a16", ["conv0"], 16)}
        if list(shipped) == ["conv0"]:
            del variants["int8, first convolution float"]
        for name, (stem, float_ops, bits) in variants.items():
            path = work / f"{stem}.onnx"
            quantize_onnx_int8(fp32, path, calib, input_range=input_range, float_ops=float_ops,
                               activation_bits=bits)
            row(name, *onnx_figures(path, val))
        for n, method in calibrations:
            other = clip_input(sample_calibration(train, n, recipe.get("seed", 0)), input_range)
            path = work / "calibration.onnx"
            quantize_onnx_int8(fp32, path, other, method, input_range=input_range, float_ops=shipped)
            row(f"int8, float: {compact(shipped)}, calibrated on {len(other):,} windows ({method}; shipped: "
                f"{len(calib):,}, {shipped_method})", *onnx_figures(path, val))
        out["tensor_sqnr_db"] = tensor_sqnr(fp32, work / "all8.onnx", val[:n_sqnr], work)
        strength = (b.card["student"].get("channel_equalization") or {}).get("strength", 0.0)
        bounded = bool(b.card["student"].get("activation_bounds"))
        activation = b.card["output"]["activation"]
        # what the equalization bought: the shipped float parts on the student as trained, and at other strengths
        others = sorted({0.0, *sweep} - {strength})
        # the torch student (from the recipe's checkpoint) only where a variant needs it
        clipped = bool(b.card["student"].get("input_clip"))
        student = _bundle_student(Path(bundle), b.card) if others or tflite or bounded or clipped else None

        def made(model, eq: float = strength, bounds: bool = bounded):
            """``model`` equalized at ``eq`` and bounded on its own calibrated ranges, in the build's order
            (:func:`quantize.build.float_student`; the bundle's input clip is already on ``model``)."""
            return float_student(model, calib, channel_equalization=eq, activation_bounds=bounds,
                                 log=lambda m: None)["final"]

        def against_own_fp32(model, stem: str, what: str) -> None:
            """The shipped float parts on ``model``, measured against ``model``'s own fp32 file."""
            plain = export_onnx(model, work / f"{stem}_fp32.onnx", activation)
            quantize_onnx_int8(plain, work / f"{stem}.onnx", calib, input_range=input_range, float_ops=shipped)
            row(f"int8, float: {compact(shipped)}, {what}", *onnx_figures(work / f"{stem}.onnx", val),
                reference=_probs(OnnxBackend(plain, threads=2), val))
        if clipped:  # what the input clip bought: the shipped float parts on the student without it
            model = copy.deepcopy(student)
            model.input_bound = None
            against_own_fp32(made(model), "unclipped", "without the input clip (against its own fp32)")
        if bounded:  # what the bounds bought: the shipped float parts on the unbounded student
            against_own_fp32(made(student, bounds=False), "unbounded",
                             "without activation bounds (against its own fp32)")
        for other in others:
            against_own_fp32(made(student, other), "plain", f"channel equalization {other:g}" if other else
                             "without channel equalization")
        if tflite:
            # as the bundle's files were made
            student = made(student)
            for name, bits, float_ops in [("TFLite int8, full-integer", 8, []),
                                          (f"TFLite int8, float: {compact(shipped)} (shipped)", 8, shipped),
                                          ("TFLite 16x8 (16-bit activations, int8 weights)", 16, [])]:
                row(name, *_tflite(student, b.card, calib, val, work, bits, float_ops))
    return out


def card_input_range(card: dict) -> float | None:
    """The z-score range the bundle's int8 ONNX file quantizes its input on (the QAT student's), None where
    the input was calibrated like any tensor (a student without QAT)."""
    return (card["files"].get("student_int8.onnx", {}).get("quantization") or {}).get("input_range")


def bundle_windows(card: dict, limit: int | None = None, n_calibration: int = 256):
    """The windows a bundle's int8 files are measured with, never the test split: the Challenge 2017 validation
    windows (the first ``limit`` records' when given) as float32 ``(n, 5000)``; the recipe's training split
    (with its chest-lead windows) as a :class:`distill.data.WindowSet`; the calibration windows drawn from it
    as the bundle's were (count and seed of the card's recipe, clipped as the build clipped them); and the input
    range (:func:`card_input_range`)."""
    from distill.data import DataSpec, cinc2017_windows, load_split
    from quantize.recipe import sample_calibration

    recipe = card.get("recipe") or {}
    input_range = card_input_range(card)
    val = cinc2017_windows("val", limit=limit).x.astype(np.float32)
    train = load_split(DataSpec.from_dict(recipe.get("data")), "train")
    calib = clip_input(sample_calibration(train, recipe.get("calibration_windows", n_calibration),
                                          recipe.get("seed", 0)), input_range)
    return val, train, calib, input_range


def _bundle_student(bundle: Path, card: dict):
    """The torch student the bundle was built from (the recipe's QAT checkpoint, else models/<checkpoint>), with
    the bundle's input clip where it has one."""
    from distill.checkpoint import load_model

    ckpt = card["student"]["checkpoint"]
    recipe_qat = (card.get("recipe") or {}).get("qat_out")
    path = Path(recipe_qat) if recipe_qat and Path(recipe_qat).name == ckpt else bundle.parent.parent / "models" / ckpt
    student = load_model(path)[0]
    clip = card["student"].get("input_clip")
    return bound_input(student, clip["range"][1]) if clip else student


def _tflite(student, card: dict, calib: np.ndarray, val: np.ndarray, work: Path, bits: int,
            float_ops) -> tuple[np.ndarray, float]:
    from edge_sdk.inference.tflite_backend import TFLiteBackend

    from .tflite_int8 import convert_tflite_int8

    model = work / "model.tflite"
    convert_tflite_int8(student, card["output"]["activation"], model, calib, activation_bits=bits,
                        float_ops=float_ops)
    return TFLiteBackend(model, threads=2).predict(val), latency_ms(TFLiteBackend(model, threads=1).predict, val[0])


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
    p.add_argument("--no-tflite", action="store_true", help="skip the TFLite variants (TensorFlow conversions)")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N validation records (a quick look) [default: all]")
    p.add_argument("--sweep", default="", metavar="S,S,...",
                   help="channel-equalization strengths in [0, 1] to measure with the shipped float parts as "
                        "well, e.g. 0.25,0.5,0.75,1 [default: none; the bundle's own strength and 0 always]")
    p.add_argument("--calibrations", default="", metavar="N:METHOD,...",
                   help="ONNX Runtime calibrations to measure with the shipped float parts, e.g. "
                        "1024:minmax,256:percentile (methods: minmax, entropy, percentile) [default: none]")
    p.add_argument("--out", default=None, help="also write the result as JSON here (refused if it exists)")
    a = p.parse_args(argv)
    try:
        sweep = [check_strength(v) for v in a.sweep.split(",") if v.strip()]
    except EdgeSDKError as e:
        p.error(f"--sweep: {e}")
    calibrations = []
    for item in filter(None, (v.strip() for v in a.calibrations.split(","))):
        n, _, method = item.partition(":")
        if not n.isdigit() or int(n) < 1 or method not in CALIBRATION_METHODS:
            p.error(f"--calibrations: {item!r} is not N:METHOD with N a whole number of windows >= 1 and METHOD "
                    f"one of {', '.join(CALIBRATION_METHODS)}")
        calibrations.append((int(n), method))
    return report(lambda: study(a.bundle, tflite=not a.no_tflite, limit=a.limit, sweep=sweep,
                                calibrations=calibrations), markdown, a.out, "study result")


def report(measure: Callable[[], dict], to_markdown: Callable[[dict], str], out: str | None, what: str) -> int:
    """A measurement command's end: refuse an existing ``out`` before any work, run ``measure``, print its
    Markdown table and write its JSON to ``out`` (when given). A named :class:`EdgeSDKError` (no bundle, no
    data) is printed as ``error: ...`` with exit status 2, not a traceback."""
    import sys

    from edge_sdk.outputs import check_new_file

    try:
        if out:
            check_new_file(out, False, what)
        r = measure()
    except EdgeSDKError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(to_markdown(r))
    if out:
        Path(out).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
