"""Chest-lead (Holter MLII) windows from the MIT-BIH Arrhythmia Database, with a subject-safe split.

The student is trained on single-lead Challenge 2017 recordings; this module gives 10-s windows of the
MIT-BIH Holter lead MLII (360 Hz) cut exactly as the SDK cuts a whole record
(:func:`edge_sdk.windowing.record_windows`: resampled to 500 Hz, filtered, z-scored, hop ``hop_s``), labeled
from the records' rhythm and beat annotations:

* ``"sinus"`` (class ``N``, clean sinus): the rhythm annotation is ``N`` (aux ``(N``) over the whole window
  and every beat annotation inside the window is ``N``;
* ``"af"`` (class ``A``): the rhythm annotation is ``AFIB`` over the whole window;
* ``"other"`` (class ``O``): the whole window lies in one rhythm run that is neither ``N``, ``AFIB``, ``AFL``
  nor noise-like (``B``, ``T``, ``VT``, ``SVTA``, ``SBR``, ``BII``, ``IVR``, ``NOD``, ``VFL``, ``AB``,
  ``PREX``, ``P``).

Windows fitting none of them (rhythm changes, sinus windows with ectopic beats, atrial flutter) are left
out. :data:`MITDB_SPLIT` is the fixed record-level split (see its rule there), :func:`chest_lead_windows`
builds (and caches) a :class:`~distill.data.WindowSet`, :func:`chest_lead_report` scores a model's window
probabilities on it by output name.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from edge_sdk.datasets.mitdb import MitBih, RhythmSegment
from edge_sdk.errors import DatasetError, LabelError, SignalError, SplitError
from edge_sdk.preprocessing import DEFAULT_CONFIG, PreprocessingConfig, resample
from edge_sdk.records import import_wfdb
from edge_sdk.windowing import record_windows

from .data import WindowSet, cache_dir, save_npz_atomic
from .labels import CINC2017_LABEL_MAP

#: The lead used: MLII, the modified limb lead II of the Holter recordings (a chest lead).
LEAD = "MLII"
#: Window kinds and the dataset class each is labeled with.
KIND_CLASS: dict[str, str] = {"sinus": "N", "af": "A", "other": "O"}
KINDS: tuple[str, ...] = tuple(KIND_CLASS)
CLASSES: tuple[str, ...] = ("N", "A", "O")
#: Dataset class -> output name (the Challenge 2017 map's names).
LABEL_MAP: dict[str, str] = {c: CINC2017_LABEL_MAP[c] for c in CLASSES}
#: Dataset class -> key of its section in :func:`chest_lead_report`.
REPORT_KEYS: dict[str, str] = {"N": "clean_sinus", "A": "af", "O": "other"}
#: Rhythms that never make an ``"other"`` window (atrial flutter is left out of every kind).
NOT_OTHER_RHYTHMS = frozenset({"N", "AFIB", "AFL"})
#: MIT-BIH records annotated with atrial fibrillation (217 is also paced).
AF_RECORDS: tuple[str, ...] = ("201", "202", "203", "210", "217", "219", "221", "222")
#: Paced records (102 and 104 have no MLII lead).
PACED_RECORDS: tuple[str, ...] = ("102", "104", "107", "217")

#: Fixed record-level split of the 48 MIT-BIH records (24 + 24). Rule: start from the inter-patient split of
#: de Chazal et al. (2004), DS1 -> train and DS2 -> test (44 non-paced records); records 201 and 202 come
#: from one subject, so 202 joins 201 in train (every other record is its own subject); 219 moves to train
#: so that both sides hold atrial fibrillation (train: 201, 202, 203, 219, about 68 min of AFIB; test: 210,
#: 217, 221, 222, about 65 min); 116 and 215 move to test to even out the clean sinus windows (both sides
#: keep many records of long clean sinus rhythm). The paced records go two a side: 102, 107 -> train, 104,
#: 217 -> test; they yield no clean sinus windows (102 and 104 have no MLII lead at all). The "other"
#: rhythms (bigeminy, trigeminy, VT, SVTA, sinus bradycardia 232, pre-excitation 230, 2nd-degree block 231,
#: ventricular flutter 207, pacing 107 / 217) fall on both sides.
MITDB_SPLIT: dict[str, tuple[str, ...]] = {
    "train": ("101", "102", "106", "107", "108", "109", "112", "114", "115", "118", "119", "122", "124", "201",
              "202", "203", "205", "207", "208", "209", "219", "220", "223", "230"),
    "test": ("100", "103", "104", "105", "111", "113", "116", "117", "121", "123", "200", "210", "212", "213",
             "214", "215", "217", "221", "222", "228", "231", "232", "233", "234"),
}


def _check_sides(train: set[str], test: set[str]) -> None:
    """:class:`SplitError` unless the sides are disjoint and records 201 and 202 (one subject) share a side."""
    if train & test:
        raise SplitError(f"MIT-BIH split sides share records {sorted(train & test)}")
    if not ({"201", "202"} <= train or {"201", "202"} <= test):
        raise SplitError("records 201 and 202 come from one subject and must be on the same side of the split")


def mitdb_split(ds: MitBih | None = None) -> dict[str, list[str]]:
    """:data:`MITDB_SPLIT` as ``{"train": [...], "test": [...]}``, checked: the sides are disjoint, 201 and 202
    share a side, and they cover every record of the ``RECORDS`` file of ``ds`` (default: the shared
    ``mitdb`` folder, when it exists). Raises :class:`~edge_sdk.errors.SplitError` otherwise."""
    split = {side: list(names) for side, names in MITDB_SPLIT.items()}
    train, test = set(split["train"]), set(split["test"])
    _check_sides(train, test)
    if ds is None:
        try:
            ds = MitBih()
        except DatasetError:
            return split
    if train | test != set(ds.records):
        raise SplitError(f"MIT-BIH split does not match {ds.root / 'RECORDS'}: missing "
                         f"{sorted(set(ds.records) - train - test)}, not in the data set "
                         f"{sorted((train | test) - set(ds.records))}")
    return split


_check_sides(set(MITDB_SPLIT["train"]), set(MITDB_SPLIT["test"]))  # import-time check, no data needed


# ----------------------------------------------------------------------------- window labels


@dataclass(frozen=True)
class WindowBounds:
    """Input samples each window was computed from: ``start`` (n,) and ``end`` (n,) int64 sample indices at
    the record's rate (end exclusive), i.e. every input sample the interpolation of the window touched."""

    start: np.ndarray
    end: np.ndarray


def window_bounds(n_samples: int, fs_hz: float, hop_s: float = 5.0,
                  config: PreprocessingConfig = DEFAULT_CONFIG) -> WindowBounds:
    """Where the windows of :func:`~edge_sdk.windowing.record_windows` lie in the original record.

    ``n_samples``: record length in samples at ``fs_hz`` Hz. The sample index itself is resampled with the
    config's method, so output sample ``k`` (at ``config.fs_hz``) sits at fractional input index ``pos[k]``;
    window ``i`` covers output samples ``[i * hop, i * hop + window_samples)`` with ``hop = round(hop_s *
    config.fs_hz)`` samples, hence input samples ``floor(pos[first])`` to ``ceil(pos[last])`` inclusive.
    A record shorter than one window gives its one zero-padded window over the whole record.
    """
    pos = resample(np.arange(n_samples, dtype=np.float64), fs_hz, config.fs_hz, config.resampling)
    w = config.window_samples
    if pos.shape[-1] < w:
        return WindowBounds(np.zeros(1, np.int64), np.full(1, n_samples, np.int64))
    hop = max(1, round(hop_s * config.fs_hz))
    first = np.arange(0, pos.shape[-1] - w + 1, hop)
    start = np.floor(pos[first] + 1e-9).astype(np.int64)
    end = np.minimum(np.ceil(pos[first + w - 1] - 1e-9).astype(np.int64) + 1, n_samples)
    return WindowBounds(start, end)


def merge_segments(segments: Sequence[RhythmSegment]) -> list[RhythmSegment]:
    """Join consecutive rhythm runs of the same rhythm that touch (``end == next start``)."""
    out: list[RhythmSegment] = []
    for s in segments:
        if out and out[-1].rhythm == s.rhythm and out[-1].end == s.start:
            out[-1] = RhythmSegment(s.rhythm, out[-1].start, s.end)
        else:
            out.append(s)
    return out


def _is_other_rhythm(rhythm: str) -> bool:
    """A rhythm that makes ``"other"`` windows: not N/AFIB/AFL, not empty and not noise-like."""
    r = rhythm.strip().upper()
    return bool(r) and r not in NOT_OTHER_RHYTHMS and "NOISE" not in r and "~" not in r


def window_rhythms(bounds: WindowBounds, segments: Sequence[RhythmSegment]) -> list[str | None]:
    """The rhythm covering each whole window (``None`` where the window is not inside one run)."""
    segs = merge_segments(sorted(segments, key=lambda s: s.start))
    if not segs:
        return [None] * len(bounds.start)
    starts = np.array([s.start for s in segs], np.int64)
    idx = np.searchsorted(starts, bounds.start, side="right") - 1
    out: list[str | None] = []
    for i, a, b in zip(idx, bounds.start, bounds.end):
        inside = i >= 0 and segs[i].start <= a and b <= segs[i].end
        out.append(segs[i].rhythm if inside else None)
    return out


def non_normal_beat_counts(bounds: WindowBounds, beat_samples: np.ndarray, beat_symbols: np.ndarray) -> np.ndarray:
    """Number of beat annotations other than ``N`` inside each window (``[start, end)`` samples), (n,) int64."""
    order = np.argsort(beat_samples, kind="stable")
    samples = np.asarray(beat_samples)[order]
    abnormal = np.concatenate([[0], np.cumsum(np.asarray(beat_symbols)[order] != "N")])
    lo = np.searchsorted(samples, bounds.start, side="left")
    hi = np.searchsorted(samples, bounds.end, side="left")
    return (abnormal[hi] - abnormal[lo]).astype(np.int64)


def window_kinds(bounds: WindowBounds, segments: Sequence[RhythmSegment], beat_samples: np.ndarray,
                 beat_symbols: np.ndarray) -> list[str | None]:
    """Kind of each window (``"sinus"``, ``"af"``, ``"other"``, or ``None``), by the module's definitions."""
    rhythms = window_rhythms(bounds, segments)
    abnormal = non_normal_beat_counts(bounds, beat_samples, beat_symbols)
    kinds: list[str | None] = []
    for rhythm, n_abnormal in zip(rhythms, abnormal):
        if rhythm == "N":
            kinds.append("sinus" if n_abnormal == 0 else None)
        elif rhythm == "AFIB":
            kinds.append("af")
        elif rhythm is not None and _is_other_rhythm(rhythm):
            kinds.append("other")
        else:
            kinds.append(None)
    return kinds


def record_window_kinds(ds: MitBih, name: str, n_samples: int, fs_hz: float, hop_s: float = 5.0,
                        config: PreprocessingConfig = DEFAULT_CONFIG) -> tuple[WindowBounds, list[str | None]]:
    """Bounds (samples at ``fs_hz``) and kind of every window of record ``name`` (``n_samples`` long)."""
    bounds = window_bounds(n_samples, fs_hz, hop_s, config)
    samples, symbols = ds.beats(name)
    return bounds, window_kinds(bounds, ds.rhythms(name, n_samples), samples, symbols)


# ----------------------------------------------------------------------------- window sets


def _open(ds: MitBih | None) -> MitBih:
    """``ds`` or the shared ``mitdb`` folder; :class:`DatasetError` saying what to do when it is missing."""
    if ds is not None:
        return ds
    try:
        return MitBih()
    except DatasetError as exc:
        raise DatasetError(f"MIT-BIH Arrhythmia Database not found ({exc}). Download it from PhysioNet "
                           "(https://physionet.org/content/mitdb/1.0.0/) into shared/data/mitdb (RECORDS and the "
                           ".hea/.dat/.atr files), set ECG_EDGE_SHARED=/path/to/shared, or pass "
                           "ds=MitBih('/path/to/mitdb')") from None


def has_lead(ds: MitBih, name: str, lead: str = LEAD) -> bool:
    """Whether record ``name``'s header names a signal ``lead``."""
    header = import_wfdb().rdheader(str(ds.root / name))
    return lead in list(header.sig_name or [])


def _record_chunk(ds: MitBih, name: str, hop_s: float, kinds: Sequence[str],
                  time_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray] | None:
    """Preprocessed windows (k, 5000) float16 and class indices (k,) of record ``name`` for ``kinds``;
    ``None`` when the record has no MLII lead. ``time_scale`` g plays the record g times faster (its 360 Hz
    samples are taken as ``360 * g`` Hz), so heart rate is multiplied by g; labels follow the samples."""
    try:
        rec = ds.read(name, lead=LEAD)
    except SignalError:
        if has_lead(ds, name):
            raise
        return None
    fs = rec.fs_hz * time_scale
    x = record_windows(rec.signal_mv, fs, hop_s)
    _, found = record_window_kinds(ds, name, len(rec.signal_mv), fs, hop_s)
    if len(found) != len(x):
        raise AssertionError(f"record {name}: {len(x)} windows but {len(found)} window bounds")
    keep = np.array([k in kinds for k in found], bool)
    y = np.array([CLASSES.index(KIND_CLASS[k]) for k in found if k in kinds], np.int64)
    return x[keep].astype(np.float16), y


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    unknown = [k for k in kinds if k not in KIND_CLASS]
    if unknown or not kinds:
        raise DatasetError(f"unknown window kinds {unknown or list(kinds)}; use some of {list(KINDS)}")
    return tuple(dict.fromkeys(kinds))


def _check_scales(time_scales: Sequence[float]) -> tuple[float, ...]:
    scales = tuple(float(g) for g in time_scales)
    if not scales or any(not 0.5 <= g <= 2.0 for g in scales):
        raise DatasetError(f"time scales {list(time_scales)} must be between 0.5 and 2.0 (1.0 = as recorded)")
    return scales


def _description(kinds: Sequence[str], names: Sequence[str], skipped: Sequence[str],
                 scales: Sequence[float] = (1.0,)) -> str:
    text = f"MIT-BIH MLII, {'/'.join(kinds)}" + (f", time scales {list(scales)}" if tuple(scales) != (1.0,) else "")
    text += f", records {', '.join(names)}"
    return text + (f" (no MLII lead: {', '.join(skipped)})" if skipped else "")


def chest_lead_windows(records: Sequence[str], hop_s: float = 5.0, kinds: Sequence[str] = KINDS,
                       ds: MitBih | None = None, time_scales: Sequence[float] = (1.0,)) -> WindowSet:
    """10-s MLII windows (500 Hz after resampling, 5000 samples) of MIT-BIH ``records`` of the given ``kinds``.

    Each record is preprocessed whole with :func:`~edge_sdk.windowing.record_windows` (hop ``hop_s``
    seconds) and its windows labeled from the annotations (see the module docstring). Returns a
    :class:`~distill.data.WindowSet`: ``x`` (n, 5000) float16, ``y`` (n,) int64 index into ``("N", "A",
    "O")``, ``record_idx`` (n,) into ``records`` = the given records that yield at least one window, in the
    given order (records without an MLII lead, 102 and 104, are skipped). Cached as ``.npz`` under
    :func:`~distill.data.cache_dir`, keyed by the records, hop, kinds, time scales and preprocessing config.
    ``time_scales``: each record is also played g times faster for every g given (heart-rate augmentation
    for training; 1.0 = as recorded, the only scale for evaluation); windows of all scales are stacked.
    Raises :class:`DatasetError` when the ``mitdb`` folder is missing or a kind or scale is invalid.
    """
    kinds = _check_kinds(kinds)
    scales = _check_scales(time_scales)
    names = [str(r) for r in records]
    key_parts = [names, float(hop_s), list(kinds), DEFAULT_CONFIG.to_dict()] + ([list(scales)] if scales != (1.0,) else [])
    key = hashlib.sha256(json.dumps(key_parts).encode())
    path = cache_dir() / f"mitdb_mlii_{key.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as z:
            kept, skipped = [str(n) for n in z["records"]], [str(n) for n in z["skipped"]]
            return _window_set(z["x"], z["y"], z["record_idx"], kept, _description(kinds, names, skipped, scales))
    ds = _open(ds)
    xs, ys, kept, skipped = [], [], [], []
    for name in tqdm(names, desc="MIT-BIH MLII windows", unit="rec"):
        chunks = [_record_chunk(ds, name, hop_s, kinds, g) for g in scales]
        if chunks[0] is None:
            skipped.append(name)
        elif sum(len(c[1]) for c in chunks):
            xs.append(np.concatenate([c[0] for c in chunks]))
            ys.append(np.concatenate([c[1] for c in chunks]))
            kept.append(name)
    x = np.concatenate(xs) if xs else np.zeros((0, DEFAULT_CONFIG.window_samples), np.float16)
    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    record_idx = np.concatenate([np.full(len(c), i, np.int64) for i, c in enumerate(ys)]) if ys else y.copy()
    save_npz_atomic(path, x=x, y=y, record_idx=record_idx, records=np.array(kept, dtype=str),
                    skipped=np.array(skipped, dtype=str))
    return _window_set(x, y, record_idx, kept, _description(kinds, names, skipped, scales))


def _window_set(x: np.ndarray, y: np.ndarray, record_idx: np.ndarray, records: list[str],
                description: str) -> WindowSet:
    return WindowSet(x, y.astype(np.int64), record_idx.astype(np.int64), records, CLASSES, dict(LABEL_MAP),
                     description)


def mitdb_side_windows(side: str, hop_s: float = 5.0, kinds: Sequence[str] = KINDS,
                  ds: MitBih | None = None, time_scales: Sequence[float] = (1.0,)) -> WindowSet:
    """:func:`chest_lead_windows` of one side (``"train"`` or ``"test"``) of :data:`MITDB_SPLIT`."""
    if side not in MITDB_SPLIT:
        raise DatasetError(f"unknown MIT-BIH split side {side!r}; use {sorted(MITDB_SPLIT)}")
    return chest_lead_windows(MITDB_SPLIT[side], hop_s, kinds, ds, time_scales)


# ----------------------------------------------------------------------------- report


#: Groups of :func:`chest_lead_report`'s ``by_ectopic_beats``: name, fewest and most non-``N`` beats per window.
ECTOPY_GROUPS: tuple[tuple[str, int, int | None], ...] = (("0", 0, 0), ("1-3", 1, 3), ("4+", 4, None))


def window_ectopic_beats(records: Sequence[str], hop_s: float = 5.0, kinds: Sequence[str] = KINDS,
                         ds: MitBih | None = None) -> np.ndarray:
    """Number of beat annotations other than ``N`` in each window of :func:`chest_lead_windows` ``(records,
    hop_s, kinds)`` at time scale 1.0, in the same order, (n,) int64. Reads annotations and record lengths
    only, through ``ds`` (or the shared ``mitdb`` folder), and caches the counts under
    :func:`~distill.data.cache_dir` keyed by the records, hop and kinds, so that a machine with the window
    caches but not the database (a lent GPU) scores with them."""
    kinds = _check_kinds(kinds)
    key = hashlib.sha256(json.dumps(["ectopic beats v1", [str(r) for r in records], float(hop_s), list(kinds)])
                         .encode()).hexdigest()[:16]
    path = cache_dir() / f"mitdb_ectopic_{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["counts"]
    ds = _open(ds)
    out = []
    for name in records:
        if not has_lead(ds, name, LEAD):
            continue
        rec = ds.read(name, lead=LEAD)
        n = len(rec.signal_mv)
        bounds = window_bounds(n, rec.fs_hz, hop_s)
        samples, symbols = ds.beats(name)
        found = window_kinds(bounds, ds.rhythms(name, n), samples, symbols)
        counts = non_normal_beat_counts(bounds, samples, symbols)
        out.append(counts[np.array([k in kinds for k in found], bool)])
    counts = np.concatenate(out) if out else np.zeros(0, np.int64)
    save_npz_atomic(path, counts=counts)
    return counts


def _by_ectopy(top: np.ndarray, ectopic: np.ndarray, expected: int) -> dict:
    """``{group: {"n_windows", "expected_top_fraction"}}`` over :data:`ECTOPY_GROUPS` that hold windows."""
    out = {}
    for name, lo, hi in ECTOPY_GROUPS:
        g = (ectopic >= lo) & (ectopic <= (hi if hi is not None else np.iinfo(np.int64).max))
        if g.any():
            out[name] = {"n_windows": int(g.sum()), "expected_top_fraction": float(np.mean(top[g] == expected))}
    return out


def _top_labels(window_probs: np.ndarray, output_names: Sequence[str], n_windows: int) -> np.ndarray:
    """Index of the top output per window, (n,) int64, after checking shapes and names."""
    p = np.asarray(window_probs, dtype=np.float64)
    names = list(output_names)
    if p.ndim != 2 or p.shape != (n_windows, len(names)):
        raise LabelError(f"window_probs has shape {p.shape}; expected (n_windows, n_outputs) = "
                         f"({n_windows}, {len(names)})")
    if len(set(names)) != len(names):
        raise LabelError(f"output names repeat: {names}")
    return np.argmax(p, axis=1) if n_windows else np.zeros(0, np.int64)


def _kind_report(top: np.ndarray, record_idx: np.ndarray, records: Sequence[str], names: list[str],
                 expected: str) -> dict:
    """One kind's section of :func:`chest_lead_report` (``top``: top-output index per window of that kind)."""
    counts = np.bincount(top, minlength=len(names))
    out: dict = {"expected": expected, "n_windows": len(top),
                 "n_records": len(np.unique(record_idx)),
                 "top_label_fraction": {n: float(c / len(top)) for n, c in zip(names, counts)}}
    if expected not in names:
        return out
    e = names.index(expected)
    out["expected_top_fraction"] = float(np.mean(top == e))
    per_record, majority = {}, []
    for r in np.unique(record_idx):
        t = top[record_idx == r]
        per_record[records[r]] = float(np.mean(t == e))
        c = np.bincount(t, minlength=len(names))
        majority.append(bool(c[e] > np.delete(c, e).max(initial=0)))
    out["per_record_expected_fraction"] = per_record
    out["records_majority_expected"] = float(np.mean(majority))
    return out


def chest_lead_report(window_probs: np.ndarray, output_names: Sequence[str], windows: WindowSet,
                      ectopic_beats: np.ndarray | None = None) -> dict:
    """How a model's top output (argmax) matches the chest-lead window kinds, by output NAME.

    ``window_probs``: (n_windows, n_outputs) probabilities in the order of ``output_names``. For each class
    present (``N`` -> ``"clean_sinus"``, ``A`` -> ``"af"``, ``O`` -> ``"other"``) the section gives
    ``expected`` (the output name of ``windows.label_map``), ``n_windows``, ``n_records``,
    ``top_label_fraction`` (fraction of windows whose top output is each output name),
    ``expected_top_fraction``, ``per_record_expected_fraction`` ({record: fraction of its windows with the
    expected top output}) and ``records_majority_expected`` (fraction of records where the expected output
    is strictly the most common top output; a tie does not count). Where the expected output is not among
    ``output_names`` the last three are left out and ``"not_scored"`` ({section: why}) says so.
    ``ectopic_beats``: (n_windows,) non-``N`` beats per window (:func:`window_ectopic_beats`); with it each
    scored section also gives ``by_ectopic_beats`` ({"0" | "1-3" | "4+": {"n_windows",
    "expected_top_fraction"}}), e.g. how ventricular ectopy inside AF moves the top label.
    """
    names = list(output_names)
    top = _top_labels(window_probs, names, len(windows))
    if ectopic_beats is not None and np.shape(ectopic_beats) != (len(windows),):
        raise LabelError(f"ectopic_beats has shape {np.shape(ectopic_beats)}; expected ({len(windows)},)")
    report: dict = {"data": windows.description, "outputs": names, "not_scored": {}}
    for ci, cls in enumerate(windows.classes):
        mask = windows.y == ci
        if not mask.any():
            continue
        key = REPORT_KEYS.get(cls, cls)
        expected = windows.label_map.get(cls, cls)
        report[key] = _kind_report(top[mask], windows.record_idx[mask], windows.records, names, expected)
        if ectopic_beats is not None and expected in names:
            report[key]["by_ectopic_beats"] = _by_ectopy(top[mask], np.asarray(ectopic_beats)[mask],
                                                         names.index(expected))
        if expected not in names:
            report["not_scored"][key] = f"expected output {expected!r} is not among the model's outputs"
    return report


def chest_summary(report: dict) -> dict:
    """The headline of a :func:`chest_lead_report` for a model card: per section, the expected output, window
    and record counts, the fraction of windows whose top output is the expected one, and the fraction of
    records where it is the most common top output."""
    keys = ("expected", "n_windows", "n_records", "expected_top_fraction", "records_majority_expected")
    return {k: {kk: v[kk] for kk in keys if kk in v} for k, v in report.items() if k in REPORT_KEYS.values()}
