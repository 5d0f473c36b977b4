"""Record-level evaluation on Challenge 2017: AF AUROC and macro-F1 over N/A/O/~."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

AF_INDEX = 1


def record_probabilities(window_probs: np.ndarray, record_idx: np.ndarray, n_records: int) -> np.ndarray:
    """Mean of window probabilities per record: ``(n_windows, C)`` -> ``(n_records, C)``."""
    out = np.zeros((n_records, window_probs.shape[1]), np.float64)
    counts = np.bincount(record_idx, minlength=n_records).astype(np.float64)
    np.add.at(out, record_idx, window_probs)
    return out / np.maximum(counts, 1)[:, None]


def evaluate(window_probs: np.ndarray, record_idx: np.ndarray, record_labels: np.ndarray) -> dict[str, float]:
    """AF-vs-rest AUROC and macro-F1 (argmax) over the 4 classes, at record level."""
    p = record_probabilities(window_probs, record_idx, len(record_labels))
    return {
        "af_auroc": float(roc_auc_score(record_labels == AF_INDEX, p[:, AF_INDEX])),
        "macro_f1": float(f1_score(record_labels, p.argmax(1), average="macro", labels=[0, 1, 2, 3])),
        "n_records": int(len(record_labels)),
    }
