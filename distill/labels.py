"""Label tables of checkpoints, and dataset labels mapped to model outputs by name.

* :func:`checkpoint_label_table` - the outputs of a teacher or student checkpoint. This project's
  checkpoints store their table; an official ECGFounder checkpoint (150 outputs, no names) gets the names of
  ``tasks.txt`` with sigmoid outputs; any other checkpoint without names needs them given (``--teacher-labels``).
* :func:`hard_targets` - a dataset's labels (e.g. Challenge 2017 ``N/A/O/~``) as output indices of a
  student, through a name mapping (:data:`CINC2017_LABEL_MAP`). A dataset label whose output the student
  lacks is an error unless the caller asks to keep such windows unlabeled.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from edge_sdk.errors import LabelError
from edge_sdk.labels import LabelTable, ecgfounder_labels, parse_label_list

#: Challenge 2017 classes -> output names (ECGFounder's where it has them).
CINC2017_LABEL_MAP: dict[str, str] = {"N": "NORMAL SINUS RHYTHM", "A": "ATRIAL FIBRILLATION",
                                      "O": "OTHER RHYTHM", "~": "NOISE"}
UNMAPPED_POLICIES = ("error", "unlabeled")


def checkpoint_label_table(ckpt: Mapping[str, Any], n_outputs: int, names: Sequence[str] | str | None = None,
                           where: str = "checkpoint") -> LabelTable:
    """The label table of a loaded checkpoint dict with ``n_outputs`` outputs.

    ``names`` (a list, ``"A,B"`` or ``@file``) overrides the names stored in the checkpoint.
    """
    meta = ckpt.get("meta") or {}
    if names is not None:
        given = parse_label_list(names)
        if len(given) != n_outputs:
            raise LabelError(f"{len(given)} label names given for a {where} with {n_outputs} outputs")
        activation = meta.get("activation") or "sigmoid"
        return LabelTable.from_names(given, activation)
    stored = ckpt.get("labels")
    if isinstance(stored, list) and stored and all(isinstance(d, Mapping) for d in stored):
        table = LabelTable.from_list(list(stored), where=f"{where} labels")
    elif isinstance(stored, list) and stored and all(isinstance(s, str) for s in stored):
        # this project's first checkpoint format: names, activation in meta, vocabulary index by name
        table = LabelTable.from_names(stored, meta.get("activation", "softmax"))
    elif stored not in (None, []):
        raise LabelError(f"{where} stores labels {str(stored)[:80]!r}, neither label names nor a label table; give the "
                         "names with --teacher-labels (\"NAME1,NAME2,...\" or @file, in output order)")
    elif n_outputs == len(ecgfounder_labels()):
        return LabelTable.ecgfounder()  # official ECGFounder checkpoint: tasks.txt order, sigmoid
    else:
        raise LabelError(f"{where} has {n_outputs} outputs but no label names; give them with --teacher-labels "
                         "(\"NAME1,NAME2,...\" or @file with one name a line, in output order)")
    if len(table) != n_outputs:
        raise LabelError(f"{where} names {len(table)} labels but its model has {n_outputs} outputs")
    return table


def parse_label_map(spec: str | Mapping[str, str] | None) -> dict[str, str] | None:
    """``"A=ATRIAL FIBRILLATION;N=NORMAL SINUS RHYTHM"`` (or a dict) -> ``{dataset label: output name}``."""
    if spec is None or isinstance(spec, Mapping):
        return dict(spec) if spec is not None else None
    out: dict[str, str] = {}
    for part in spec.split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise LabelError(f"label map entry {part!r} must read DATASET_LABEL=OUTPUT NAME")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    if not out:
        raise LabelError(f"empty label map {spec!r}")
    return out


def hard_targets(y: np.ndarray, classes: Sequence[str], label_map: Mapping[str, str], table: LabelTable,
                 unmapped: str = "error", where: str = "training data") -> tuple[np.ndarray, list[int]]:
    """Map dataset labels to output indices of ``table``.

    ``y``: per-window index into ``classes`` (-1 = unlabeled). Returns ``(targets, supervised)``: per-window
    output index (-1 = no hard label) and the output indices that some present dataset label maps to (a
    sigmoid student gets hard positives/negatives on those outputs only; its other outputs learn from the
    teacher alone). ``unmapped``: ``error`` (default) or ``unlabeled`` (windows of dataset labels without
    an output keep only the teacher's soft targets).
    """
    if unmapped not in UNMAPPED_POLICIES:
        raise LabelError(f"unmapped must be one of {UNMAPPED_POLICIES}, got {unmapped!r}")
    y = np.asarray(y, np.int64)
    present = sorted({int(v) for v in np.unique(y) if v >= 0})
    lookup = np.full(len(classes), -1, np.int64)
    missing = []
    for c in present:
        cls = classes[c]
        name = label_map.get(cls, cls)
        if name in table.names:
            lookup[c] = table.names.index(name)
        else:
            missing.append(f"{cls!r} -> {name!r}")
    if missing and unmapped == "error":
        raise LabelError(
            f"{where}: dataset label(s) {', '.join(missing)} have no output in the student ({table.names[:8]}"
            f"{' ...' if len(table) > 8 else ''}). Add the output with --labels, pass --unmapped-labels unlabeled "
            "to distil those records from the teacher only, or --no-hard-labels for pure distillation")
    targets = np.where(y >= 0, lookup[np.maximum(y, 0)], -1)
    supervised = sorted({int(v) for v in lookup if v >= 0})
    return targets, supervised


#: The Challenge 2017 score: the mean of the record-level F1 of these classes (noise is not scored).
CINC2017_SCORED_CLASSES: tuple[str, ...] = ("N", "A", "O")


def challenge2017_f1(f1_by_name: dict[str, float]) -> float | None:
    """The Challenge 2017 score (mean F1 of N, A, O) from per-output F1 keyed by output name; ``None`` when
    an output of those classes is missing."""
    names = [CINC2017_LABEL_MAP[c] for c in CINC2017_SCORED_CLASSES]
    if not all(n in f1_by_name for n in names):
        return None
    return float(np.mean([f1_by_name[n] for n in names]))


def is_cinc2017_labeled(classes: Sequence[str], label_map: dict[str, str]) -> bool:
    """Whether data with these classes and label map carry the Challenge 2017 labels the score needs."""
    return all(c in classes and label_map.get(c) == CINC2017_LABEL_MAP[c] for c in CINC2017_SCORED_CLASSES)
