"""Record-level evaluation by label name: per-output AUROC for the outputs a data set can score.

A data set scores an output when one of its labels maps to that output's name (Challenge 2017: ``A`` ->
``ATRIAL FIBRILLATION``, ...) and its records hold both positives and negatives for it. Records are scored
by the mean of their windows' probabilities.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score


def record_probabilities(window_probs: np.ndarray, record_idx: np.ndarray, n_records: int) -> np.ndarray:
    """Mean of window probabilities per record: ``(n_windows, C)`` -> ``(n_records, C)``."""
    out = np.zeros((n_records, window_probs.shape[1]), np.float64)
    counts = np.bincount(record_idx, minlength=n_records).astype(np.float64)
    np.add.at(out, record_idx, window_probs)
    return out / np.maximum(counts, 1)[:, None]


def record_classes(y: np.ndarray, record_idx: np.ndarray, n_records: int) -> np.ndarray:
    """Dataset label index per record (-1 where unlabeled) from per-window labels."""
    out = np.full(n_records, -1, np.int64)
    out[record_idx] = y
    return out


def scorable_outputs(output_names: Sequence[str], classes: Sequence[str], label_map: dict[str, str],
                     rec_cls: np.ndarray) -> tuple[dict[str, int], dict[str, str]]:
    """``({output name: dataset class index}, {output name: why not scorable})`` for these records."""
    scorable, reasons = {}, {}
    by_output = {label_map.get(c, c): i for i, c in enumerate(classes)}
    labeled = rec_cls[rec_cls >= 0]
    for name in output_names:
        if name not in by_output:
            reasons[name] = "no label of this data set maps to it" if len(classes) else "the data are unlabeled"
            continue
        positives = int((labeled == by_output[name]).sum())
        if positives == 0 or positives == len(labeled):
            reasons[name] = f"{positives} of {len(labeled)} records are positive: AUROC needs both"
            continue
        scorable[name] = by_output[name]
    return scorable, reasons


def evaluate_by_name(window_probs: np.ndarray, output_names: Sequence[str], record_idx: np.ndarray, y: np.ndarray,
                     classes: Sequence[str], label_map: dict[str, str], activation: str | None = None) -> dict:
    """Per-output record-level AUROC keyed by name, their mean, and what could not be scored.

    ``window_probs`` (n_windows, n_outputs) in the order of ``output_names``. For softmax models whose every
    dataset label maps to an output, also macro-F1 of the argmax over those outputs and each output's F1
    (``f1``, by name).
    """
    n_records = int(record_idx.max()) + 1 if len(record_idx) else 0
    rec_cls = record_classes(y, record_idx, n_records)
    p = record_probabilities(window_probs, record_idx, n_records)
    scorable, reasons = scorable_outputs(output_names, classes, label_map, rec_cls)
    keep = rec_cls >= 0
    auroc = {name: float(roc_auc_score(rec_cls[keep] == c, p[keep, list(output_names).index(name)]))
             for name, c in scorable.items()}
    out = {"auroc": auroc, "mean_auroc": float(np.mean(list(auroc.values()))) if auroc else None,
           "not_scored": reasons, "n_records": int(keep.sum())}
    mapped = [label_map.get(c, c) for c in classes]
    if activation == "softmax" and classes and all(m in output_names for m in mapped):
        cols = [list(output_names).index(m) for m in mapped]
        pred = np.asarray(cols)[np.argmax(p[keep][:, cols], 1)]
        truth = np.asarray(cols)[rec_cls[keep]]
        out["macro_f1"] = float(f1_score(truth, pred, average="macro", labels=cols))
        per = f1_score(truth, pred, average=None, labels=cols)
        out["f1"] = {output_names[c]: float(v) for c, v in zip(cols, per)}
    return out


def flat_metrics(result: dict, prefix: str = "") -> dict[str, float]:
    """``evaluate_by_name`` output as flat ``{prefix + "auroc/NAME": v, prefix + "mean_auroc": v, ...}``."""
    out = {f"{prefix}auroc/{k}": v for k, v in result["auroc"].items()}
    if result["mean_auroc"] is not None:
        out[f"{prefix}mean_auroc"] = result["mean_auroc"]
    if "macro_f1" in result:
        out[f"{prefix}macro_f1"] = result["macro_f1"]
    return out
