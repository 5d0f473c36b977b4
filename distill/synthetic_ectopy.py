"""Synthetic ventricular ectopy in atrial-fibrillation records: AF windows that carry PVCs, for training.

On the chest lead the student's atrial-fibrillation misses are AF windows with premature ventricular beats
(held-out MIT-BIH record 221, training-side 203): a wide ectopic beat inside an irregular rhythm turns its top
label from ATRIAL FIBRILLATION to OTHER RHYTHM. The training side has few such windows (203 alone holds all AF
windows with four or more ectopic beats), so this module makes more from the others:

* :func:`pvc_templates` cuts ventricular beats (annotation ``V``) with room around them out of MIT-BIH records
  (the training side's; never the held-out side's), from ``BEFORE_S`` before to ``AFTER_S`` after the beat;
* :func:`insert_pvcs` replaces normal beats (``N``) inside ``AFIB`` runs of a record by such templates, each
  with probability ``rate``; the template is scaled to the replaced beat's peak-to-peak amplitude times a
  random factor in ``amplitude`` and its ends are moved onto the original signal's, so the baseline is
  continuous;
* :func:`synthetic_pvc_af_windows` does that to the training-side AF records ``copies`` times and cuts their
  AF windows exactly as :func:`distill.chest_lead.chest_lead_windows` cuts the real ones (whole record
  preprocessed, hop, time scales), labeled ``A``.

The rhythm annotation, hence the window label, is unchanged: a ventricular beat does not end atrial
fibrillation. Used through the recipe key ``data.chest_lead.synthetic_pvc`` (:mod:`distill.data`).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from edge_sdk.datasets.mitdb import MitBih
from edge_sdk.errors import DatasetError
from edge_sdk.preprocessing import DEFAULT_CONFIG
from edge_sdk.windowing import record_windows

from .data import WindowSet, cache_dir, save_npz_atomic

#: Template extent around a beat annotation, seconds: from the end of the preceding T wave's reach to the
#: end of the ectopic beat's own T wave.
BEFORE_S = 0.2
AFTER_S = 0.4
#: A template's beat needs no other beat annotation this close before / after it, seconds.
CLEAR_BEFORE_S = 0.3
CLEAR_AFTER_S = 0.5
#: A replaced normal beat needs this much room, seconds (so that a template does not cover the next QRS).
ROOM_BEFORE_S = 0.25
ROOM_AFTER_S = 0.45
#: Templates with a peak-to-peak amplitude outside this range (mV) are artefacts, not beats.
TEMPLATE_P2P_MV = (0.3, 6.0)
#: Appended to a record's name in the window set, so that its synthetic windows are never taken for its real ones.
SUFFIX = "+synthetic-pvc"
#: Options of ``data.chest_lead.synthetic_pvc`` and their defaults.
DEFAULTS = {"copies": 1, "rate": 0.2, "amplitude": [1.0, 1.8], "weight": 1.0, "seed": 0}


@dataclass(frozen=True)
class Templates:
    """Ventricular-beat templates: ``x`` (k, n) float64 mV at ``fs_hz``, the beat at index ``onset`` (samples
    before it), from records ``records`` (``record_idx`` (k,) into them)."""

    x: np.ndarray
    fs_hz: float
    onset: int
    record_idx: np.ndarray
    records: list[str]


def _clear(samples: np.ndarray, i: int, before: int, after: int) -> bool:
    """Whether beat ``i`` of sorted ``samples`` has no neighbour within ``before`` / ``after`` samples."""
    return (i == 0 or samples[i] - samples[i - 1] >= before) and (
        i + 1 == len(samples) or samples[i + 1] - samples[i] >= after)


def pvc_templates(records: Sequence[str], ds: MitBih | None = None, lead: str = "MLII") -> Templates:
    """Ventricular beats (``V``) of ``records`` with no other beat within ``CLEAR_BEFORE_S`` before and
    ``CLEAR_AFTER_S`` after, cut from ``BEFORE_S`` before to ``AFTER_S`` after the annotation (mV, the
    record's rate), with the line through their end points subtracted. :class:`DatasetError` when none is
    found (e.g. records without ventricular beats)."""
    from .chest_lead import _open, has_lead

    ds = _open(ds)
    xs, idx, names, fs = [], [], [], None
    for name in records:
        if not has_lead(ds, name, lead):
            continue
        rec = ds.read(name, lead=lead)
        if fs is None:
            fs = rec.fs_hz
        elif rec.fs_hz != fs:
            raise DatasetError(f"record {name} is at {rec.fs_hz} Hz, the others at {fs} Hz")
        a, b = round(BEFORE_S * fs), round(AFTER_S * fs)
        samples, symbols = ds.beats(name)
        order = np.argsort(samples, kind="stable")
        samples, symbols = samples[order], symbols[order]
        clear_b, clear_a = round(CLEAR_BEFORE_S * fs), round(CLEAR_AFTER_S * fs)
        found = []
        for i, (s, sym) in enumerate(zip(samples, symbols)):
            if sym != "V" or s - a < 0 or s + b > len(rec.signal_mv) or not _clear(samples, i, clear_b, clear_a):
                continue
            seg = np.asarray(rec.signal_mv[s - a:s + b], np.float64)
            seg = seg - np.linspace(seg[0], seg[-1], len(seg))
            if np.all(np.isfinite(seg)) and TEMPLATE_P2P_MV[0] <= np.ptp(seg) <= TEMPLATE_P2P_MV[1]:
                found.append(seg)
        if found:
            xs.extend(found)
            idx.extend([len(names)] * len(found))
            names.append(name)
    if not xs:
        raise DatasetError(f"no ventricular beat with room around it in records {list(records)}; "
                           "synthetic_pvc needs records with V beats (e.g. 106, 119, 208)")
    return Templates(np.stack(xs), float(fs), round(BEFORE_S * fs), np.array(idx, np.int64), names)


def insert_pvcs(signal_mv: np.ndarray, fs_hz: float, beat_samples: np.ndarray, beat_symbols: np.ndarray,
                af_runs: Sequence[tuple[int, int]], templates: Templates, rate: float,
                amplitude: Sequence[float] = (1.0, 1.8),
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``signal_mv`` (mV at ``fs_hz`` Hz, the templates' rate) in which each normal beat (``N``)
    inside one of ``af_runs`` (``(start, end)`` samples) with room around it is replaced, with probability
    ``rate``, by a random template. Returns the new signal and the beat symbols with the replaced beats
    marked ``V`` (same order as ``beat_samples``)."""
    if fs_hz != templates.fs_hz:
        raise DatasetError(f"templates are at {templates.fs_hz} Hz, the signal at {fs_hz} Hz")
    if not 0 <= rate <= 1:
        raise DatasetError(f"synthetic_pvc rate must be in [0, 1], not {rate!r}")
    rng = rng if rng is not None else np.random.default_rng(0)
    out = np.array(signal_mv, np.float64, copy=True)
    symbols = np.array(beat_symbols, dtype=object, copy=True)
    order = np.argsort(beat_samples, kind="stable")
    samples = np.asarray(beat_samples)[order]
    n_t = templates.x.shape[1]
    a = templates.onset
    room_b, room_a = round(ROOM_BEFORE_S * fs_hz), round(ROOM_AFTER_S * fs_hz)
    runs = sorted((int(s), int(e)) for s, e in af_runs)
    last_end = -1
    for j, i in enumerate(order):
        s = int(samples[j])
        if symbols[i] != "N" or not any(lo <= s - a and s - a + n_t <= hi for lo, hi in runs):
            continue
        if not _clear(samples, j, room_b, room_a) or s - a < last_end:
            continue
        if rng.random() >= rate:
            continue
        t = templates.x[rng.integers(len(templates.x))]
        orig = out[s - a:s - a + n_t]
        scale = np.ptp(orig - np.linspace(orig[0], orig[-1], n_t)) / max(np.ptp(t), 1e-6)
        scale *= rng.uniform(*amplitude)
        out[s - a:s - a + n_t] = scale * t + np.linspace(orig[0], orig[-1], n_t)
        symbols[i] = "V"
        last_end = s - a + n_t
    return out.astype(np.float32), symbols.astype(str)


def check_options(options: object) -> dict:
    """``data.chest_lead.synthetic_pvc`` options merged with :data:`DEFAULTS`; :class:`DatasetError` naming
    the bad one otherwise."""
    if not isinstance(options, dict):
        raise DatasetError(f"chest_lead synthetic_pvc must be a dict such as {DEFAULTS}, not {options!r}")
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise DatasetError(f"chest_lead synthetic_pvc options {unknown} are unknown; known: {sorted(DEFAULTS)}")
    o = {**DEFAULTS, **options}
    if isinstance(o["copies"], bool) or not isinstance(o["copies"], int) or not 1 <= o["copies"] <= 20:
        raise DatasetError(f"synthetic_pvc copies must be a whole number in [1, 20], not {o['copies']!r}")
    for k, lo, hi in (("rate", 0.0, 1.0), ("weight", 0.0, 100.0)):
        if isinstance(o[k], bool) or not isinstance(o[k], (int, float)) or not lo <= o[k] <= hi:
            raise DatasetError(f"synthetic_pvc {k} must be a number in [{lo:g}, {hi:g}], not {o[k]!r}")
    amp = o["amplitude"]
    if (not isinstance(amp, (list, tuple)) or len(amp) != 2 or not all(isinstance(v, (int, float)) for v in amp)
            or not 0 < amp[0] <= amp[1] <= 10):
        raise DatasetError(f"synthetic_pvc amplitude must be [low, high] with 0 < low <= high <= 10, not {amp!r}")
    if isinstance(o["seed"], bool) or not isinstance(o["seed"], int):
        raise DatasetError(f"synthetic_pvc seed must be a whole number, not {o['seed']!r}")
    return o


def synthetic_pvc_af_windows(af_records: Sequence[str], template_records: Sequence[str], options: dict,
                             hop_s: float = 5.0, time_scales: Sequence[float] = (1.0,),
                             ds: MitBih | None = None) -> WindowSet:
    """AF windows of ``af_records`` with synthetic PVCs (:func:`insert_pvcs`, templates from
    ``template_records``), ``options["copies"]`` copies per record, cut at every time scale as
    :func:`~distill.chest_lead.chest_lead_windows` cuts the real ones: ``x`` (n, 5000) float16, ``y`` all
    ``A``, ``record_idx`` into ``records`` = the AF records that gave windows, named ``<record>`` +
    :data:`SUFFIX`. Cached under :func:`~distill.data.cache_dir`."""
    from .chest_lead import (CLASSES, LEAD, _check_scales, _open, _window_set, has_lead, merge_segments,
                             record_window_kinds)

    o = check_options(options)
    scales = _check_scales(time_scales)
    af_names, pool = [str(r) for r in af_records], sorted(str(r) for r in template_records)
    key_parts = ["synthetic_pvc v1", af_names, pool, {k: o[k] for k in ("copies", "rate", "amplitude", "seed")},
                 float(hop_s), list(scales), DEFAULT_CONFIG.to_dict(),
                 [BEFORE_S, AFTER_S, CLEAR_BEFORE_S, CLEAR_AFTER_S, ROOM_BEFORE_S, ROOM_AFTER_S, TEMPLATE_P2P_MV]]
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:16]
    path = cache_dir() / f"mitdb_synthetic_pvc_{key}.npz"
    description = (f"MIT-BIH MLII AF with synthetic PVCs ({o['copies']} copies, rate {o['rate']}), records "
                   f"{', '.join(af_names)}; templates from {', '.join(pool)}")
    if path.exists():
        with np.load(path) as z:
            return _window_set(z["x"], z["y"], z["record_idx"], [f"{n}{SUFFIX}" for n in z["records"]], description)
    ds = _open(ds)
    templates = pvc_templates(pool, ds)
    rng = np.random.default_rng(o["seed"])
    xs, kept = [], []
    for name in tqdm(af_names, desc="synthetic PVCs in AF", unit="rec"):
        if not has_lead(ds, name, LEAD):
            continue
        rec = ds.read(name, lead=LEAD)
        samples, symbols = ds.beats(name)
        runs = [(s.start, s.end) for s in merge_segments(ds.rhythms(name, len(rec.signal_mv))) if s.rhythm == "AFIB"]
        af_masks = {g: np.array([k == "af" for k in record_window_kinds(ds, name, len(rec.signal_mv),
                                                                         rec.fs_hz * g, hop_s)[1]], bool)
                    for g in scales}  # the labels come from the annotations: the same for every copy
        chunks = []
        for _ in range(o["copies"]):
            sig, _ = insert_pvcs(rec.signal_mv, rec.fs_hz, samples, symbols, runs, templates, o["rate"],
                                 o["amplitude"], rng)
            for g in scales:
                chunks.append(record_windows(sig, rec.fs_hz * g, hop_s)[af_masks[g]].astype(np.float16))
        x = np.concatenate(chunks)
        if len(x):
            xs.append(x)
            kept.append(name)
    x = np.concatenate(xs) if xs else np.zeros((0, DEFAULT_CONFIG.window_samples), np.float16)
    y = np.full(len(x), CLASSES.index("A"), np.int64)
    record_idx = np.concatenate([np.full(len(c), i, np.int64) for i, c in enumerate(xs)]) if xs else y.copy()
    save_npz_atomic(path, x=x, y=y, record_idx=record_idx, records=np.array(kept, dtype=str))
    return _window_set(x, y, record_idx, [f"{n}{SUFFIX}" for n in kept], description)
