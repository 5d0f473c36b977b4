"""Choose among QAT runs by the int8 error each leaves on training records that nothing else saw.

The QAT run sets the int8 tail more than the precision plan or the input clip do. Four QAT runs of the
default recipe that differ only in their seed (input clip on), each planned and quantized as the bundle
is, put 9, 2, 22 and 0 of 10,533 unseen-record windows over 0.03 (2026-11-27; ``python -m
quantize.plan_check --as-recipe`` measures the same set). A recipe with ``qat_seeds`` therefore fine-tunes
once per seed and keeps one run, by measurement:

1. each run's float student is made as the build makes it (:func:`quantize.build.float_student`), exported,
   given its float parts by the same precision plan on the same windows, and quantized to int8 QDQ;
2. the int8 error is measured on the windows of the training records that no calibration or plan window
   came from (:func:`quantize.plan_check.unseen_indices`), split by record into two halves
   (:func:`split_by_record`);
3. the run with the fewest windows over the precision target on the *choose* half, then the smallest max
   error there, is kept (ties: the first seed listed); the *check* half is measured for every run and
   recorded beside it, so the checkpoint (``meta.qat.selection``) and the card show whether the choice holds
   on records it was not made on.

The test split is never read.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from distill.checkpoint import load_model, save_checkpoint
from distill.labels import checkpoint_label_table
from distill.metrics import record_probabilities
from edge_sdk.errors import ConfigError

from .build import float_student
from .onnx_export import export_onnx
from .onnx_int8 import clip_input, quantize_onnx_int8
from .plan_check import unseen_figures
from .precision_plan import _probs, plan_float_ops

RULE = ("fewest windows over the precision target on the choose half of the unseen training records, then "
        "the smallest max error there; ties: the first seed listed")


def check_seeds(seeds, qat_epochs: int) -> list[int]:
    """``seeds`` as a list of distinct ints; ConfigError for anything else, or several seeds without QAT."""
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                             for s in seeds):
        raise ConfigError(f"qat_seeds is a list of integer seeds such as [0, 1, 2], not {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"qat_seeds lists a seed twice: {seeds}")
    if len(seeds) > 1 and qat_epochs <= 0:
        raise ConfigError(f"qat_seeds {seeds} asks for a choice among QAT runs, and qat_epochs is {qat_epochs}: "
                          "set qat_epochs > 0 or give one seed")
    return list(seeds)


def split_by_record(idx: np.ndarray, record_idx: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Window indices ``idx`` split by record into a choose half and a check half: the records of ``idx``
    (``record_idx[idx]``; ``record_idx``: each window's record) are shuffled with ``seed + 3`` and the first
    half of them (rounded up) give the choose windows. Both sorted; a record's windows stay on one side."""
    idx = np.asarray(idx)
    records = np.unique(np.asarray(record_idx)[idx])
    shuffled = np.random.default_rng(seed + 3).permutation(records)
    choose_records = shuffled[:(len(records) + 1) // 2]
    on_choose = np.isin(np.asarray(record_idx)[idx], choose_records)
    return np.sort(idx[on_choose]), np.sort(idx[~on_choose])


def record_changes(reference: np.ndarray, candidate: np.ndarray, record_idx: np.ndarray) -> dict:
    """How many records (``record_idx`` (n,): each window's record) get another top label of their mean window
    probabilities from ``candidate`` than from ``reference`` (both (n, C))."""
    _, inverse = np.unique(record_idx, return_inverse=True)
    n = int(inverse.max()) + 1 if len(inverse) else 0
    ref, cand = (record_probabilities(np.asarray(a, np.float64), inverse, n) for a in (reference, candidate))
    return {"records_top_label_changed": int((ref.argmax(1) != cand.argmax(1)).sum()), "n_records": n}


def run_int8_errors(student_path: str | Path, calibration: np.ndarray, plan_windows: np.ndarray | None,
                    halves: dict[str, np.ndarray], float_ops: Sequence[str] | str = "auto",
                    precision_target: float = 0.03, calibration_method: str = "minmax", input_clip: bool = False,
                    channel_equalization: float = 0.0, activation_bounds: bool = False,
                    records: dict[str, np.ndarray] | None = None, log: Callable[[str], None] = print) -> dict:
    """One QAT run's int8 ONNX model, made as :func:`quantize.build.build_bundle` makes it, against its own fp32
    model on each of ``halves`` ({name: windows (n, 5000)}). ``calibration``: the recipe's calibration windows
    (clipped here to the run's input range, as the build clips them); ``plan_windows`` (m, 5000): what the
    precision plan measures on when ``float_ops`` is ``"auto"`` (its steps go to ``log``; None: the clipped
    calibration windows, as the build falls back to them); ``records``
    ({name: (n,) record of each window}): also count the records whose top label of the mean changes
    (:func:`record_changes`). Returns ``{"float_ops", "plan", <name>: :func:`quantize.plan_check.unseen_figures`
    at ``precision_target``}``."""
    student, ckpt = load_model(student_path)
    table = checkpoint_label_table(ckpt, student.head.out_features, where=f"student {Path(student_path).name}")
    input_range = ((ckpt.get("meta") or {}).get("qat") or {}).get("input_range")
    calibration = clip_input(calibration, input_range)
    model = float_student(student, calibration, input_range, input_clip, channel_equalization, activation_bounds,
                          log=lambda m: None)["final"]
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", table.activation)
        if float_ops == "auto":
            plan_windows = calibration if plan_windows is None else plan_windows
            plan = plan_float_ops(fp32, calibration, plan_windows, precision_target, calibration_method, input_range,
                                  log=log)
            float_ops = plan["float_ops"]
            last = plan["steps"][-1]
            out["plan"] = {"max_abs_prob_error": last["max_abs_prob_error"],
                           "windows_over_target": last["windows_over_target"], "n_windows": int(len(plan_windows))}
        out["float_ops"] = list(float_ops)
        int8 = Path(tmp) / "int8.onnx"
        quantize_onnx_int8(fp32, int8, calibration, calibration_method, input_range=input_range, float_ops=float_ops)
        for name, x in halves.items():
            x = np.asarray(x, np.float32)
            ref, q = _probs(fp32, x), _probs(int8, x)
            out[name] = unseen_figures(np.abs(q - ref).max(1), precision_target)
            if records is not None:
                out[name].update(record_changes(ref, q, records[name]))
    return out


def choose_run(runs: dict[int, dict], precision_target: float) -> int:
    """The seed of ``runs`` ({seed: :func:`run_int8_errors` result with a ``"choose"`` half}) that :data:`RULE`
    keeps."""
    key = f"windows_over_{precision_target}"
    return min(runs, key=lambda s: (runs[s]["choose"][key], runs[s]["choose"]["max_abs_prob_error"]))


def write_chosen(run_path: str | Path, out: str | Path, selection: dict) -> Path:
    """Save the chosen QAT run ``run_path`` to ``out`` with ``selection`` in ``meta.qat.selection``."""
    model, ckpt = load_model(run_path)
    meta = dict(ckpt.get("meta") or {})
    meta["qat"] = {**(meta.get("qat") or {}), "selection": selection}
    table = checkpoint_label_table(ckpt, model.head.out_features, where=f"QAT run {Path(run_path).name}")
    return save_checkpoint(out, model, ckpt.get("arch", "edge_student"), ckpt.get("config") or {}, table, meta)


def select_qat_run(runs: dict[int, Path], calibration: np.ndarray, plan_windows: np.ndarray | None,
                   choose: np.ndarray, check: np.ndarray, described: dict[str, str], precision_target: float = 0.03,
                   log: Callable[[str], None] = print, records: dict[str, np.ndarray] | None = None,
                   **build: object) -> dict:
    """Measure every QAT run ({seed: checkpoint}) with :func:`run_int8_errors` on the ``choose`` and ``check``
    windows (n, 5000) and keep one by :data:`RULE`. ``described``: what the two halves are ({"choose": ...,
    "check": ...}); ``records``: each half's window records, for the record counts (reported, not part of the
    rule); ``build``: the recipe's choices :func:`run_int8_errors` takes (float_ops, calibration_method,
    input_clip, channel_equalization, activation_bounds). Returns the selection record:
    ``{"rule", "chosen_seed", "choose", "check", "runs": [{"seed", "float_ops", "plan", "choose", "check"}]}``."""
    measured: dict[int, dict] = {}
    key = f"windows_over_{precision_target}"
    for i, (seed, path) in enumerate(runs.items()):
        r = measured[seed] = run_int8_errors(path, calibration, plan_windows, {"choose": choose, "check": check},
                                             precision_target=precision_target, records=records,
                                             log=lambda m, seed=seed: log(f"[quantize] QAT run seed {seed}: {m}"),
                                             **build)
        changed = "".join(f", {r[h]['records_top_label_changed']} records' top label changed ({h})"
                          for h in ("choose", "check") if "records_top_label_changed" in r[h])
        log(f"[quantize] QAT run {i + 1}/{len(runs)} (seed {seed}): float {r['float_ops']}; choose half "
            f"max {r['choose']['max_abs_prob_error']:.4f}, {r['choose'][key]} over {precision_target}; check half "
            f"max {r['check']['max_abs_prob_error']:.4f}, {r['check'][key]} over{changed}")
    chosen = choose_run(measured, precision_target)
    log(f"[quantize] QAT run kept: seed {chosen} ({RULE})")
    return {"rule": RULE, "precision_target": precision_target, "chosen_seed": int(chosen),
            "choose": described["choose"], "check": described["check"],
            "runs": [{"seed": int(s), **r} for s, r in measured.items()]}
