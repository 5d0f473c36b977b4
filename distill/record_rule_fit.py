"""Fit the model card's record rule (:mod:`edge_sdk.record_rule`): how a recording's windows become one label.

``method="logistic"`` fits a multinomial logistic regression (scikit-learn) on the float student's window
probabilities of the labeled *training* records, one row per record (the statistics of
:func:`edge_sdk.record_rule.feature_names`), for each regularisation strength in ``C_GRID``, and keeps the
one that scores best on the *validation* records (the Challenge 2017 score where the data carry its labels,
else macro-F1 over the rule's classes). The held-out records take no part.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from distill.data import WindowSet
from distill.labels import CINC2017_LABEL_MAP, CINC2017_SCORED_CLASSES, is_cinc2017_labeled
from edge_sdk.errors import ConfigError
from edge_sdk.record_rule import METHODS, RecordRule, windows_by_record

#: Inverse regularisation strengths tried (scikit-learn's ``C``), smallest first; ties keep the smaller.
C_GRID: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def record_rows(probs: np.ndarray, data: WindowSet, rule: RecordRule) -> tuple[np.ndarray, np.ndarray]:
    """``(features (n_records, F), output name index (n_records,))`` of the records of ``data`` whose windows
    all carry one label that maps to an output (others, e.g. long recordings of several rhythms, are left
    out), from window probabilities ``probs`` ``(len(data), C)``."""
    outputs = list(rule.outputs)
    feats, target = [], []
    for idx in windows_by_record(data.record_idx, len(data.records)):
        labels = np.unique(data.y[idx])
        if len(idx) == 0 or len(labels) != 1 or labels[0] < 0:
            continue
        name = data.label_map.get(data.classes[labels[0]], data.classes[labels[0]])
        if name not in outputs:
            continue
        feats.append(rule.new_stats().add(probs[idx]).features())
        target.append(outputs.index(name))
    return np.asarray(feats).reshape(len(feats), -1), np.asarray(target, np.int64)


def rule_predictions(rule: RecordRule, probs: np.ndarray, data: WindowSet) -> tuple[np.ndarray, np.ndarray]:
    """``(true output index, decided output index)`` per labeled record of ``data`` (see :func:`record_rows`)."""
    x, y = record_rows(probs, data, rule)
    if not len(y):
        raise ConfigError(f"{data.description}: no records with one label that maps to an output, so the record "
                          "rule cannot be scored; give labeled records")
    if rule.method == "logistic":
        pred = np.array([rule.outputs.index(c) for c in rule.classes])[np.argmax(rule.class_scores(rule.within_fitted(x)), 1)]
    else:  # the features start with each output's mean probability
        pred = np.argmax(x[:, :len(rule.outputs)], 1)
    return y, pred


def _scored(rule: RecordRule, y: np.ndarray, data: WindowSet) -> tuple[list[int], str]:
    """Output indices whose mean F1 is the score, and its name."""
    if is_cinc2017_labeled(data.classes, data.label_map):
        return [rule.outputs.index(CINC2017_LABEL_MAP[c]) for c in CINC2017_SCORED_CLASSES], "challenge2017_f1"
    return sorted(set(y.tolist())), "macro_f1"


def _f1(y: np.ndarray, pred: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """F1 per label (0 where a label is neither true nor predicted), as scikit-learn's ``f1_score``."""
    tp = np.array([np.sum((y == c) & (pred == c)) for c in labels], np.float64)
    denom = np.array([np.sum(y == c) + np.sum(pred == c) for c in labels], np.float64)
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def rule_score(rule: RecordRule, probs: np.ndarray, data: WindowSet) -> tuple[float, str, dict[str, float]]:
    """``(score, what it is, F1 per output name)`` of ``rule`` on the labeled records of ``data``: the Challenge
    2017 score (mean F1 of N, A, O) where ``data`` carries those labels, else macro-F1 over the outputs the
    records are labeled with."""
    y, pred = rule_predictions(rule, probs, data)
    present = sorted(set(y.tolist()))
    f1 = dict(zip((rule.outputs[i] for i in present), map(float, _f1(y, pred, present))))
    scored, what = _scored(rule, y, data)
    return float(_f1(y, pred, scored).mean()), what, f1


#: Bootstrap resamples of the records behind the card's intervals, and their seed.
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 1000, 0


def bootstrap_against_mean(rule: RecordRule, probs: np.ndarray, data: WindowSet) -> dict:
    """How sure the score of ``rule`` on these records is: :data:`BOOTSTRAP_RESAMPLES` resamples of the
    labeled records (with replacement, seeded) give the standard error and 95 % interval of its score and
    of its gain over the highest mean probability on the same resampled records."""
    y, pred = rule_predictions(rule, probs, data)
    _, pred_mean = rule_predictions(RecordRule(rule.outputs, "mean"), probs, data)
    scored, what = _scored(rule, y, data)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    scores, gains = [], []
    for _ in range(BOOTSTRAP_RESAMPLES):
        i = rng.integers(0, len(y), len(y))
        s = _f1(y[i], pred[i], scored).mean()
        scores.append(s)
        gains.append(s - _f1(y[i], pred_mean[i], scored).mean())
    point = _f1(y, pred, scored).mean()
    return {"what": what, "resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "n_records": int(len(y)),
            "score": float(point), "score_se": float(np.std(scores)),
            "score_ci95": [float(v) for v in np.percentile(scores, [2.5, 97.5])],
            "gain_vs_mean": float(point - _f1(y, pred_mean, scored).mean()),
            "gain_vs_mean_ci95": [float(v) for v in np.percentile(gains, [2.5, 97.5])]}


def check_record_rule(method: str, activation: str) -> None:
    """:class:`ConfigError` (before any work) unless ``method`` is known and fits a model with ``activation``
    outputs."""
    if method not in METHODS:
        raise ConfigError(f"record_rule must be one of {list(METHODS)}, not {method!r}")
    if method == "logistic" and activation != "softmax":
        raise ConfigError(f"record_rule 'logistic' picks one label per record among mutually exclusive outputs; "
                          f"this model's outputs are {activation}: use record_rule 'mean'")


def check_record_rule_data(method: str, train: WindowSet | None, val: WindowSet | None) -> None:
    """:class:`ConfigError` (before any work) unless ``method`` can be fitted on these training windows and
    chosen on these validation windows (``logistic`` needs both labeled)."""
    if method == "logistic" and (train is None or val is None or not train.labeled or not val.labeled):
        raise ConfigError("record_rule 'logistic' is fitted on labeled training records and chosen on labeled "
                          "validation records; these data are unlabeled: use record_rule 'mean'")


def fit_record_rule(method: str, outputs: Sequence[str], activation: str, train_probs: np.ndarray, train: WindowSet,
                    val_probs: np.ndarray | None, val: WindowSet | None, probabilities_from: str,
                    log=print) -> tuple[RecordRule, dict]:
    """The record rule for a card, and a report of how it was chosen.

    ``train_probs``/``val_probs``: the float student's window probabilities on ``train``/``val``.
    ``"mean"`` needs nothing fitted. ``"logistic"`` needs softmax outputs (one label per record) and labeled
    training and validation records of at least two outputs; otherwise a :class:`ConfigError` that says
    to use ``"mean"``.
    """
    from sklearn.linear_model import LogisticRegression

    check_record_rule(method, activation)
    check_record_rule_data(method, train, val)
    mean_rule = RecordRule(tuple(outputs), "mean")
    if method == "mean":
        return mean_rule, {}
    if val_probs is None:
        raise ConfigError("record_rule 'logistic' is chosen on the validation records' probabilities; none given")
    x, y = record_rows(train_probs, train, mean_rule)
    present = sorted(set(y.tolist()))
    if len(present) < 2:
        raise ConfigError(f"record_rule 'logistic' needs training records of two or more outputs; {train.description} "
                          f"has {len(present)}: use record_rule 'mean'")
    classes = tuple(outputs[i] for i in present)
    n_windows = np.rint(np.exp(x[:, -1])).astype(int)  # the last feature is ln(windows)
    fitted_windows = (int(n_windows.min()), int(n_windows.max()))
    mean_score, selection, _ = rule_score(mean_rule, val_probs, val)
    scores, best = {}, None
    # fitted on standardised features (well conditioned: lbfgs converges to the same optimum everywhere),
    # then folded back so the card's coefficients apply to the raw features
    mu, sd = x.mean(0), np.maximum(x.std(0), 1e-12)
    for c in C_GRID:
        m = LogisticRegression(C=c, max_iter=10000).fit((x - mu) / sd, y)
        if m.n_iter_.max() >= m.max_iter:
            raise ConfigError(f"the record rule's logistic regression (C {c:g}) did not converge in {m.max_iter} "
                              f"iterations on {len(y)} training records: use record_rule 'mean'")
        coef = m.coef_ / sd
        rule = RecordRule(tuple(outputs), "logistic", classes, coef, m.intercept_ - coef @ mu,
                          fitted_windows=fitted_windows)
        scores[c] = rule_score(rule, val_probs, val)[0]
        if best is None or scores[c] > scores[best[0]]:
            best = (c, rule)
        log(f"record rule: C {c:g}: validation {selection} {scores[c]:.4f}")
    c, rule = best
    counts = {outputs[i]: int((y == i).sum()) for i in present}
    fitted = {"data": train.description, "n_records": int(len(y)), "records_per_class": counts,
              "probabilities_from": probabilities_from, "regularization_C": c, "C_grid": list(C_GRID),
              "chosen_on": val.description, "selection": selection,
              "validation": {"logistic_by_C": {f"{k:g}": v for k, v in scores.items()}, "mean_rule": mean_score}}
    log(f"record rule: logistic, C {c:g} ({len(y)} training records); validation {selection} {scores[c]:.4f} "
        f"against {mean_score:.4f} for the highest mean probability")
    return RecordRule(tuple(outputs), "logistic", classes, rule.coef, rule.intercept, fitted, fitted_windows), fitted


def rule_example(rule: RecordRule, window_probs: np.ndarray, record: str) -> dict:
    """A worked example for native ports (the card's ``record_rule.example``): one held-out ``record``'s window
    probabilities ``(n, C)``, the features computed from them (window count capped as the rule caps it), the
    rule's scores and its label."""
    stats = rule.new_stats().add(window_probs)
    d = rule.decide(stats)
    return {"record": record, "window_probabilities": np.asarray(window_probs, np.float64).tolist(),
            "features": rule.within_fitted(stats.features()).tolist(), "scores": d.scores, "label": d.label}
