"""Does a precision plan hold on windows it never saw? The measurement behind the recipe's plan target.

``python -m quantize.plan_check --bundle bundles/default --targets 0.03,0.025,0.02`` runs
:func:`quantize.precision_plan.plan_float_ops` on the bundle's fp32 student once per target, measuring on the
Challenge 2017 validation windows alone, and then measures each chosen int8 model on training windows that
neither the calibration nor the plan saw (drawn as the recipe's ``precision_train_windows`` are, with
:func:`quantize.recipe.sample_plan_windows`). The test split is never read.

A plan run exactly at the acceptance error (0.03) stops as soon as no single part lowers the few windows over
it, which can be after one or two parts; a lower plan target keeps more windows in play, so each step has
something to measure. Which target holds on unseen windows is what this module measures, before a recipe's
``precision_target`` is changed. The first row is the bundle's own int8 ONNX file on the same windows.

``--as-recipe`` asks the same of the recipe's own plan: the plans measure on what it measures on (the
validation windows and its ``precision_train_windows`` training windows), and every row, the bundle's file
included, is checked on the windows of the training records that no calibration or plan window came from
(``--unseen all``: 10,533 windows of 2,695 records for the default recipe). Whole records, because a
record's windows overlap by half: on the other windows of the plan's records (half plan signal) the
default bundle put 7 of 40,154 windows over 0.03, against 5 of these 10,533 (2026-11-27). That is the
largest sample no plan saw short of the test split, so it estimates how many held-out windows an int8
file will put over the acceptance error. It prints a Markdown table; nothing is written unless ``--out``.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edge_sdk.bundle import load_bundle

from .float_ops import compact
from .onnx_int8 import quantize_onnx_int8
from .precision_plan import _probs, plan_float_ops

ACCEPT = 0.03  # the acceptance error: max absolute probability error per window


def unseen_figures(err: np.ndarray, accept: float = ACCEPT) -> dict:
    """Summary of per-window max absolute probability errors ``err`` (n,): max, second largest, p99.9 and the
    number of windows over ``accept``."""
    top = np.sort(err)[::-1]
    return {"max_abs_prob_error": float(top[0]), "second_abs_prob_error": float(top[1]) if len(top) > 1 else None,
            "p999_abs_prob_error": float(np.quantile(err, 0.999)), f"windows_over_{accept}": int((err > accept).sum()),
            "n_windows": int(len(err))}


def check_plan_targets(fp32_path: str | Path, calibration: np.ndarray, plan_windows: np.ndarray,
                       unseen_windows: np.ndarray, targets: Sequence[float], input_range: float | None = None,
                       calibration_method: str = "minmax", max_float: int | None = None,
                       log: Callable[[str], None] = print) -> list[dict]:
    """For each plan target: the float parts :func:`plan_float_ops` chooses on ``plan_windows`` (n, 5000), what
    the plan saw on them, and what the chosen int8 model gives on ``unseen_windows`` (m, 5000), which the plan
    never measured. ValueError for a target outside (0, 1) or no unseen windows."""
    for t in targets:
        if not 0 < t < 1:
            raise ValueError(f"a plan target is a probability error in (0, 1), not {t!r}")
    x = np.asarray(unseen_windows, np.float32)
    if len(x) == 0:
        raise ValueError("no unseen windows to check the plans on")
    fp32_path = Path(fp32_path)
    ref = _probs(fp32_path, x)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets:
            plan = plan_float_ops(fp32_path, calibration, plan_windows, target, calibration_method, input_range,
                                  max_float=max_float, log=log)
            path = Path(tmp) / "plan.onnx"
            quantize_onnx_int8(fp32_path, path, calibration, calibration_method, input_range=input_range,
                               float_ops=plan["float_ops"])
            last = plan["steps"][-1]
            rows.append({"target": float(target), "float_ops": plan["float_ops"], "reached": plan["reached"],
                         "plan": {"max_abs_prob_error": last["max_abs_prob_error"],
                                  "windows_over_target": last["windows_over_target"], "n_windows": len(plan_windows)},
                         "unseen": unseen_figures(np.abs(_probs(path, x) - ref).max(1))})
    return rows


def unseen_indices(record_idx: np.ndarray, n_calibration: int, n_plan: int, seed: int = 0,
                   n: int | None = None) -> np.ndarray:
    """Indices of the training windows of the records that none of a recipe's calibration windows
    (``n_calibration``) or precision-plan windows (``n_plan``) come from, both drawn with ``seed`` as
    :mod:`quantize.recipe` draws them; ``record_idx`` (n_train,): each training window's record. Whole records
    are left out because a record's windows overlap (hop 5 s, window 10 s): the neighbour of a plan window
    is half the same signal. ``n`` of them (drawn with ``seed + 2``) or all (None), sorted."""
    from quantize.recipe import calibration_indices, plan_window_indices

    record_idx = np.asarray(record_idx)
    used = np.union1d(calibration_indices(len(record_idx), n_calibration, seed),
                      plan_window_indices(len(record_idx), n_plan, n_calibration, seed))
    rest = np.flatnonzero(~np.isin(record_idx, record_idx[used]))
    if n is not None and n < len(rest):
        rest = np.sort(np.random.default_rng(seed + 2).choice(rest, n, replace=False))
    return rest


def shipped_row(bundle: str | Path, card: dict, unseen_windows: np.ndarray, plan_saw_them: bool) -> dict:
    """The bundle's own int8 ONNX file against its fp32 file on ``unseen_windows`` (n, 5000), with what its
    plan (the card's last step, where the parts were chosen by measurement) saw; ``plan_saw_them``: whether
    that plan measured on these windows (then they are not unseen for this row)."""
    x = np.asarray(unseen_windows, np.float32)
    ref = _probs(Path(bundle) / "student_fp32.onnx", x)
    steps = (card.get("precision_plan") or {}).get("steps") or []
    quant = card["files"]["student_int8.onnx"].get("quantization") or {}
    return {"target": None, "shipped": True, "float_ops": list(quant.get("float_ops") or []),
            "plan": {"max_abs_prob_error": steps[-1]["max_abs_prob_error"],
                     "windows_over_target": steps[-1]["windows_over_target"]} if steps else None,
            "plan_saw_unseen": bool(plan_saw_them),
            "unseen": unseen_figures(np.abs(_probs(Path(bundle) / "student_int8.onnx", x) - ref).max(1))}


def plan_check(bundle: str | Path, targets: Sequence[float], n_unseen: int | None = 8192, limit: int | None = None,
               max_float: int | None = None, as_recipe: bool = False, log: Callable[[str], None] = print) -> dict:
    """:func:`check_plan_targets` on the bundle's fp32 student, calibrated as the bundle was, and the bundle's
    own int8 file (:func:`shipped_row`, the first row).

    By default the plans measure on the validation windows (the first ``limit`` records' when given) and are
    checked on ``n_unseen`` training windows drawn as the recipe's plan windows are. ``as_recipe``: the plans
    measure on what the recipe's plan does (the validation windows and the recipe's
    ``precision_train_windows`` training windows), and every row, the shipped one too, is checked on the
    windows of the training records that no calibration or plan window came from (:func:`unseen_indices`;
    ``n_unseen`` of them, drawn with the recipe's seed + 2; None: all)."""
    from quantize.recipe import plan_window_indices

    from .precision_study import bundle_windows

    b = load_bundle(bundle)
    recipe = b.card.get("recipe") or {}
    val, train, calib, input_range = bundle_windows(b.card, limit)
    n_cal, seed = recipe.get("calibration_windows", 256), recipe.get("seed", 0)
    n_recipe_plan = recipe.get("precision_train_windows", 0) if recipe.get("float_ops") == "auto" else 0
    if as_recipe:
        plan_idx = plan_window_indices(len(train), n_recipe_plan, n_cal, seed)
        plan_x = np.concatenate([val, train.x[plan_idx].astype(np.float32)])
        idx = unseen_indices(train.record_idx, n_cal, n_recipe_plan, seed, n_unseen)
        unseen = train.x[idx].astype(np.float32)
        planned_on = f"the recipe's plan windows: {len(val):,} validation + {len(plan_idx):,} training"
        checked_on = (f"{len(unseen):,} windows of {len(np.unique(train.record_idx[idx])):,} training records "
                      "that no calibration or plan window came from")
    else:
        plan_idx = plan_window_indices(len(train), n_unseen or len(train), n_cal, seed)
        plan_x, unseen = val, train.x[plan_idx].astype(np.float32)
        planned_on = f"Challenge 2017 validation split, {len(val):,} windows"
        checked_on = f"{len(unseen):,} training windows that neither the calibration nor the plan used"
    shipped_saw = not as_recipe and n_recipe_plan > 0
    rows = [shipped_row(bundle, b.card, unseen, shipped_saw)]
    rows += check_plan_targets(Path(bundle) / "student_fp32.onnx", calib, plan_x, unseen, targets, input_range,
                               recipe.get("calibration_method", "minmax"), max_float=max_float, log=log)
    selection = ((b.card.get("student") or {}).get("qat") or {}).get("selection")
    return {"planned_on": planned_on, "checked_on": checked_on, "accept": ACCEPT, "rows": rows,
            **({"qat_chosen_on": selection["choose"]} if selection and as_recipe else {})}


def markdown(result: dict) -> str:
    accept = result["accept"]
    lines = [f"Planned on {result['planned_on']}; checked on {result['checked_on']}:", "",
             f"| plan target | float parts | plan's windows: max | over target | unseen: max | second | p99.9 | "
             f"over {accept} |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for r in result["rows"]:
        u, p = r["unseen"], r["plan"]
        second = "n/a" if u["second_abs_prob_error"] is None else f"{u['second_abs_prob_error']:.3f}"
        if r.get("shipped"):
            target = "the bundle's int8 file" + (" (1)" if r.get("plan_saw_unseen") else "")
            if r.get("plan_saw_unseen"):
                notes.append("(1) its plan measured on all or some of these windows too, so they are not unseen for it")
        else:
            target = f"{r['target']:g}"
        plan = "n/a | n/a" if p is None else f"{p['max_abs_prob_error']:.3f} | {p['windows_over_target']}"
        lines.append(f"| {target} | {compact(r['float_ops']) or 'none'} | {plan} | {u['max_abs_prob_error']:.3f} | "
                     f"{second} | {u['p999_abs_prob_error']:.3f} | {u[f'windows_over_{accept}']} of "
                     f"{u['n_windows']:,} |")
    if result.get("qat_chosen_on"):
        notes.append(f"The bundle's QAT run was chosen among several by its int8 error on half of these records "
                     f"({result['qat_chosen_on']}; `quantize/qat_select.py`): for every row, the card's check half "
                     "is the unseen part.")
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m quantize.plan_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="bundles/default", help="bundle folder [default: bundles/default]")
    p.add_argument("--targets", default="0.03,0.025,0.02", metavar="T,T,...",
                   help="plan targets (max absolute probability error) [default: 0.03,0.025,0.02]")
    p.add_argument("--unseen", default="8192", metavar="N|all",
                   help="training windows to check the plans on; 'all': every one left [default: 8192]")
    p.add_argument("--as-recipe", action="store_true",
                   help="plan on the recipe's plan windows (validation + its training plan windows) and check "
                        "on the training records none of the calibration or plan windows came from, the shipped "
                        "file too [default: plan on validation windows alone]")
    p.add_argument("--limit", type=int, default=None,
                   help="plan on the first N validation records only (a quick look) [default: all]")
    p.add_argument("--out", default=None, help="also write the result as JSON here (refused if it exists)")
    a = p.parse_args(argv)
    try:
        targets = [float(v) for v in a.targets.split(",") if v.strip()]
    except ValueError:
        p.error(f"--targets: {a.targets!r} is not a comma-separated list of numbers such as 0.03,0.025")
    if not targets or not all(0 < t < 1 for t in targets):
        p.error(f"--targets: every target is a probability error in (0, 1), not {a.targets!r}")
    try:
        n_unseen = None if a.unseen == "all" else int(a.unseen)
    except ValueError:
        n_unseen = 0
    if n_unseen is not None and n_unseen < 1:
        p.error(f"--unseen: a number of windows (1 or more) or 'all', not {a.unseen!r}")
    from .precision_study import report

    return report(lambda: plan_check(a.bundle, targets, n_unseen, a.limit, as_recipe=a.as_recipe), markdown, a.out,
                  "plan check result")


if __name__ == "__main__":
    raise SystemExit(main())
