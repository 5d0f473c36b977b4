"""One decision per recording from its windows' probabilities: the model card's ``record_rule``.

The model classifies 10-s windows; a recording (a Challenge 2017 record, a streaming session, a file)
gets one label from all of its windows. :class:`RecordStats` keeps a bounded summary of the window
probabilities seen so far (count, mean, sum of logs, sum of squared deviations, max and min per output:
``O(outputs)`` memory however long the session runs); :class:`RecordRule` turns it into a label:

- ``method="mean"``: the output with the highest mean probability over the windows (what the card's AUROCs
  and its record-level agreement figures score when the card has no rule).
- ``method="logistic"``: a multinomial logistic regression over :data:`STATISTICS` of every output's
  window probabilities plus the log of the window count, fitted on labeled training records by
  ``ecg-edge quantize`` and stored in the card as data (feature names, coefficients, intercepts, the
  outputs it decides among). A record's max and min catch what a mean hides: a short run of AF in a
  long record, a noisy stretch.

The rule decides the *top label of a record*. Per-window detections keep using the card's thresholds.

A logistic rule knows the record lengths it was fitted on (``fitted_windows``: fewest and most windows). A
longer recording (a monitoring session of hours) is outside them: its window count enters the features
clipped to the longest fitted record, and the decision carries the quality flag
:data:`LONGER_THAN_FITTED`; call ``reset_record()`` on a stream every recording of about that length.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import BundleError, SignalError

#: Per-output statistics of window probabilities a logistic rule may use, in feature order.
STATISTICS: tuple[str, ...] = ("mean", "log_mean", "max", "min", "std")
#: The extra feature: natural log of the number of windows in the record.
COUNT_FEATURE = "log_windows"
#: Probabilities are floored here before their log is taken (``log_mean``).
LOG_FLOOR = 1e-6
METHODS = ("mean", "logistic")
#: Probabilities this far outside [0, 1] (float32 rounding of a runtime's softmax) are clipped, not refused.
PROB_SLACK = 1e-6
#: Decision flag: the recording has more windows than any record the logistic rule was fitted on.
LONGER_THAN_FITTED = "longer_than_fitted"


def feature_names(outputs: Sequence[str]) -> list[str]:
    """Names of the logistic rule's features for these outputs, in order: ``"mean:NAME"`` for every output,
    then ``"log_mean:NAME"``, ``"max:NAME"``, ``"min:NAME"``, ``"std:NAME"``, then ``"log_windows"``."""
    return [f"{s}:{n}" for s in STATISTICS for n in outputs] + [COUNT_FEATURE]


def windows_by_record(record_idx: np.ndarray, n_records: int) -> list[np.ndarray]:
    """Indices of each record's windows, in window order: ``record_idx`` ``(n,)`` ints in ``0..n_records-1``
    -> ``n_records`` index arrays (empty for a record without windows)."""
    record_idx = np.asarray(record_idx)
    order = np.argsort(record_idx, kind="stable")
    bounds = np.searchsorted(record_idx[order], np.arange(n_records + 1))
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


class RecordStats:
    """Running summary of one recording's window probabilities, ``n_outputs`` per window.

    Memory is ``O(n_outputs)``: a monitoring session may run for days. ``add`` takes one window ``(C,)``
    or several ``(n, C)``; ``features()`` gives the vector named by :func:`feature_names`.
    """

    def __init__(self, n_outputs: int):
        if isinstance(n_outputs, bool) or not isinstance(n_outputs, int) or n_outputs < 1:
            raise SignalError(f"n_outputs must be a positive int, got {n_outputs!r}")
        self.n_outputs = n_outputs
        self.n_windows = 0
        self._mean = np.zeros(n_outputs)
        self._sum_log = np.zeros(n_outputs)
        self._m2 = np.zeros(n_outputs)  # sum of squared deviations from the mean (Chan et al.'s update)
        self._max = np.full(n_outputs, -np.inf)
        self._min = np.full(n_outputs, np.inf)

    def add(self, probs: np.ndarray) -> "RecordStats":
        """Add window probabilities ``(C,)`` or ``(n, C)`` in [0, 1]; returns ``self``."""
        p = np.asarray(probs, np.float64)
        p = p[None] if p.ndim == 1 else p
        if p.ndim != 2 or p.shape[1] != self.n_outputs:
            raise SignalError(f"window probabilities of shape {np.shape(probs)} do not match {self.n_outputs} outputs")
        if not np.isfinite(p).all() or (p < -PROB_SLACK).any() or (p > 1 + PROB_SLACK).any():
            raise SignalError("window probabilities must be finite and within [0, 1]")
        p = np.clip(p, 0.0, 1.0)  # float32 rounding may overshoot by a few 1e-8
        if not len(p):
            return self
        n_a, n_b = self.n_windows, len(p)
        mean_b = p.mean(0)
        delta = mean_b - self._mean
        self.n_windows = n = n_a + n_b
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + ((p - mean_b) ** 2).sum(0) + delta * delta * (n_a * n_b / n)
        self._sum_log += np.log(np.maximum(p, LOG_FLOOR)).sum(0)
        self._max = np.maximum(self._max, p.max(0))
        self._min = np.minimum(self._min, p.min(0))
        return self

    @property
    def mean(self) -> np.ndarray:
        """Mean probability per output ``(C,)``."""
        self._need_windows()
        return self._mean.copy()

    def features(self) -> np.ndarray:
        """The feature vector ``(len(STATISTICS) * C + 1,)`` in the order of :func:`feature_names`."""
        mean = self.mean
        std = np.sqrt(self._m2 / self.n_windows)
        return np.concatenate([mean, self._sum_log / self.n_windows, self._max, self._min, std,
                               [np.log(self.n_windows)]])

    def _need_windows(self) -> None:
        if self.n_windows == 0:
            raise SignalError("no windows yet: a record decision needs at least one window")


@dataclass(frozen=True)
class RecordDecision:
    """A recording's label: ``label`` (an output name), ``scores`` (output name -> score in [0, 1]: the
    mean probability for ``method="mean"``, the rule's class probability for ``"logistic"``),
    ``n_windows``, the ``method`` that decided and quality ``flags`` (:data:`LONGER_THAN_FITTED`; empty =
    the recording is like those the rule was fitted on)."""

    label: str
    scores: dict[str, float]
    n_windows: int
    method: str
    flags: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"label": self.label, "scores": dict(self.scores), "n_windows": self.n_windows, "method": self.method,
                "flags": list(self.flags)}


@dataclass(frozen=True, eq=False)  # holds arrays: compare rules by to_dict()
class RecordRule:
    """How a recording's windows become one label (see the module docstring).

    ``outputs``: the card's output names in output order. ``classes``: the outputs the logistic rule decides
    among (its rows of ``coef``); ``coef`` ``(len(classes), len(features))``; ``intercept``
    ``(len(classes),)``; ``fitted_windows``: ``(fewest, most)`` windows of the records it was fitted on;
    ``fitted``: where and how it was fitted (data, records, regularisation, scores).
    """

    outputs: tuple[str, ...]
    method: str = "mean"
    classes: tuple[str, ...] = ()
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None
    fitted: dict = field(default_factory=dict)
    fitted_windows: tuple[int, int] | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise BundleError(f"record_rule method {self.method!r} is unknown; known: {list(METHODS)}")
        if self.method == "logistic":
            k, f = len(self.classes), len(feature_names(self.outputs))
            if k < 2 or not set(self.classes) <= set(self.outputs) or len(set(self.classes)) != k:
                raise BundleError(f"record_rule classes {list(self.classes)} must be two or more distinct outputs "
                                  f"of {list(self.outputs)}")
            coef, icpt = np.asarray(self.coef, np.float64), np.asarray(self.intercept, np.float64)
            if coef.shape != (k, f) or icpt.shape != (k,) or not (np.isfinite(coef).all() and np.isfinite(icpt).all()):
                raise BundleError(f"record_rule needs finite coef ({k}, {f}) and intercept ({k},); got "
                                  f"{coef.shape} and {icpt.shape}; rebuild the bundle with `ecg-edge quantize`")
            object.__setattr__(self, "coef", coef)
            object.__setattr__(self, "intercept", icpt)
            fw = self.fitted_windows
            if fw is not None:
                if (not isinstance(fw, (tuple, list)) or len(fw) != 2
                        or not all(isinstance(v, int) and not isinstance(v, bool) for v in fw) or not 1 <= fw[0] <= fw[1]):
                    raise BundleError(f"record_rule fitted_windows must be [fewest, most] windows (ints, 1 <= fewest "
                                      f"<= most), got {fw!r}")
                object.__setattr__(self, "fitted_windows", (fw[0], fw[1]))

    def new_stats(self) -> RecordStats:
        """An empty :class:`RecordStats` for this rule's outputs."""
        return RecordStats(len(self.outputs))

    def decide(self, stats: RecordStats | np.ndarray) -> RecordDecision:
        """The label of a recording from its :class:`RecordStats` (or its window probabilities ``(n, C)``)."""
        if not isinstance(stats, RecordStats):
            stats = self.new_stats().add(stats)
        if stats.n_outputs != len(self.outputs):
            raise SignalError(f"record statistics over {stats.n_outputs} outputs do not match the rule's "
                              f"{len(self.outputs)}")
        if self.method == "mean":
            mean = stats.mean
            return RecordDecision(self.outputs[int(np.argmax(mean))], dict(zip(self.outputs, map(float, mean))),
                                  stats.n_windows, self.method)
        longer = self.fitted_windows is not None and stats.n_windows > self.fitted_windows[1]
        flags = (LONGER_THAN_FITTED,) if longer else ()
        p = self.class_scores(self.within_fitted(stats.features()))
        return RecordDecision(self.classes[int(np.argmax(p))], dict(zip(self.classes, map(float, p))),
                              stats.n_windows, self.method, flags)

    def within_fitted(self, features: np.ndarray) -> np.ndarray:
        """Feature vectors ``(..., F)`` with the window count clipped to the longest fitted record (a copy)."""
        out = np.array(features, np.float64)
        if self.fitted_windows is not None:
            out[..., -1] = np.minimum(out[..., -1], np.log(self.fitted_windows[1]))
        return out

    def class_scores(self, features: np.ndarray) -> np.ndarray:
        """Logistic rule: probabilities over ``classes`` ``(..., K)`` from feature vectors ``(..., F)`` (softmax
        of ``features @ coef.T + intercept``)."""
        if self.method != "logistic":
            raise BundleError(f"class_scores needs a logistic record rule; this one is {self.method!r}")
        z = np.asarray(features, np.float64) @ self.coef.T + self.intercept
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def decide_records(self, window_probs: np.ndarray, record_idx: np.ndarray) -> list[str]:
        """Labels of many records at once: ``window_probs`` ``(n, C)``, ``record_idx`` ``(n,)`` ints from 0;
        returns one output name per record index ``0..record_idx.max()`` (records without windows: ``""``)."""
        window_probs, record_idx = np.asarray(window_probs), np.asarray(record_idx)
        if len(window_probs) != len(record_idx):
            raise SignalError(f"{len(window_probs)} windows but {len(record_idx)} record indices")
        if not len(record_idx):
            return []
        return [self.decide(window_probs[idx]).label if len(idx) else ""
                for idx in windows_by_record(record_idx, int(record_idx.max()) + 1)]

    def to_dict(self) -> dict:
        """The card's ``record_rule`` object (JSON-ready)."""
        out: dict[str, Any] = {"method": self.method}
        if self.method == "logistic":
            out.update({"classes": list(self.classes), "features": feature_names(self.outputs),
                        "coef": self.coef.tolist(), "intercept": self.intercept.tolist(),
                        "log_floor": LOG_FLOOR})
            if self.fitted_windows is not None:
                out["fitted_windows"] = list(self.fitted_windows)
        if self.fitted:
            out["fitted"] = self.fitted
        return out

    @classmethod
    def from_dict(cls, d: Any, outputs: Sequence[str], where: str = "record_rule") -> "RecordRule":
        """Read a card's ``record_rule`` for a model with ``outputs``; :class:`BundleError` when it does not fit
        them (another feature list, unknown classes, wrong shapes)."""
        if not isinstance(d, dict):
            raise BundleError(f"{where} must be a JSON object, got {type(d).__name__}")
        method = d.get("method")
        if method == "logistic":
            want = feature_names(outputs)
            if d.get("features") != want:
                raise BundleError(f"{where}: its features {d.get('features')!r} are not the ones this SDK computes "
                                  f"for the card's outputs ({want}); rebuild the bundle with `ecg-edge quantize`")
            if d.get("log_floor", LOG_FLOOR) != LOG_FLOOR:
                raise BundleError(f"{where}: log_floor {d.get('log_floor')!r} differs from this SDK's {LOG_FLOOR}")
            classes = d.get("classes")
            if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
                raise BundleError(f"{where}: classes must be a list of output names")
            try:
                coef, icpt = np.asarray(d.get("coef"), np.float64), np.asarray(d.get("intercept"), np.float64)
            except (TypeError, ValueError) as e:
                raise BundleError(f"{where}: coef and intercept must be numbers ({e})") from None
            fw = d.get("fitted_windows")
            return cls(tuple(outputs), method, tuple(classes), coef, icpt, dict(d.get("fitted") or {}),
                       tuple(fw) if isinstance(fw, list) else fw)
        return cls(tuple(outputs), method if isinstance(method, str) else repr(method), fitted=dict(d.get("fitted") or {}))
