"""Score models (teacher checkpoints, ensemble files, student checkpoints) side by side on one side (val or
test) of the project's Challenge 2017 split.

    python -m distill.compare models/reference_teacher.pth models/reference_teacher_gpu.pth \\
        models/teacher_ensemble.json --split val
    python -m distill.compare models/student.pth runs/distill-*/student.pth --split val

Prints, per model, the record-level AUROC of each output, their mean and the Challenge 2017 score (mean F1
of N, A, O); ``--json`` writes the same as JSON. Choose models on ``val``; ``test`` is the held-out split.

``--record-rule`` also scores each softmax model by a logistic record rule (as a bundle's card decides
records: :mod:`edge_sdk.record_rule`) fitted on that model's outputs for the training records and chosen on
the validation records; on ``--split val`` that score is the one the rule was chosen on, so it is optimistic.
It runs every model on every training window (seconds for a student, many minutes for a teacher ensemble).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import nn

from edge_sdk.labels import LabelTable

from .checkpoint import read_checkpoint, student_from_checkpoint
from .data import WindowSet, cinc2017_windows
from .distiller import activate, load_teacher
from .labels import challenge2017_f1, checkpoint_label_table
from .metrics import evaluate_by_name
from .record_rule_fit import fit_record_rule, rule_score
from .student import count_params
from .torch_dataset import predict


def split_figures(probs: np.ndarray, names: Sequence[str], activation: str, ws: WindowSet) -> dict:
    """Record-level figures of window probabilities ``probs`` (n_windows, n_outputs) on window set ``ws``:
    ``{"auroc": {name: v}, "mean_auroc", "f1": {name: v} or None, "challenge_f1", "records", "windows"}``."""
    r = evaluate_by_name(probs, list(names), ws.record_idx, ws.y, ws.classes, ws.label_map, activation)
    return {"auroc": r["auroc"], "mean_auroc": r["mean_auroc"], "f1": r.get("f1"),
            "challenge_f1": challenge2017_f1(r.get("f1") or {}), "records": len(ws.records), "windows": len(ws)}


def load_scored_model(path: str | Path) -> tuple[nn.Module, LabelTable]:
    """The model and label table of a teacher checkpoint, an ensemble file or a student checkpoint."""
    if Path(path).suffix != ".json" and (ckpt := read_checkpoint(path)).get("arch", "net1d") != "net1d":
        model = student_from_checkpoint(ckpt, path)
        return model, checkpoint_label_table(ckpt, model.head.out_features, where=f"student {Path(path).name}")
    t = load_teacher(path)
    return t.model, t.labels


def compare_teachers(paths: Sequence[str | Path], split: str = "val", limit: int | None = None,
                     record_rule: bool = False) -> list[dict]:
    """Figures of each model at ``paths`` (teachers, ensembles or students) on ``split`` (``val`` or
    ``test``; its first ``limit`` records when given): ``[{"teacher", "params", **split_figures(...)}]``;
    with ``record_rule`` also ``"challenge_f1_rule"``: the Challenge score by a logistic record rule fitted
    on the model's training-record outputs (the first ``limit`` training records) and chosen on validation
    (``None`` for sigmoid models)."""
    ws = cinc2017_windows(split, limit=limit)
    fit_sets = {s: cinc2017_windows(s, limit=limit) for s in ("train", "val")} if record_rule else {}
    rows = []
    for p in paths:
        model, labels = load_scored_model(p)

        def probs_on(w: WindowSet, name: str) -> np.ndarray:
            return activate(predict(model, w.x, desc=f"{Path(p).name} on {name}"), labels.activation)

        probs = probs_on(ws, split)
        row = {"teacher": str(p), "params": count_params(model),
               **split_figures(probs, labels.names, labels.activation, ws)}
        if record_rule:
            row["challenge_f1_rule"] = None
            if labels.activation == "softmax":
                fit = {s: probs if s == split else probs_on(w, s) for s, w in fit_sets.items()}
                rule, _ = fit_record_rule("logistic", labels.names, labels.activation, fit["train"], fit_sets["train"],
                                          fit["val"], fit_sets["val"], Path(p).name, log=lambda *_: None)
                row["challenge_f1_rule"] = rule_score(rule, probs, ws)[0]
        rows.append(row)
    return rows


def row_names(paths: Sequence[str | Path]) -> list[str]:
    """How the table names each model: its file name, or the path as given where file names repeat
    (``runs/seed0/student.pth`` beside ``runs/seed1/student.pth``)."""
    names = [Path(p).name for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m distill.compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("teachers", nargs="+", metavar="model",
                    help="teacher or student checkpoints (.pth) or teacher ensemble files (.json)")
    ap.add_argument("--split", choices=("val", "test"), default="val", help="split to score on (default: val)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N records of the split (smoke runs)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    ap.add_argument("--record-rule", action="store_true",
                    help="also the Challenge score by a logistic record rule fitted per model on the training "
                         "records (slow for teachers; optimistic on --split val, where it is chosen)")
    a = ap.parse_args(argv)
    rows = compare_teachers(a.teachers, a.split, a.limit, a.record_rule)
    names = list(rows[0]["auroc"])
    print(f"{a.split} split: {rows[0]['records']} records, {rows[0]['windows']} windows")
    rule = " Challenge F1, record rule |" if a.record_rule else ""
    print("| model | params | " + " | ".join(names) + " | mean AUROC | Challenge F1 (N, A, O) |" + rule)
    print("|---|---:|" + "---:|" * (len(names) + 2 + a.record_rule))
    fmt = lambda v: f"{v:.3f}" if v is not None else "n/a"  # noqa: E731
    for r, shown in zip(rows, row_names([r["teacher"] for r in rows])):
        print(f"| {shown} | {r['params']:,} | " + " | ".join(f"{r['auroc'][n]:.4f}" for n in names)
              + f" | {r['mean_auroc']:.4f} | {fmt(r['challenge_f1'])} |"
              + (f" {fmt(r['challenge_f1_rule'])} |" if a.record_rule else ""))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
