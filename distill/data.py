"""Window data sets for teacher training, distillation, calibration and evaluation, built through
edge_sdk's preprocessing.

Two kinds of data: the Challenge 2017 set (:func:`cinc2017_windows`, the project's fixed record-level split,
labels N/A/O/~) and the user's own records (:func:`record_splits`: WFDB, CSV or npz files, unlabeled or
labeled by a ``record,label`` CSV, validation from ``val_records`` or a fixed split). :class:`DataSpec` names
one of them and :func:`load_splits` gives its ``train``/``val``/``test`` windows.

Windows of the Challenge 2017 records are cached as ``.npz`` files (float16) under the cache folder
(``$ECG_EDGE_CACHE`` or ``~/.cache/ecg-edge``) since preprocessing 8,028 records takes minutes on 2 cores.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
from tqdm import tqdm

from edge_sdk.datasets import CINC2017_CLASSES, Cinc2017, split_records
from edge_sdk.errors import ConfigError, DatasetError, LabelError
from edge_sdk.preprocessing import DEFAULT_CONFIG
from edge_sdk.records import read_record, read_wfdb
from edge_sdk.windowing import record_windows

from .labels import CINC2017_LABEL_MAP

SPLIT_SEED = 2017


def cache_dir() -> Path:
    d = Path(os.environ.get("ECG_EDGE_CACHE", Path.home() / ".cache" / "ecg-edge"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Write ``path`` through a per-process temporary file, so that concurrent writers (DDP ranks) never
    leave or read a half-written cache."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


@dataclass
class WindowSet:
    """Preprocessed windows ``x`` (n, 5000) float16 (z-scored, 500 Hz), dataset label per window ``y`` (n,)
    int64 as an index into ``classes`` (-1 = unlabeled), and ``record_idx`` (n,) mapping each window to
    ``records[i]``. ``label_map`` maps dataset labels to output names; ``description`` says what data it is.
    ``teacher_weight`` (n,) float, optional: how much each window learns from the teacher in distillation
    (1 = as configured, 0 = from its label alone, for data on which the teacher is known to be wrong).
    ``sampling_weight`` (n,) float, optional: multiplies each window's chance of being drawn in an epoch
    (on top of class balancing), to give a small data set its share next to a large one."""

    x: np.ndarray
    y: np.ndarray
    record_idx: np.ndarray
    records: list[str]
    classes: tuple[str, ...] = ()
    label_map: dict[str, str] = field(default_factory=dict)
    description: str = ""
    teacher_weight: np.ndarray | None = None
    sampling_weight: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def labeled(self) -> bool:
        return bool(len(self.y)) and bool((self.y >= 0).any())

    def unlabeled(self) -> "WindowSet":
        """The same windows with every label removed (pure distillation)."""
        return replace(self, y=np.full(len(self.y), -1, np.int64))

    def record_labels(self) -> np.ndarray:
        out = np.full(len(self.records), -1, np.int64)
        out[self.record_idx] = self.y
        return out

    def select_records(self, names: Sequence[str], description: str | None = None) -> "WindowSet":
        """The windows of the records ``names`` (all their windows, every time scale), in this set's record
        order; a name this set does not hold is a :class:`DatasetError`."""
        missing = sorted(set(names) - set(self.records))
        if missing:
            raise DatasetError(f"records {missing} are not in {self.description or 'this window set'}; "
                               f"it holds {', '.join(self.records)}")
        wanted = set(names)
        keep_records = [i for i, r in enumerate(self.records) if r in wanted]
        new_index = np.full(len(self.records), -1, np.int64)
        new_index[keep_records] = np.arange(len(keep_records))
        keep = np.isin(self.record_idx, keep_records)

        def part(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[keep]

        return replace(self, x=self.x[keep], y=self.y[keep], record_idx=new_index[self.record_idx[keep]],
                       records=[self.records[i] for i in keep_records],
                       description=description if description is not None else self.description,
                       teacher_weight=part(self.teacher_weight), sampling_weight=part(self.sampling_weight))


def _windows_of(args):
    root, name, hop_s = args
    rec = read_wfdb(Path(root) / "training2017" / name)
    return record_windows(rec.signal_mv, rec.fs_hz, hop_s).astype(np.float16)


def cinc2017_split(ds: Cinc2017) -> dict[str, list[str]]:
    """The project's fixed record-level split of the 8,028 local records (75/10/15 %, seed 2017)."""
    return split_records(ds.records, [ds.labels[n] for n in ds.records], seed=SPLIT_SEED)


def cinc2017_cache_path(split: str, names: Sequence[str], hop_s: float) -> Path:
    """The cache file of the windows of ``names`` (one split of Challenge 2017) cut every ``hop_s`` seconds;
    keyed by the records, the hop and the preprocessing settings."""
    key = hashlib.sha256(json.dumps([list(names), hop_s, DEFAULT_CONFIG.to_dict()]).encode()).hexdigest()[:16]
    return cache_dir() / f"cinc2017_{split}_{key}.npz"


def cinc2017_windows(split: str, hop_s: float = 5.0, ds: Cinc2017 | None = None, limit: int | None = None,
                     workers: int | None = None) -> WindowSet:
    """Windows of one split (``train``/``val``/``test``) of Challenge 2017, cached on disk. ``hop_s`` is checked
    before the cache is looked up (a cache made with a bad hop is never served)."""
    if isinstance(hop_s, bool) or not isinstance(hop_s, (int, float)) or not 0 < hop_s < float("inf"):
        raise ConfigError(f"hop_s must be a positive number of seconds (e.g. 5), got {hop_s!r}")
    ds = ds or Cinc2017()
    names = cinc2017_split(ds)[split]
    if limit:
        names = names[:limit]
    path = cinc2017_cache_path(split, names, hop_s)
    if path.exists():
        with np.load(path) as z:
            return WindowSet(z["x"], z["y"], z["record_idx"], names, CINC2017_CLASSES, dict(CINC2017_LABEL_MAP),
                             f"Challenge 2017, {split} split (seed {SPLIT_SEED})")
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as pool:
        chunks = list(tqdm(pool.map(_windows_of, [(ds.root, n, hop_s) for n in names], chunksize=32),
                           total=len(names), desc=f"preprocessing {split} windows", unit="rec"))
    x = np.concatenate(chunks)
    record_idx = np.concatenate([np.full(len(c), i) for i, c in enumerate(chunks)])
    y = np.array([CINC2017_CLASSES.index(ds.labels[names[i]]) for i in record_idx], np.int64)
    save_npz_atomic(path, x=x, y=y, record_idx=record_idx)
    return WindowSet(x, y, record_idx, names, CINC2017_CLASSES, dict(CINC2017_LABEL_MAP),
                     f"Challenge 2017, {split} split (seed {SPLIT_SEED})")


def concat_window_sets(sets: Sequence[WindowSet], description: str | None = None) -> WindowSet:
    """One window set from several (e.g. Challenge 2017 and chest-lead records): classes are united, each
    set's labels re-indexed into them, record indices offset. Two sets that map one dataset label to
    different outputs are a :class:`~edge_sdk.errors.LabelError`. ``teacher_weight`` and ``sampling_weight`` are
    1 for sets without one."""
    if not sets:
        raise DatasetError("no window sets to join")
    classes: list[str] = []
    label_map: dict[str, str] = {}
    for ws in sets:
        for c in ws.classes:
            out = ws.label_map.get(c, c)
            if c in classes and label_map.get(c, c) != out:
                raise LabelError(f"dataset label {c!r} maps to {label_map.get(c, c)!r} in one window set and to "
                                 f"{out!r} in {ws.description or 'another'}; rename one of them")
            if c not in classes:
                classes.append(c)
            if c in ws.label_map:
                label_map[c] = ws.label_map[c]
    ys, idx, records, weights, draws, offset = [], [], [], [], [], 0
    for ws in sets:
        remap = np.array([classes.index(c) for c in ws.classes] + [-1], np.int64)
        ys.append(remap[np.where(ws.y >= 0, ws.y, len(ws.classes))])
        idx.append(ws.record_idx + offset)
        records += list(ws.records)
        offset += len(ws.records)
        weights.append(ws.teacher_weight if ws.teacher_weight is not None else np.ones(len(ws), np.float32))
        draws.append(ws.sampling_weight if ws.sampling_weight is not None else np.ones(len(ws), np.float32))

    def joined(parts: list[np.ndarray], attr: str) -> np.ndarray | None:
        return np.concatenate(parts).astype(np.float32) if any(getattr(ws, attr) is not None for ws in sets) else None

    return WindowSet(np.concatenate([ws.x for ws in sets]), np.concatenate(ys), np.concatenate(idx), records,
                     tuple(classes), label_map, description or " + ".join(ws.description for ws in sets),
                     joined(weights, "teacher_weight"), joined(draws, "sampling_weight"))


def read_record_labels(path: str | Path) -> dict[str, str]:
    """``record,label`` CSV (header optional) -> ``{record name: dataset label}``; names are file stems."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"record label file {p} not found; it holds lines 'record,label'")
    try:
        rows = [r for r in csv.reader(p.read_text(encoding="utf-8").splitlines()) if r and any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{p} is not a readable CSV ({e}); expected lines 'record,label'") from e
    if rows and [c.strip().lower() for c in rows[0]] == ["record", "label"]:
        rows = rows[1:]
    bad = [r for r in rows if len(r) != 2 or not r[0].strip() or not r[1].strip()]
    if bad or not rows:
        raise DatasetError(f"{p}: expected lines 'record,label', got {bad[0] if bad else 'no rows'}")
    return {Path(r[0].strip()).name: r[1].strip() for r in rows}


def records_window_set(paths: Sequence[str | Path], hop_s: float = 5.0, fs_hz: float | None = None,
                       record_labels: dict[str, str] | None = None, label_map: dict[str, str] | None = None,
                       description: str = "") -> WindowSet:
    """Windows of the user's records (WFDB path without extension, ``.csv`` with ``fs_hz``, or ``.npz``).

    With ``record_labels`` every record needs a label (a missing one is a :class:`DatasetError`); ``classes``
    are the labels present, sorted. Without it the windows are unlabeled.
    """
    if not paths:
        raise DatasetError(f"no records given for {description or 'this data set'}")
    recs = [read_record(p, fs_hz=fs_hz) for p in tqdm(paths, desc="reading records", unit="rec", leave=False,
                                                         disable=len(paths) < 20)]
    chunks = [record_windows(r.signal_mv, r.fs_hz, hop_s).astype(np.float16) for r in recs]
    names = [Path(str(p)).name for p in paths]
    record_idx = np.concatenate([np.full(len(c), i) for i, c in enumerate(chunks)])
    classes: tuple[str, ...] = ()
    y = np.full(len(record_idx), -1, np.int64)
    if record_labels is not None:
        lacking = [n for n in names if n not in record_labels]
        if lacking:
            raise DatasetError(f"records without a label in the record label file: {lacking[:5]}"
                               f"{' ...' if len(lacking) > 5 else ''}; label every record or leave the file out")
        classes = tuple(sorted({record_labels[n] for n in names}))
        y = np.array([classes.index(record_labels[names[i]]) for i in record_idx], np.int64)
    return WindowSet(np.concatenate(chunks), y, record_idx, names, classes, dict(label_map or {}), description)


def split_record_paths(paths: Sequence[str], seed: int = SPLIT_SEED, fractions: tuple[float, float] = (0.1, 0.1),
                       record_labels: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Fixed record-level split of the user's records into ``train``/``val``/``test`` (seeded).

    Labeled records with at least 20 records are stratified by label; otherwise shuffled. From 3 records on,
    validation and test get at least one record each; fewer records all go to training.
    """
    paths = sorted(dict.fromkeys(str(p) for p in paths))
    if record_labels is not None and len(paths) >= 20:
        labels = [record_labels.get(Path(p).name, "?") for p in paths]
        return split_records(paths, labels, (1 - sum(fractions), *fractions), seed=seed)
    if len(paths) < 3:
        return {"train": paths, "val": [], "test": []}
    order = [paths[i] for i in np.random.default_rng(seed).permutation(len(paths))]
    n_val = max(1, int(round(fractions[0] * len(paths))))
    n_test = max(1, int(round(fractions[1] * len(paths))))
    return {"val": sorted(order[:n_val]), "test": sorted(order[n_val:n_val + n_test]),
            "train": sorted(order[n_val + n_test:])}


@dataclass
class DataSpec:
    """Which data a command uses. ``records`` None means the Challenge 2017 set (its fixed split, labeled).

    ``val_records`` replaces the fixed validation split of ``records`` (validation then doubles as the
    held-out set for fidelity figures). ``record_labels``: ``record,label`` CSV; ``label_map``: dataset
    label -> output name (labels map to the output of the same name where absent). ``fs_hz``: rate of CSV
    records. ``limit``: first N records of each split (smoke runs). ``chest_lead``: add the MIT-BIH chest-lead
    windows of the training side of :data:`distill.chest_lead.MITDB_SPLIT` to the training split, e.g.
    ``{"teacher_weight": 0.0, "sampling_weight": 1.0, "time_scales": [1.0, 1.3]}`` (learn them from their
    rhythm labels, also played 1.3x faster); validation and test stay as they are. ``"holdout_records":
    ["203"]`` leaves those training-side records out (the folds of :mod:`distill.chest_cv`).
    ``"synthetic_pvc": {"copies": 1, "rate": 0.2}`` adds copies of the (not held out) training-side AF records
    with synthetic ventricular beats (:mod:`distill.synthetic_ectopy`, which lists the options).
    """

    records: list[str] | None = None
    val_records: list[str] | None = None
    record_labels: str | None = None
    label_map: dict[str, str] | None = None
    fs_hz: float | None = None
    limit: int | None = None
    chest_lead: dict | None = None

    RANGES: ClassVar[dict] = {"fs_hz": (0, None, "> 0 Hz"), "limit": (1, None, ">= 1 (null: every record)")}

    def __post_init__(self) -> None:
        from .recipe import check_recipe_fields

        check_recipe_fields(self)

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "data") -> "DataSpec":
        """A spec from a recipe's ``data`` dict; :class:`ConfigError` for unknown keys or values of the wrong
        type, before any record is read."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    @property
    def is_cinc2017(self) -> bool:
        return not self.records

    def describe(self) -> str:
        if self.is_cinc2017:
            text = f"Challenge 2017 (project split, seed {SPLIT_SEED})"
        else:
            text = f"{len(self.records)} user records" + (" (labeled)" if self.record_labels else " (unlabeled)")
        return text + (" + MIT-BIH chest-lead training records" if self.chest_lead else "")


CHEST_LEAD_KEYS = {"teacher_weight": 0.0, "sampling_weight": 1.0, "time_scales": [1.0], "holdout_records": [],
                   "synthetic_pvc": None}
#: The chest-lead options of the shipped student (``configs/default_student.json``); ``distill --chest-lead``.
DEFAULT_CHEST_LEAD = {"teacher_weight": 0.0, "sampling_weight": 1.0, "time_scales": [0.85, 1.0, 1.2, 1.4, 1.6]}


def chest_lead_training_windows(options: dict, hop_s: float = 5.0) -> WindowSet:
    """MIT-BIH chest-lead windows of the training side with the ``teacher_weight`` and ``sampling_weight``
    given in ``options`` (see :class:`DataSpec`); unknown keys are a :class:`DatasetError`."""
    from .chest_lead import AF_RECORDS, MITDB_SPLIT, mitdb_side_windows
    from .synthetic_ectopy import check_options as check_synthetic_pvc
    from .synthetic_ectopy import synthetic_pvc_af_windows

    unknown = sorted(set(options) - set(CHEST_LEAD_KEYS))
    if unknown:
        raise DatasetError(f"chest_lead options {unknown} are unknown; known: {sorted(CHEST_LEAD_KEYS)}")
    opts = {**CHEST_LEAD_KEYS, **options}
    for k in ("teacher_weight", "sampling_weight"):
        if not isinstance(opts[k], (int, float)) or not 0 <= opts[k] <= 100:
            raise DatasetError(f"chest_lead {k} must be a number in [0, 100], not {opts[k]!r}")
    if not isinstance(opts["time_scales"], (list, tuple)):
        raise DatasetError(f"chest_lead time_scales must be a list of numbers, not {opts['time_scales']!r}")
    held = opts["holdout_records"]
    if not isinstance(held, (list, tuple)) or not all(isinstance(r, str) for r in held):
        raise DatasetError(f"chest_lead holdout_records must be a list of record names such as [\"203\"], "
                           f"not {held!r}")
    outside = sorted(set(held) - set(MITDB_SPLIT["train"]))
    if outside:
        raise DatasetError(f"chest_lead holdout_records {outside} are not training-side MIT-BIH records; "
                           f"those are {', '.join(MITDB_SPLIT['train'])}")
    pvc = None if opts["synthetic_pvc"] is None else check_synthetic_pvc(opts["synthetic_pvc"])
    ws = mitdb_side_windows("train", hop_s=hop_s, time_scales=opts["time_scales"])
    if held:
        ws = ws.select_records([r for r in ws.records if r not in held],
                               f"{ws.description}; held out: {', '.join(held)}")
    def weighted(w: WindowSet, draw: float) -> WindowSet:
        return replace(w, teacher_weight=np.full(len(w), opts["teacher_weight"], np.float32),
                       sampling_weight=np.full(len(w), draw, np.float32))

    ws = weighted(ws, opts["sampling_weight"])
    if pvc is None:
        return ws
    pool = [r for r in MITDB_SPLIT["train"] if r not in held]
    syn = synthetic_pvc_af_windows([r for r in AF_RECORDS if r in pool], pool, pvc, hop_s, opts["time_scales"])
    return concat_window_sets([ws, weighted(syn, opts["sampling_weight"] * pvc["weight"])])


def load_split(spec: DataSpec, split: str, hop_s: float = 5.0) -> WindowSet | None:
    """Windows of one split (``train``, ``val`` or ``test``) of ``spec``; ``None`` when it has no records."""
    if split not in ("train", "val", "test"):
        raise DatasetError(f"unknown split {split!r}; use train, val or test")
    base = _load_split(spec, split, hop_s)
    if split == "train" and spec.chest_lead:
        extra = chest_lead_training_windows(spec.chest_lead, hop_s)
        return extra if base is None else concat_window_sets([base, extra])
    return base


def _load_split(spec: DataSpec, split: str, hop_s: float) -> WindowSet | None:
    if spec.is_cinc2017:
        return cinc2017_windows(split, hop_s=hop_s, limit=spec.limit)
    labels = read_record_labels(spec.record_labels) if spec.record_labels else None
    if spec.val_records:
        names = {"train": list(spec.records), "val": list(spec.val_records), "test": list(spec.val_records)}[split]
    else:
        names = split_record_paths(spec.records, record_labels=labels)[split]
    if spec.limit:
        names = names[:spec.limit]
    if not names:
        return None
    return records_window_set(names, hop_s, spec.fs_hz, labels, spec.label_map,
                              f"{len(names)} user records, {split}" + (" (= validation records)" if split == "test"
                                                                        and spec.val_records else ""))
