"""How far quantized outputs drift from float ones, and what that costs in AF AUROC (record level)."""
from __future__ import annotations

import numpy as np

from distill.metrics import evaluate


def compare(reference: np.ndarray, candidate: np.ndarray, record_idx: np.ndarray | None = None,
            record_labels: np.ndarray | None = None) -> dict:
    """Max/mean absolute probability error of ``candidate`` vs ``reference`` (both (n, C)); with labels also
    AF AUROC and macro-F1 of both and the AUROC drop."""
    err = np.abs(np.asarray(candidate, np.float64) - np.asarray(reference, np.float64))
    worst = err.max(1)
    out = {"max_abs_prob_error": float(err.max()), "mean_abs_prob_error": float(err.mean()),
           "p99_abs_prob_error": float(np.percentile(worst, 99)),
           "windows_over_0.03": float((worst > 0.03).mean()),
           "argmax_agreement": float((candidate.argmax(1) == reference.argmax(1)).mean()), "n_windows": int(len(err))}
    if record_idx is not None and record_labels is not None and reference.shape[1] == 4:
        r, c = evaluate(reference, record_idx, record_labels), evaluate(candidate, record_idx, record_labels)
        out.update({"af_auroc_reference": r["af_auroc"], "af_auroc": c["af_auroc"],
                    "af_auroc_drop": r["af_auroc"] - c["af_auroc"], "macro_f1_reference": r["macro_f1"],
                    "macro_f1": c["macro_f1"], "n_records": r["n_records"]})
    return out


def best_thresholds(probs: np.ndarray, record_idx: np.ndarray, record_labels: np.ndarray,
                    labels: list[str]) -> dict[str, float]:
    """One-vs-rest threshold per label maximising record-level F1 on a validation set."""
    from sklearn.metrics import precision_recall_curve

    from distill.metrics import record_probabilities

    p = record_probabilities(probs, record_idx, len(record_labels))
    out = {}
    for i, name in enumerate(labels):
        prec, rec, thr = precision_recall_curve(record_labels == i, p[:, i])
        f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
        out[name] = float(thr[int(np.argmax(f1[:-1]))]) if len(thr) else 0.5
    return out
