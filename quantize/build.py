"""Student checkpoint -> app bundle: ONNX fp32, ONNX int8 (QDQ), TFLite int8, model card.

A bundle holds what an app ships: the student's model files and ``model_card.json``. The card carries the
student's label table (per-label thresholds chosen on labeled validation data where there is some), fidelity
of each int8 file against the float model, and the teacher's identity and comparison figures (the teacher
runs in torch for those). The teacher's own ONNX files are added only with ``include_teacher``.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from distill.checkpoint import load_model
from distill.chest_lead import chest_lead_report, chest_summary
from distill.data import WindowSet
from distill.distiller import Teacher, activate
from distill.labels import checkpoint_label_table
from distill.record_rule_fit import check_record_rule, check_record_rule_data, fit_record_rule, rule_example
from distill.student import count_macs, count_params
from distill.torch_dataset import predict
from edge_sdk.bundle import CARD_FORMAT, CARD_SCHEMA_VERSION, CARD_VERSION, sha256_of, write_card
from edge_sdk.errors import ConfigError
from edge_sdk.inference.onnx_backend import OnnxBackend
from edge_sdk.labels import LabelTable
from edge_sdk.outputs import check_new_dir, replace_dir, staging_dir
from edge_sdk.preprocessing import DEFAULT_CONFIG
from edge_sdk.record_rule import RecordRule

from .activation_bounds import bound_activations, bound_input, bounds_effect, check_boundable
from .bundle_readme import README_NAME, write_bundle_readme
from .conformance import conformance_data_available, preprocessing_spec, write_conformance
from .equalize import check_strength, equalize_channels, stage_blocks
from .fidelity import choose_thresholds, compare, measuring_machine
from .mobile import convert_to_ort, finish_tflite, label_onnx
from .onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx
from .onnx_int8 import clip_input, quantize_onnx_int8


def _log(msg: str) -> None:
    print(f"[quantize] {msg}", flush=True)


def _probs(backend, x: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([backend.predict(x[i:i + batch]) for i in range(0, len(x), batch)])


class SelectOutputs(nn.Module):
    """A model restricted to some of its outputs (the student's labels), in the student's order."""

    def __init__(self, model: nn.Module, indices: list[int]):
        super().__init__()
        self.model = model
        self.register_buffer("indices", torch.tensor(indices, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).index_select(1, self.indices)


def teacher_probabilities(teacher: Teacher, names: list[str], x: np.ndarray) -> np.ndarray:
    """Teacher probabilities (torch, fp32) of the outputs ``names`` on windows ``x`` (n, 5000)."""
    sel = teacher.labels.indices(names)
    logits = predict(teacher.model, x, desc="teacher on held-out windows")[:, sel]
    return activate(logits, teacher.labels.activation)


def float_student(student: nn.Module, calibration: np.ndarray, input_range: float | None = None,
                  input_clip: bool = False, channel_equalization: float = 0.0, activation_bounds: bool = False,
                  log=_log) -> dict:
    """The float student the bundle's model files are made from, in the build's order: the input clipped to
    +-``input_range`` (z-scores; ``input_clip``), channels equalized at strength ``channel_equalization``, then
    activations bounded to their ranges on ``calibration`` ((n, 5000) windows, clipped as the int8 input is).
    Each step makes a copy. Returns ``{"final": model, "trained", "clipped", "unbounded": the model before and
    after the input clip and before the bounds (None where a step is off), "equalization", "bounds": the steps'
    reports or None}``."""
    made: dict = {"trained": student, "clipped": None, "unbounded": None, "equalization": None, "bounds": None}
    if input_clip:
        log(f"float student's input clipped to +-{input_range} (the int8 input's range)")
        student = made["clipped"] = bound_input(student, input_range)
    if channel_equalization:
        log(f"channel equalization (strength {channel_equalization}) on {len(calibration)} calibration windows")
        student, made["equalization"] = equalize_channels(student, calibration, channel_equalization)
    if activation_bounds:
        log(f"activation bounds from {len(calibration)} calibration windows")
        made["unbounded"] = student
        student, made["bounds"] = bound_activations(student, calibration)
    made["final"] = student
    return made


def precision_plan_windows(val: WindowSet | None, plan_windows: np.ndarray | None,
                           calibration: np.ndarray) -> tuple[np.ndarray, str]:
    """The windows (n, 5000) float32 a precision plan measures on, and what they are: the validation windows
    and the extra training ``plan_windows``, whichever are given, else the ``calibration`` windows."""
    sources = [(what, x) for what, x in (("validation windows", None if val is None else val.x),
                                         ("training windows (not the calibration ones)", plan_windows))
               if x is not None and len(x)]
    if not sources:
        sources = [("calibration windows (no validation windows were given)", calibration)]
    measured_on = sources[0][0] if len(sources) == 1 else \
        "windows: " + " + ".join(f"{len(x):,} {what.replace(' windows', '')}" for what, x in sources)
    return np.concatenate([np.asarray(x, np.float32) for _, x in sources]), measured_on


def build_bundle(student_path: str | Path, out_dir: str | Path, calibration: np.ndarray, test: WindowSet,
                 val: WindowSet | None = None, teacher: Teacher | None = None, tflite: bool = True,
                 hop_seconds: float = 5.0, calibration_method: str = "minmax",
                 float_ops: Sequence[str] | str = ("conv0",),
                 include_teacher: bool = False, force: bool = False, recipe: dict | None = None,
                 with_conformance: bool = True, chest: WindowSet | None = None, precision_target: float = 0.03,
                 record_rule: str = "mean", record_train: WindowSet | None = None,
                 channel_equalization: float = 0.0, plan_windows: np.ndarray | None = None,
                 activation_bounds: bool = False, input_clip: bool = False) -> dict:
    """Write a bundle to ``out_dir`` and return its model card.

    ``calibration``: preprocessed windows (n, 5000) from training data; ``test``: held-out windows for the
    fidelity figures (labeled ones also give per-label AUROC by name); ``val``: labeled windows to choose
    per-label thresholds (otherwise 0.5, stated in the card). ``teacher`` (with a label table covering the
    student's labels) adds comparison figures, and its ONNX files with ``include_teacher``. A student
    fine-tuned with :mod:`quantize.qat` carries its input range; the int8 models quantize the input on it.
    ``float_ops``: the parts of the student kept in float in both int8 models, as op ids (``conv0``, ``add1``,
    ``head``: :mod:`quantize.float_ops`; the TFLite model is full-integer, int8 in and out, when there are
    none); ``"auto"``: chosen by measurement on ``val`` (else on the calibration windows) with
    :func:`quantize.precision_plan.plan_float_ops` against
    ``precision_target`` (max absolute probability error per window), the steps recorded in the card;
    ``plan_windows`` (n, 5000): more windows it measures on besides ``val`` (training windows other than the
    calibration ones: a larger sample of the error's tail than the validation windows alone).
    ``out_dir`` must be missing or empty unless ``force``; the bundle is built
    in a sibling folder and moved into place only when complete. ``recipe`` is recorded in the card.
    The bundle also gets the mobile files (``student_int8.ort`` + its required-operators config; the TFLite
    signature named like the card, labels inside), the preprocessing specification, conformance vectors
    from held-out Challenge 2017 / MIT-BIH records (``with_conformance``; needs ../shared) and a README.md.
    ``chest``: labeled chest-lead windows never used for training (the test side of the MIT-BIH split): the
    card's ``evaluation.chest_lead`` then says, per model file, how often the top output is the expected one.
    ``record_rule``: how a record's windows become one label (:mod:`edge_sdk.record_rule`); ``"logistic"`` is
    fitted on the float student's outputs for the labeled records of ``record_train`` and chosen on ``val``
    (:func:`distill.record_rule_fit.fit_record_rule`), and the fidelity figures then say what it decides.
    ``channel_equalization``: strength in [0, 1] of :func:`quantize.equalize.equalize_channels`, applied to
    the float student (on the calibration windows) before any export; 0 leaves the student as it is.
    ``activation_bounds``: clamp the (equalized) float student's activations to their ranges on the calibration
    windows before any export (:func:`quantize.activation_bounds.bound_activations`); the card's
    ``student.activation_bounds`` says how far the bounds moved the float student on the held-out windows.
    ``input_clip``: clip the float student's input to the QAT input range, as the int8 input clips it
    (:func:`quantize.activation_bounds.bound_input`; needs a QAT student); the card's ``student.input_clip``
    says how far that moved the float student on the held-out windows.
    """
    t0 = time.time()
    final = check_new_dir(out_dir, force, "bundle folder")
    student, s_ckpt = load_model(student_path)
    meta = s_ckpt.get("meta") or {}
    table = checkpoint_label_table(s_ckpt, student.head.out_features, where=f"student {Path(student_path).name}")
    names = table.names
    if teacher is not None:
        teacher.labels.indices(names)  # every student label must be a teacher output (LabelError otherwise)
    check_record_rule(record_rule, table.activation)
    check_record_rule_data(record_rule, record_train, val)
    channel_equalization = check_strength(channel_equalization)
    if channel_equalization:
        stage_blocks(student)  # ConfigError now for a model it does not apply to
    if activation_bounds:
        check_boundable(student)  # likewise
    if input_clip and not (meta.get("qat") or {}).get("input_range"):
        raise ConfigError(f"input_clip clips the input to the QAT input range, and {Path(student_path).name} was "
                          "not fine-tuned with QAT (no meta.qat.input_range); set input_clip to false or give a "
                          "QAT student (qat_epochs > 0)")
    if len(test) == 0:
        from edge_sdk.errors import DatasetError
        raise DatasetError("no held-out windows to measure fidelity on; give evaluation records")
    out = staging_dir(final)
    try:
        card = _build(student, s_ckpt, meta, table, Path(student_path), out, calibration, test, val, teacher, tflite,
                      hop_seconds, calibration_method, float_ops, include_teacher, recipe, with_conformance,
                      chest, precision_target, record_rule, record_train, channel_equalization, plan_windows,
                      activation_bounds, input_clip)
        card["build_seconds"] = round(time.time() - t0, 1)
        write_card(out, card)  # fills in sha256 and bytes, which the README lists
        write_bundle_readme(out, card)
        card["extras"][README_NAME] = {"kind": "readme"}
        write_card(out, card)
    except BaseException:  # also Ctrl-C and (through the CLI's handler) SIGTERM: no half-built folder is left
        import shutil
        shutil.rmtree(out, ignore_errors=True)
        raise
    replace_dir(out, final)
    _log(f"bundle written to {final} in {card['build_seconds']} s")
    return card


def _build(student, s_ckpt, meta, table: LabelTable, student_path: Path, out: Path, calibration, test, val,
           teacher, tflite, hop_seconds, calibration_method, float_ops, include_teacher, recipe,
           with_conformance=True, chest: WindowSet | None = None, precision_target: float = 0.03,
           record_rule: str = "mean", record_train: WindowSet | None = None,
           channel_equalization: float = 0.0, plan_windows: np.ndarray | None = None,
           activation_bounds: bool = False, input_clip: bool = False) -> dict:
    names, activation = table.names, table.activation
    chest_models: dict[str, dict] = {}
    x_chest = chest.x.astype(np.float32) if chest is not None and len(chest) else None

    def chest_figures(key: str, predict_probs) -> None:
        if x_chest is not None:
            chest_models[key] = chest_summary(chest_lead_report(predict_probs(x_chest), names, chest))
    files: dict[str, dict] = {}
    fidelity: dict[str, dict] = {}
    x_test = test.x.astype(np.float32)  # float16 cache -> model input, once

    input_range = (meta.get("qat") or {}).get("input_range")
    calibration = clip_input(calibration, input_range)
    made = float_student(student, calibration, input_range, input_clip, channel_equalization, activation_bounds)
    student, equalization, bounds, clipped = made["final"], made["equalization"], made["bounds"], None
    if input_clip:
        unclipped_probs = activate(predict(made["trained"], x_test), activation)
        clipped = {"range": [-float(input_range), float(input_range)],
                   "held_out": bounds_effect(unclipped_probs, activate(predict(made["clipped"], x_test), activation))}
    if activation_bounds:
        unbounded_probs = activate(predict(made["unbounded"], x_test), activation)
        bounds["held_out"] = bounds_effect(unbounded_probs, activate(predict(student, x_test), activation))
    _log("export student fp32 ONNX")
    export_onnx(student, out / "student_fp32.onnx", activation)
    plan = None
    if isinstance(float_ops, str):
        if float_ops != "auto":
            raise ValueError(f"float_ops must be a list of op ids such as ['conv0', 'head'] or 'auto', "
                             f"not {float_ops!r}")
        from .precision_plan import plan_float_ops

        x_plan, measured_on = precision_plan_windows(val, plan_windows, calibration)
        _log(f"choosing the float parts by measurement on {measured_on} (target: max error {precision_target})")
        plan = plan_float_ops(out / "student_fp32.onnx", calibration, x_plan, precision_target, calibration_method,
                              input_range, measured_on=measured_on, log=_log)
        float_ops = plan["float_ops"]
    _log(f"int8 QDQ with {len(calibration)} calibration windows")
    qparams = quantize_onnx_int8(out / "student_fp32.onnx", out / "student_int8.onnx", calibration, calibration_method,
                                 input_range=input_range, float_ops=float_ops)
    for name in ("student_fp32.onnx", "student_int8.onnx"):
        label_onnx(out / name, names)
    files["student_fp32.onnx"] = {"runtime": "onnxruntime", "precision": "fp32", "role": "student", "format": "onnx"}
    files["student_int8.onnx"] = {"runtime": "onnxruntime", "precision": "int8", "role": "student", "format": "onnx",
                                  "quantization": qparams}
    extras: dict[str, dict] = {}
    mobile: dict[str, dict] = {}

    _log(f"fidelity on {len(test)} held-out windows")
    with torch.no_grad():
        torch_fp32 = activate(student(torch.from_numpy(x_test[:512])[:, None]).numpy(), activation)
    s_int8_backend = OnnxBackend(out / "student_int8.onnx", threads=2)
    s_fp32_backend = OnnxBackend(out / "student_fp32.onnx", threads=2)
    s_fp32 = _probs(s_fp32_backend, x_test)
    s_int8 = _probs(s_int8_backend, x_test)
    if bounds:  # int8 against the student as trained, for comparison with int8 against the bounded fp32 file
        bounds["held_out"]["int8_vs_unbounded_max_abs_prob_error"] = {
            "student_int8.onnx": float(np.abs(s_int8 - unbounded_probs).max())}
    fidelity["student_onnx_fp32_vs_torch"] = {"max_abs_prob_error": float(np.abs(torch_fp32 - s_fp32[:512]).max())}
    labeled_val = val is not None and val.labeled
    if record_rule == "mean":
        rule = RecordRule(tuple(names), "mean")
    else:
        _log(f"record rule ({record_rule}): the float student on {len(record_train)} training windows")
        rule, _ = fit_record_rule(record_rule, names, activation, _probs(s_fp32_backend, record_train.x.astype(np.float32)),
                                  record_train, _probs(s_fp32_backend, val.x.astype(np.float32)) if labeled_val else None,
                                  val if labeled_val else None, "student_fp32.onnx", log=_log)
    fidelity["student_onnx_int8_vs_fp32"] = compare(s_fp32, s_int8, names, test, activation, rule)
    fidelity["measured_on"] = measuring_machine()
    rule_card = rule.to_dict()
    if rule.method == "logistic":  # a short held-out record (fewest windows, then first) as a worked example
        counts = np.bincount(test.record_idx, minlength=len(test.records))
        r = int(np.argmin(np.where(counts >= 3, counts, counts.max() + 1)))
        rule_card["example"] = rule_example(rule, s_int8[test.record_idx == r], test.records[r])
    chest_figures("student_fp32.onnx", lambda x: _probs(s_fp32_backend, x))
    chest_figures("student_int8.onnx", lambda x: _probs(s_int8_backend, x))

    _log("ONNX Runtime Mobile: .ort and its required-operators config (onnxruntime's converter)")
    import onnxruntime

    ort_path, ops_path = convert_to_ort(out / "student_int8.onnx", out)
    files[ort_path.name] = {"runtime": "onnxruntime", "precision": "int8", "role": "student-mobile", "format": "ort",
                            "converted_from": "student_int8.onnx"}
    extras[ops_path.name] = {"kind": "ort-required-operators"}
    s_ort = _probs(OnnxBackend(ort_path, threads=2), x_test)
    ort_diff = float(np.abs(s_ort - s_int8).max())
    fidelity["student_ort_int8_vs_onnx_int8"] = {"max_abs_prob_error": ort_diff, "n_windows": int(len(x_test))}
    mobile["ort"] = {"file": ort_path.name, "converted_from": "student_int8.onnx",
                     "converter": f"onnxruntime {onnxruntime.__version__} tools.convert_onnx_models_to_ort",
                     "optimization_style": "Fixed", "target_platform": "arm", "required_operators": ops_path.name,
                     "max_abs_diff_vs_onnx": ort_diff}

    if tflite:
        from edge_sdk.inference.tflite_backend import TFLiteBackend

        from .tflite_int8 import convert_tflite_int8

        _log("int8 TFLite" + (f" ({', '.join(float_ops)} float)" if float_ops else ", full-integer"))
        tparams = convert_tflite_int8(student, activation, out / "student_int8.tflite", calibration,
                                      float_ops=float_ops)
        files["student_int8.tflite"] = {"runtime": "tflite", "precision": "int8", "role": "student", "format": "tflite",
                                        "quantization": tparams}
        tfl_backend = TFLiteBackend(out / "student_int8.tflite", threads=2)
        s_tfl = tfl_backend.predict(x_test)
        if bounds:
            bounds["held_out"]["int8_vs_unbounded_max_abs_prob_error"]["student_int8.tflite"] = \
                float(np.abs(s_tfl - unbounded_probs).max())
        fidelity["student_tflite_int8_vs_fp32"] = compare(s_fp32, s_tfl, names, test, activation, rule)
        chest_figures("student_int8.tflite", tfl_backend.predict)

    teacher_card: dict = {"identity": meta.get("teacher", {})}
    if teacher is not None:
        _log("teacher (torch fp32) on the held-out windows, for comparison")
        t_probs = teacher_probabilities(teacher, names, x_test)
        fidelity["student_fp32_vs_teacher_fp32"] = compare(t_probs, s_fp32, names, test, activation)
        chest_figures("teacher (torch fp32)", lambda x: teacher_probabilities(teacher, names, x))
        teacher_card.update({"params": count_params(teacher.model), "macs_per_window": count_macs(teacher.model),
                             "checkpoint": teacher.path.name, "checkpoint_sha256": teacher.sha256,
                             "config": teacher.config, "width": teacher.identity()["width"],
                             "n_outputs": len(teacher.labels), "outputs_used": names})
        if include_teacher:
            _log("teacher: export fp32 ONNX and int8 QDQ of the student's outputs the same way")
            wrapped = SelectOutputs(teacher.model, teacher.labels.indices(names)).eval()
            export_onnx(wrapped, out / "teacher_fp32.onnx", teacher.labels.activation)
            tq = quantize_onnx_int8(out / "teacher_fp32.onnx", out / "teacher_int8.onnx", calibration,
                                    calibration_method, float_ops=["conv0"] if "conv0" in float_ops else [])
            files["teacher_fp32.onnx"] = {"runtime": "onnxruntime", "precision": "fp32", "role": "teacher"}
            files["teacher_int8.onnx"] = {"runtime": "onnxruntime", "precision": "int8", "role": "teacher",
                                          "quantization": tq}
            t_int8 = _probs(OnnxBackend(out / "teacher_int8.onnx", threads=2), x_test)
            fidelity["teacher_onnx_int8_vs_fp32"] = compare(t_probs, t_int8, names, test, activation)

    v_probs = _probs(s_int8_backend, val.x.astype(np.float32)) if val is not None and val.labeled else None
    chosen, threshold_rule = choose_thresholds(v_probs, names, val if v_probs is not None else None)
    table = table.with_default_thresholds().with_thresholds(chosen, "validation")
    threshold_rule["chosen_on"] = "student_int8.onnx outputs"
    if tflite:  # signature names as the card's; the labels inside carry the chosen thresholds
        mobile["tflite"] = finish_tflite(out / "student_int8.tflite", INPUT_NAME, OUTPUT_NAME, table.to_list())

    conformance = None
    if with_conformance and not conformance_data_available():
        # a user's own build machine may hold no shared/ data: build the bundle, say what is missing
        _log("conformance vectors skipped: their Challenge 2017 / MIT-BIH records are not found (set "
             "ECG_EDGE_SHARED to a folder with data/cinc2017 and data/mitdb to add them)")
        with_conformance = False
    if with_conformance:
        _log("conformance vectors (held-out records, every stage, every model file)")
        students = {n: f for n, f in files.items() if f["role"].startswith("student")}
        conformance = write_conformance(out, students, names, DEFAULT_CONFIG, hop_seconds)
        extras[conformance["file"]] = {"kind": "conformance-vectors"}

    return {
        "format": CARD_FORMAT, "version": CARD_VERSION, "name": "ecg-edge-student",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "labels": table.to_list(), "label_vocabulary": table.vocabulary, "threshold_rule": threshold_rule,
        "record_rule": rule_card,
        "sample_rate_hz": DEFAULT_CONFIG.fs_hz, "window_seconds": DEFAULT_CONFIG.window_seconds,
        "window_samples": DEFAULT_CONFIG.window_samples, "hop_seconds": hop_seconds,
        "preprocessing": DEFAULT_CONFIG.to_dict(),
        "input": {"name": INPUT_NAME, "shape": ["batch", 1, DEFAULT_CONFIG.window_samples], "dtype": "float32",
                  "layout": "z-scored ECG, 1 lead, 500 Hz", "tflite_shape": [1, DEFAULT_CONFIG.window_samples, 1]},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(names)], "dtype": "float32", "activation": activation},
        "schema_version": CARD_SCHEMA_VERSION,
        "preprocessing_spec": preprocessing_spec(DEFAULT_CONFIG, hop_seconds),
        **({"conformance": conformance} if conformance else {}),
        "files": files, "extras": extras, "mobile": mobile, "fidelity": fidelity, "teacher": teacher_card,
        **({"precision_plan": plan} if plan else {}),
        "student": {"arch": s_ckpt.get("arch"), "config": s_ckpt.get("config"), "params": count_params(student),
                    "macs_per_window": count_macs(student), "checkpoint": student_path.name,
                    "checkpoint_sha256": sha256_of(student_path), "val": meta.get("val"), "qat": meta.get("qat"),
                    "data": meta.get("data"), **({"channel_equalization": equalization} if equalization else {}),
                    **({"activation_bounds": bounds} if bounds else {}),
                    **({"input_clip": clipped} if clipped else {})},
        "evaluation": {"data": test.description, "n_records": int(len(test.records)), "n_windows": int(len(test)),
                       "labeled": test.labeled,
                       **({"chest_lead": {"data": chest.description, "n_windows": int(len(chest)),
                                          "models": chest_models}} if chest_models else {})},
        "recipe": recipe,
        "build_seconds": None,
    }


def _report_value(v) -> str:
    """A card value for the report: floats to 4 decimals, objects (nested too) as {key: value, ...}."""
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_report_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def print_report(card: dict) -> None:
    """Human-readable label, fidelity and size summary."""
    print("\nlabels (threshold, source): " + ", ".join(
        f"{d['name']} ({d['threshold']:.3f}, {d['threshold_source']})" for d in card["labels"]))
    print("bundle sizes (bytes): " + ", ".join(f"{n}={f['bytes']:,}" for n, f in card["files"].items()))
    for k, v in card["fidelity"].items():
        print(f"{k}: {', '.join(f'{kk}={_report_value(vv)}' for kk, vv in v.items())}")
