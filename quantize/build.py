"""Student checkpoint -> model bundle: ONNX fp32, ONNX int8 (QDQ), TFLite full-integer, model card.

The reference teacher is exported and quantized the same way and reported beside the student, to show
why distillation matters before int8.
"""
from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from distill.checkpoint import load_model
from distill.data import WindowSet
from distill.student import count_macs, count_params
from edge_sdk.bundle import CARD_FORMAT, CARD_VERSION, sha256_of, write_card
from edge_sdk.inference.onnx_backend import OnnxBackend
from edge_sdk.preprocessing import DEFAULT_CONFIG

from .fidelity import best_thresholds, compare
from .onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx
from .onnx_int8 import quantize_onnx_int8


def _log(msg: str) -> None:
    print(f"[quantize] {msg}", flush=True)


def _probs(backend, x: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([backend.predict(x[i:i + batch]) for i in range(0, len(x), batch)])


def build_bundle(student_path: str | Path, out_dir: str | Path, calibration: np.ndarray, test: WindowSet,
                 val: WindowSet | None = None, teacher_path: str | Path | None = None, tflite: bool = True,
                 hop_seconds: float = 5.0, calibration_method: str = "minmax", float_first_conv: bool = True) -> dict:
    """Write a bundle to ``out_dir`` and return its model card.

    ``calibration``: preprocessed windows (n, 5000) from training data; ``test``: held-out windows used
    for the fidelity figures; ``val``: windows for choosing per-label thresholds (default 0.5 each).
    A student fine-tuned with :mod:`quantize.qat` carries its input range in its checkpoint; the ONNX int8
    model and the TFLite model then quantize the input on that range. ``float_first_conv`` keeps the first
    convolution of the ONNX int8 student in float (the TFLite model is full-integer regardless).
    """
    t0 = time.time()
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    student, s_ckpt = load_model(student_path)
    meta = s_ckpt.get("meta") or {}
    activation = meta.get("activation", "softmax")
    labels = list(s_ckpt["labels"])
    files: dict[str, dict] = {}
    fidelity: dict[str, dict] = {}
    ridx, rlab = test.record_idx, test.record_labels()
    x_test = test.x.astype(np.float32)  # float16 cache -> model input, once

    _log("export student fp32 ONNX")
    export_onnx(student, out / "student_fp32.onnx", activation)
    input_range = (meta.get("qat") or {}).get("input_range")
    if input_range:
        calibration = np.clip(calibration, -input_range, input_range)
    _log(f"int8 QDQ with {len(calibration)} calibration windows")
    qparams = quantize_onnx_int8(out / "student_fp32.onnx", out / "student_int8.onnx", calibration, calibration_method,
                                 input_range=input_range, float_first_conv=float_first_conv)
    files["student_fp32.onnx"] = {"runtime": "onnxruntime", "precision": "fp32", "role": "student"}
    files["student_int8.onnx"] = {"runtime": "onnxruntime", "precision": "int8", "role": "student", "quantization": qparams}

    _log(f"fidelity on {len(test)} held-out windows")
    with torch.no_grad():
        torch_fp32 = torch.softmax(student(torch.from_numpy(x_test[:512])[:, None]), 1).numpy() \
            if activation == "softmax" else None
    s_int8_backend = OnnxBackend(out / "student_int8.onnx", threads=2)
    s_fp32 = _probs(OnnxBackend(out / "student_fp32.onnx", threads=2), x_test)
    s_int8 = _probs(s_int8_backend, x_test)
    if torch_fp32 is not None:
        fidelity["student_onnx_fp32_vs_torch"] = {"max_abs_prob_error": float(np.abs(torch_fp32 - s_fp32[:512]).max())}
    fidelity["student_onnx_int8_vs_fp32"] = compare(s_fp32, s_int8, ridx, rlab)

    if tflite:
        from edge_sdk.inference.tflite_backend import TFLiteBackend

        from .tflite_int8 import convert_tflite_int8

        _log("full-integer TFLite")
        tparams = convert_tflite_int8(student, activation, out / "student_int8.tflite", calibration)
        files["student_int8.tflite"] = {"runtime": "tflite", "precision": "int8", "role": "student", "quantization": tparams}
        s_tfl = TFLiteBackend(out / "student_int8.tflite", threads=2).predict(x_test)
        fidelity["student_tflite_int8_vs_fp32"] = compare(s_fp32, s_tfl, ridx, rlab)

    teacher_card: dict = {"identity": meta.get("teacher", {})}
    if teacher_path is not None:
        teacher, t_ckpt = load_model(teacher_path)
        t_act = (t_ckpt.get("meta") or {}).get("activation", "sigmoid")
        _log("teacher: export fp32 ONNX and int8 QDQ the same way")
        export_onnx(teacher, out / "teacher_fp32.onnx", t_act)
        tq = quantize_onnx_int8(out / "teacher_fp32.onnx", out / "teacher_int8.onnx", calibration, calibration_method,
                                float_first_conv=float_first_conv)
        files["teacher_fp32.onnx"] = {"runtime": "onnxruntime", "precision": "fp32", "role": "teacher"}
        files["teacher_int8.onnx"] = {"runtime": "onnxruntime", "precision": "int8", "role": "teacher", "quantization": tq}
        t_fp32 = _probs(OnnxBackend(out / "teacher_fp32.onnx", threads=2), x_test)
        t_int8 = _probs(OnnxBackend(out / "teacher_int8.onnx", threads=2), x_test)
        fidelity["teacher_onnx_int8_vs_fp32"] = compare(t_fp32, t_int8, ridx, rlab)
        fidelity["student_fp32_vs_teacher_fp32"] = compare(t_fp32, s_fp32, ridx, rlab)
        teacher_card.update({"params": count_params(teacher), "macs_per_window": count_macs(teacher),
                             "checkpoint": Path(teacher_path).name, "checkpoint_sha256": sha256_of(teacher_path),
                             "config": t_ckpt.get("config"), "width": (t_ckpt.get("meta") or {}).get("width")})

    thresholds = {n: 0.5 for n in labels}
    if val is not None and len(labels) == 4:
        v = _probs(s_int8_backend, val.x.astype(np.float32))
        thresholds = best_thresholds(v, val.record_idx, val.record_labels(), labels)

    card = {
        "format": CARD_FORMAT, "version": CARD_VERSION, "name": "ecg-edge-student",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "labels": labels, "label_vocabulary": "ECGFounder tasks.txt",
        "ecgfounder_vocab_index": (meta.get("teacher", {}).get("meta") or {}).get("ecgfounder_vocab_index")
        or [1, 5, None, None][:len(labels)],
        "sample_rate_hz": DEFAULT_CONFIG.fs_hz, "window_seconds": DEFAULT_CONFIG.window_seconds,
        "window_samples": DEFAULT_CONFIG.window_samples, "hop_seconds": hop_seconds,
        "preprocessing": DEFAULT_CONFIG.to_dict(),
        "input": {"name": INPUT_NAME, "shape": ["batch", 1, DEFAULT_CONFIG.window_samples], "dtype": "float32",
                  "layout": "z-scored ECG, 1 lead, 500 Hz", "tflite_shape": [1, DEFAULT_CONFIG.window_samples, 1]},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(labels)], "dtype": "float32", "activation": activation},
        "files": files, "thresholds": thresholds, "fidelity": fidelity, "teacher": teacher_card,
        "student": {"arch": s_ckpt.get("arch"), "config": s_ckpt.get("config"), "params": count_params(student),
                    "macs_per_window": count_macs(student), "checkpoint_sha256": sha256_of(student_path),
                    "val": meta.get("val"), "qat": meta.get("qat")},
        "evaluation": {"data": "Challenge 2017, project record-level test split (seed 2017)",
                       "n_records": int(len(test.records)), "n_windows": int(len(test))},
        "build_seconds": None,
    }
    card["build_seconds"] = round(time.time() - t0, 1)
    write_card(out, card)
    _log(f"bundle written to {out} in {card['build_seconds']} s")
    return card


def print_report(card: dict) -> None:
    """Human-readable fidelity and size table."""
    print("\nbundle sizes (bytes): " + ", ".join(f"{n}={f['bytes']:,}" for n, f in card["files"].items()))
    for k, v in card["fidelity"].items():
        figures = ", ".join(f"{kk}={vv:.4f}" if isinstance(vv, float) else f"{kk}={vv}" for kk, vv in v.items())
        print(f"{k}: {figures}")
