"""How far quantized outputs drift from float ones, what that costs in per-label AUROC, and thresholds.

Every per-label figure is keyed by output name; outputs the evaluation data cannot score are listed with
the reason instead.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from distill.data import WindowSet
from distill.labels import challenge2017_f1, is_cinc2017_labeled
from distill.metrics import evaluate_by_name, record_probabilities, scorable_outputs, record_classes
from distill.record_rule_fit import bootstrap_against_mean, rule_score
from edge_sdk.inference.onnx_backend import int8_kernel
from edge_sdk.labels import DEFAULT_THRESHOLD
from edge_sdk.record_rule import RecordRule


def measuring_machine() -> dict:
    """The machine the fidelity figures were measured on, for the model card."""
    import platform

    import onnxruntime

    return {"int8_kernel": int8_kernel(), "platform": platform.platform(), "onnxruntime": onnxruntime.__version__}


#: The rule written into model cards for thresholds chosen on validation data.
THRESHOLD_RULE = ("one-vs-rest threshold maximising record-level F1 (record score = mean of its windows' "
                  "probabilities) on the labeled validation records, per output the data can score")


def compare(reference: np.ndarray, candidate: np.ndarray, names: Sequence[str] | None = None,
            data: WindowSet | None = None, activation: str | None = None,
            record_rule: RecordRule | None = None) -> dict:
    """Max/mean/p99 absolute probability error of ``candidate`` vs ``reference`` (both (n, C)), agreement of
    the top label per window and, with ``data``, per record (record = mean of its windows); with labeled
    ``data`` and output ``names`` also per-label AUROC (and F1) of both, keyed by name. A logistic
    ``record_rule`` adds ``record_rule``: how often it gives a record the same label from both, and its
    record-level F1 (and Challenge 2017 score) on each."""
    err = np.abs(np.asarray(candidate, np.float64) - np.asarray(reference, np.float64))
    worst = err.max(1)
    out = {"max_abs_prob_error": float(err.max()), "mean_abs_prob_error": float(err.mean()),
           "p99_abs_prob_error": float(np.percentile(worst, 99)),
           "windows_over_0.03": float((worst > 0.03).mean()),
           "argmax_agreement": float((candidate.argmax(1) == reference.argmax(1)).mean()), "n_windows": int(len(err))}
    if data is not None and len(data.records) and len(data) == len(err):
        n = len(data.records)
        rc, rr = (record_probabilities(np.asarray(a, np.float64), data.record_idx, n) for a in (candidate, reference))
        out["record_top_label_agreement"] = float((rc.argmax(1) == rr.argmax(1)).mean())
        out["n_records_compared"] = int(n)
    if names is not None and data is not None and data.labeled:
        r = evaluate_by_name(reference, names, data.record_idx, data.y, data.classes, data.label_map, activation)
        c = evaluate_by_name(candidate, names, data.record_idx, data.y, data.classes, data.label_map, activation)
        out.update({"auroc_reference": r["auroc"], "auroc": c["auroc"],
                    "auroc_drop": {k: r["auroc"][k] - c["auroc"][k] for k in r["auroc"]},
                    "n_records": r["n_records"]})
        if "macro_f1" in r:
            out.update({"macro_f1_reference": r["macro_f1"], "macro_f1": c["macro_f1"],
                        "f1_reference": r["f1"], "f1": c["f1"]})
            if is_cinc2017_labeled(data.classes, data.label_map) and challenge2017_f1(r["f1"]) is not None:
                out.update({"challenge2017_f1_reference": challenge2017_f1(r["f1"]),
                            "challenge2017_f1": challenge2017_f1(c["f1"])})
    if record_rule is not None and record_rule.method == "logistic" and data is not None and len(data) == len(err):
        out["record_rule"] = rule_figures(record_rule, reference, candidate, data)
    return out


def rule_figures(rule: RecordRule, reference: np.ndarray, candidate: np.ndarray, data: WindowSet) -> dict:
    """What ``rule`` decides from ``reference`` and from ``candidate`` window probabilities on the records of
    ``data``: agreement over every record; with labels, F1 per output and the score of each, and for
    ``candidate`` the bootstrap interval of its score and of its gain over the highest mean probability."""
    ref, cand = (rule.decide_records(a, data.record_idx) for a in (reference, candidate))
    out: dict = {"method": rule.method, "agreement": float(np.mean([a == b for a, b in zip(ref, cand)])),
                 "n_records_compared": len(ref)}
    if data.labeled:
        (rs, what, rf1), (cs, _, cf1) = (rule_score(rule, a, data) for a in (reference, candidate))
        out.update({"selection": what, "score_reference": rs, "score": cs, "f1_reference": rf1, "f1": cf1})
        if what == "challenge2017_f1":
            out.update({"challenge2017_f1_reference": rs, "challenge2017_f1": cs})
        out["bootstrap"] = bootstrap_against_mean(rule, candidate, data)
    return out


def choose_thresholds(probs: np.ndarray, names: Sequence[str], data: WindowSet | None) -> tuple[dict[str, float], dict]:
    """Per-label thresholds chosen on labeled validation windows, and a description of how.

    Returns ``({name: threshold} for the outputs ``data`` can score, rule)``; the other outputs keep
    :data:`~edge_sdk.labels.DEFAULT_THRESHOLD` and are listed in the rule with the reason.
    """
    from sklearn.metrics import precision_recall_curve

    rule = {"validation": THRESHOLD_RULE, "default": DEFAULT_THRESHOLD,
            "data": data.description if data is not None else None, "not_chosen": {}}
    if data is None or not data.labeled:
        rule["not_chosen"] = {n: "no labeled validation data" for n in names}
        return {}, rule
    n_records = len(data.records)
    rec_cls = record_classes(data.y, data.record_idx, n_records)
    scorable, reasons = scorable_outputs(names, data.classes, data.label_map, rec_cls)
    p = record_probabilities(probs, data.record_idx, n_records)
    keep = rec_cls >= 0
    out = {}
    for name, c in scorable.items():
        prec, rec, thr = precision_recall_curve(rec_cls[keep] == c, p[keep, list(names).index(name)])
        f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
        out[name] = float(np.clip(thr[int(np.argmax(f1[:-1]))], 0.0, 1.0))
    rule["not_chosen"] = reasons
    rule["n_records"] = int(keep.sum())
    return out, rule
