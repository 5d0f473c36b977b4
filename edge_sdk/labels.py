"""The label table: what each model output means, from teacher checkpoint to app prediction.

A :class:`LabelTable` lists a model's outputs in order. Each :class:`OutputLabel` has a name, its index in
ECGFounder's 150-label vocabulary (``tasks.txt``, shipped as ``edge_sdk/vocab/ecgfounder_tasks.txt``) or
``None`` where the vocabulary has no such label, the output activation (``softmax`` for mutually exclusive
classes, ``sigmoid`` for independent labels), a decision threshold in [0, 1] and where that threshold
came from (``validation``: chosen on labeled validation records; ``default``: no labeled data for it).

The same table is stored in student checkpoints, written into the model card and carried by every
:class:`~edge_sdk.stream.Prediction`; no code assumes a number of classes or the position of a label.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import LabelError

ECGFOUNDER_VOCABULARY = "ECGFounder tasks.txt"
ACTIVATIONS = ("softmax", "sigmoid")
THRESHOLD_SOURCES = ("validation", "default")
#: Threshold used where no labeled validation data can choose one.
DEFAULT_THRESHOLD = 0.5


@lru_cache(maxsize=1)
def ecgfounder_labels() -> tuple[str, ...]:
    """ECGFounder's 150 output labels in output order (its ``tasks.txt``)."""
    text = (Path(__file__).parent / "vocab" / "ecgfounder_tasks.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def vocab_index_of(name: str) -> int | None:
    """Index of ``name`` in ECGFounder's vocabulary (exact match), or ``None``."""
    try:
        return ecgfounder_labels().index(name)
    except ValueError:
        return None


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Up to ``n`` names from ``candidates`` that look like ``name`` (case-insensitive)."""
    cands = list(candidates)
    upper = {c.upper(): c for c in cands}
    hits = difflib.get_close_matches(name.upper(), list(upper), n=n, cutoff=0.5)
    contains = [c for c in cands if name.upper() in c.upper() and c.upper() not in hits]
    return ([upper[h] for h in hits] + contains)[:n]


def parse_label_list(spec: str | Sequence[str]) -> list[str]:
    """Label names from a comma-separated string, ``@file`` (one name a line; ``#`` starts a comment) or a list.

    Names are stripped; empty entries are dropped; duplicates raise :class:`LabelError`.
    """
    if isinstance(spec, str):
        if spec.startswith("@"):
            path = Path(spec[1:])
            if not path.is_file():
                raise LabelError(f"label file {path} not found; give names as \"A,B\" or @file with one name a line")
            try:
                # utf-8-sig: a byte-order mark from a Windows editor is not part of the first name
                lines = path.read_text(encoding="utf-8-sig").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise LabelError(f"label file {path} is not readable UTF-8 text ({e})") from e
            names = [line.split("#", 1)[0].strip() for line in lines]
        else:
            names = [s.strip() for s in spec.split(",")]
    else:
        names = [str(s).strip() for s in spec]
    names = [n for n in names if n]
    if not names:
        raise LabelError(f"no label names in {spec!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LabelError(f"label names given more than once: {dupes}")
    return names


@dataclass(frozen=True)
class OutputLabel:
    """One model output. ``threshold``: probability at or above which the label is reported as detected."""

    name: str
    vocab_index: int | None
    activation: str
    threshold: float = DEFAULT_THRESHOLD
    threshold_source: str = "default"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vocab_index": self.vocab_index, "activation": self.activation,
                "threshold": self.threshold, "threshold_source": self.threshold_source}


@dataclass(frozen=True)
class LabelTable:
    """The outputs of a model, in output order. Build with :meth:`from_names` or :meth:`from_list`."""

    labels: tuple[OutputLabel, ...]
    vocabulary: str = ECGFOUNDER_VOCABULARY

    def __post_init__(self) -> None:
        _check_labels(self.labels)

    # --- construction -------------------------------------------------------------------------------
    @classmethod
    def from_names(cls, names: Sequence[str], activation: str,
                   vocab_index: Sequence[int | None] | None = None) -> "LabelTable":
        """A table with default thresholds; ``vocab_index`` defaults to each name's place in ECGFounder's vocabulary."""
        names = [str(n) for n in names]
        if vocab_index is None:
            vocab_index = [vocab_index_of(n) for n in names]
        if len(vocab_index) != len(names):
            raise LabelError(f"{len(names)} label names but {len(vocab_index)} vocabulary indices")
        return cls(tuple(OutputLabel(n, v, activation) for n, v in zip(names, vocab_index)))

    @classmethod
    def ecgfounder(cls) -> "LabelTable":
        """ECGFounder's 150 sigmoid outputs, named from ``tasks.txt``."""
        return cls.from_names(ecgfounder_labels(), "sigmoid", list(range(len(ecgfounder_labels()))))

    @classmethod
    def from_list(cls, items: Any, vocabulary: str = ECGFOUNDER_VOCABULARY, where: str = "label table") -> "LabelTable":
        """Parse the card/checkpoint form: a list of ``{name, vocab_index, activation, threshold, threshold_source}``."""
        if not isinstance(items, list) or not items:
            raise LabelError(f"{where}: labels must be a non-empty list of label objects, got {type(items).__name__}")
        out = []
        for i, d in enumerate(items):
            if not isinstance(d, Mapping):
                raise LabelError(f"{where}: label {i} must be an object with name, vocab_index, activation, "
                                 f"threshold, threshold_source; got {type(d).__name__}")
            missing = [k for k in ("name", "vocab_index", "activation", "threshold", "threshold_source") if k not in d]
            if missing:
                raise LabelError(f"{where}: label {i} lacks {missing}")
            out.append(OutputLabel(d["name"], d["vocab_index"], d["activation"], d["threshold"], d["threshold_source"]))
        try:
            return cls(tuple(out), vocabulary)
        except LabelError as e:
            raise LabelError(f"{where}: {e}") from e

    def to_list(self) -> list[dict[str, Any]]:
        return [lab.to_dict() for lab in self.labels]

    # --- queries ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        return iter(self.labels)

    @property
    def names(self) -> list[str]:
        return [lab.name for lab in self.labels]

    @property
    def activation(self) -> str:
        return self.labels[0].activation

    @property
    def thresholds(self) -> dict[str, float]:
        return {lab.name: lab.threshold for lab in self.labels}

    def index(self, name: str) -> int:
        """Output index of ``name``; :class:`LabelError` with close matches when there is none."""
        for i, lab in enumerate(self.labels):
            if lab.name == name:
                return i
        hint = close_matches(name, self.names)
        raise LabelError(f"no output named {name!r}" + (f"; close matches: {hint}" if hint else "")
                         + f" ({len(self)} outputs; names are case-sensitive)")

    def indices(self, names: Sequence[str]) -> list[int]:
        """Output indices of ``names``; every unknown name is reported at once, with close matches."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            parts = []
            for n in unknown:
                hint = close_matches(n, self.names)
                parts.append(f"{n!r}" + (f" (close matches: {hint})" if hint else " (no close match)"))
            raise LabelError(f"unknown label name(s) {'; '.join(parts)}; the model has {len(self)} outputs"
                             + (f", e.g. {self.names[:6]}" if len(self) > 6 else f": {self.names}"))
        return [self.names.index(n) for n in names]

    def subset(self, names: Sequence[str]) -> "LabelTable":
        """The outputs ``names`` in that order (thresholds kept)."""
        return LabelTable(tuple(self.labels[i] for i in self.indices(list(names))), self.vocabulary)

    def with_thresholds(self, thresholds: Mapping[str, float], source: str) -> "LabelTable":
        """A copy whose labels in ``thresholds`` take that value and ``source``; the others are unchanged."""
        self.indices(list(thresholds))
        return LabelTable(tuple(replace(lab, threshold=float(thresholds[lab.name]), threshold_source=source)
                                if lab.name in thresholds else lab for lab in self.labels), self.vocabulary)

    def with_default_thresholds(self) -> "LabelTable":
        return LabelTable(tuple(replace(lab, threshold=DEFAULT_THRESHOLD, threshold_source="default")
                                for lab in self.labels), self.vocabulary)


def _check_labels(labels: tuple[OutputLabel, ...]) -> None:
    if not labels:
        raise LabelError("a label table needs at least one output")
    names = []
    for i, lab in enumerate(labels):
        if not isinstance(lab.name, str) or not lab.name.strip():
            raise LabelError(f"label {i}: name must be a non-empty string, got {lab.name!r}")
        names.append(lab.name)
        if lab.activation not in ACTIVATIONS:
            raise LabelError(f"label {lab.name!r}: activation {lab.activation!r} is not one of {ACTIVATIONS}")
        if lab.vocab_index is not None:
            vocab = ecgfounder_labels()
            if isinstance(lab.vocab_index, bool) or not isinstance(lab.vocab_index, int) \
                    or not 0 <= lab.vocab_index < len(vocab):
                raise LabelError(f"label {lab.name!r}: vocab_index {lab.vocab_index!r} is not an index of "
                                 f"ECGFounder's {len(vocab)}-label vocabulary (or null)")
            if vocab[lab.vocab_index] != lab.name:
                raise LabelError(f"label {lab.name!r}: vocab_index {lab.vocab_index} is "
                                 f"{vocab[lab.vocab_index]!r} in ECGFounder's vocabulary")
        t = lab.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0.0 <= t <= 1.0:
            raise LabelError(f"label {lab.name!r}: threshold {t!r} must be a number in [0, 1]")
        if lab.threshold_source not in THRESHOLD_SOURCES:
            raise LabelError(f"label {lab.name!r}: threshold_source {lab.threshold_source!r} is not one of "
                             f"{THRESHOLD_SOURCES}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LabelError(f"duplicate label names {dupes}: each output needs its own name")
    if len({lab.activation for lab in labels}) > 1:
        raise LabelError("all outputs of one model share one activation (softmax or sigmoid); got "
                         f"{sorted({lab.activation for lab in labels})}")
