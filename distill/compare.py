"""Score teachers (checkpoints or ensemble files) side by side on one split of the project's Challenge 2017 split.

    python -m distill.compare models/reference_teacher.pth models/reference_teacher_gpu.pth \\
        models/teacher_ensemble.json --split val

Prints, per teacher, the record-level AUROC of each output, their mean and the Challenge 2017 score (mean F1
of N, A, O); ``--json`` writes the same as JSON. Choose teachers on ``val``; ``test`` is the held-out split.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import WindowSet, cinc2017_windows
from .distiller import activate, load_teacher
from .labels import challenge2017_f1
from .metrics import evaluate_by_name
from .student import count_params
from .torch_dataset import predict


def split_figures(probs: np.ndarray, names: Sequence[str], activation: str, ws: WindowSet) -> dict:
    """Record-level figures of window probabilities ``probs`` (n_windows, n_outputs) on window set ``ws``:
    ``{"auroc": {name: v}, "mean_auroc", "f1": {name: v} or None, "challenge_f1", "records", "windows"}``."""
    r = evaluate_by_name(probs, list(names), ws.record_idx, ws.y, ws.classes, ws.label_map, activation)
    return {"auroc": r["auroc"], "mean_auroc": r["mean_auroc"], "f1": r.get("f1"),
            "challenge_f1": challenge2017_f1(r.get("f1") or {}), "records": len(ws.records), "windows": len(ws)}


def compare_teachers(paths: Sequence[str | Path], split: str = "val", limit: int | None = None) -> list[dict]:
    """Figures of each teacher at ``paths`` on ``split`` (``val`` or ``test``; its first ``limit`` records when
    given): ``[{"teacher", "params", **split_figures(...)}]``."""
    ws = cinc2017_windows(split, limit=limit)
    rows = []
    for p in paths:
        t = load_teacher(p)
        probs = activate(predict(t.model, ws.x, desc=f"{Path(p).name} on {split}"), t.labels.activation)
        rows.append({"teacher": str(p), "params": count_params(t.model),
                     **split_figures(probs, t.labels.names, t.labels.activation, ws)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m distill.compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("teachers", nargs="+", help="teacher checkpoints (.pth) or ensemble files (.json)")
    ap.add_argument("--split", choices=("val", "test"), default="val", help="split to score on (default: val)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N records of the split (smoke runs)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    a = ap.parse_args(argv)
    rows = compare_teachers(a.teachers, a.split, a.limit)
    names = list(rows[0]["auroc"])
    print(f"{a.split} split: {rows[0]['records']} records, {rows[0]['windows']} windows")
    print("| teacher | params | " + " | ".join(names) + " | mean AUROC | Challenge F1 (N, A, O) |")
    print("|---|---:|" + "---:|" * (len(names) + 2))
    for r in rows:
        f1 = f"{r['challenge_f1']:.3f}" if r["challenge_f1"] is not None else "n/a"
        print(f"| {Path(r['teacher']).name} | {r['params']:,} | " + " | ".join(f"{r['auroc'][n]:.4f}" for n in names)
              + f" | {r['mean_auroc']:.4f} | {f1} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
