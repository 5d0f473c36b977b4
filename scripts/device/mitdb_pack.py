"""Carry the MIT-BIH chest-lead *training-side* records to a machine that cannot see ``../shared`` and has no
``wfdb`` (the lent GPU machine), and rebuild their chest-lead window caches there.

``pack``: each training-side record of :data:`distill.chest_lead.MITDB_SPLIT` with an MLII lead, as its
16-bit ADC samples (with the header's gain and baseline, so millivolts come back bit for bit), its beat
annotations and its rhythm segments, LZMA-compressed; plus the sha256 of this machine's chest-lead windows
for each time-scale set packed.

``unpack``: builds the chest-lead window caches (:func:`distill.chest_lead.chest_lead_windows`, the library's
own windowing and labeling) from the packed records through :class:`PackedMitBih`, a stand-in for
:class:`edge_sdk.datasets.mitdb.MitBih`, and says whether each set of windows equals the packing machine's
(another numpy/scipy can round differently: the counts and labels are the same, the samples may not be).
With ``--recipes``, also the synthetic-PVC window caches (:mod:`distill.synthetic_ectopy`) that those recipes'
``data.chest_lead.synthetic_pvc`` needs in each fold of :data:`distill.chest_cv.CV_FOLDS`.

    python scripts/device/mitdb_pack.py pack .device/mitdb_train.npz
    ECG_EDGE_CACHE=/tmp/cache python scripts/device/mitdb_pack.py unpack .device/mitdb_train.npz
    ECG_EDGE_CACHE=/tmp/cache python scripts/device/mitdb_pack.py unpack .device/mitdb_train.npz \
        --recipes configs/chest_cv/synthetic_pvc.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from distill import chest_lead  # noqa: E402
from distill.chest_lead import KINDS, LEAD, MITDB_SPLIT, RhythmSegment, chest_lead_windows  # noqa: E402
from edge_sdk.errors import SignalError  # noqa: E402
from edge_sdk.records import Record  # noqa: E402

HOP_S = 5.0
#: Time-scale sets whose window caches are rebuilt: the shipped recipe's and "as recorded" (scoring).
SCALE_SETS: tuple[tuple[float, ...], ...] = ((0.85, 1.0, 1.2, 1.4, 1.6), (1.0,))


def _digest(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


class PackedMitBih:
    """The parts of :class:`~edge_sdk.datasets.mitdb.MitBih` that chest-lead windowing reads, from a pack."""

    def __init__(self, records: dict[str, dict]):
        self.records = list(records)
        self._r = records

    def read(self, name: str, lead: str | int = 0, sampto: int | None = None) -> Record:
        r = self._r[name]
        if r["adc"] is None:
            raise SignalError(f"record {name} has no {lead} lead")
        mv = (r["adc"].astype(np.float64) - r["baseline"]) / r["gain"]
        return Record(name, mv[:sampto], 360.0, LEAD)

    def beats(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self._r[name]["beat_samples"], self._r[name]["beat_symbols"]

    def rhythms(self, name: str, n_samples: int | None = None):
        return [RhythmSegment(s, int(a), int(b)) for s, a, b in self._r[name]["rhythms"]]

    def has_lead(self, name: str) -> bool:
        return self._r[name]["adc"] is not None


def pack(out: Path) -> None:
    from edge_sdk.datasets.mitdb import MitBih
    from edge_sdk.records import import_wfdb

    wfdb = import_wfdb()
    ds = MitBih()
    arrays: dict[str, np.ndarray] = {}
    meta = {}
    for name in MITDB_SPLIT["train"]:
        header = wfdb.rdheader(str(ds.root / name))
        samples, symbols = ds.beats(name)
        n = int(header.sig_len)
        rhythms = [[s.rhythm, s.start, s.end] for s in ds.rhythms(name, n)]
        if LEAD not in list(header.sig_name):
            meta[name] = {"gain": None, "baseline": None, "rhythms": rhythms}
        else:
            ch = list(header.sig_name).index(LEAD)
            rec = wfdb.rdrecord(str(ds.root / name), channels=[ch], physical=False)
            adc = rec.d_signal[:, 0].astype(np.int16)
            gain, baseline = float(rec.adc_gain[0]), float(rec.baseline[0])
            mv = ds.read(name, lead=LEAD).signal_mv
            if not np.array_equal((adc.astype(np.float64) - baseline) / gain, mv):
                raise SystemExit(f"{name}: ADC samples do not give back the millivolts bit for bit")
            arrays[f"adc_{name}"] = np.frombuffer(lzma.compress(np.diff(adc, prepend=np.int16(0)).astype(np.int16)
                                                                .tobytes(), preset=9), np.uint8)
            meta[name] = {"gain": gain, "baseline": baseline, "rhythms": rhythms}
        arrays[f"beat_samples_{name}"] = samples.astype(np.int64)
        arrays[f"beat_symbols_{name}"] = np.array(symbols, dtype=str)
        print(f"packed {name}", flush=True)
    digests = {}
    for scales in SCALE_SETS:
        ws = chest_lead_windows(MITDB_SPLIT["train"], HOP_S, KINDS, ds, scales)
        digests[json.dumps(list(scales))] = _digest(ws.x)
    arrays["meta"] = np.array(json.dumps({"records": meta, "digests": digests}))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    print(f"{out}: {len(meta)} records, {out.stat().st_size / 1e6:.1f} MB")


def load(src: Path) -> PackedMitBih:
    z = np.load(src)
    meta = json.loads(str(z["meta"]))
    records = {}
    for name, m in meta["records"].items():
        adc = None
        if m["gain"] is not None:
            adc = np.cumsum(np.frombuffer(lzma.decompress(z[f"adc_{name}"].tobytes()), np.int16), dtype=np.int16)
        records[name] = {"adc": adc, "gain": m["gain"], "baseline": m["baseline"], "rhythms": m["rhythms"],
                         "beat_samples": z[f"beat_samples_{name}"], "beat_symbols": z[f"beat_symbols_{name}"]}
    return PackedMitBih(records)


def unpack(src: Path) -> dict[str, bool]:
    ds = load(src)
    digests = json.loads(str(np.load(src)["meta"]))["digests"]
    chest_lead.has_lead = lambda d, name, lead=LEAD: d.has_lead(name)  # the stand-in answers from the pack
    same = {}
    for scales in SCALE_SETS:
        ws = chest_lead_windows(MITDB_SPLIT["train"], HOP_S, KINDS, ds, scales)
        key = json.dumps(list(scales))
        same[key] = _digest(ws.x) == digests[key]
        print(f"time scales {list(scales)}: {len(ws)} windows; "
              f"{'equal to' if same[key] else 'NOT bit-equal to'} the packing machine's", flush=True)
        if scales == (1.0,):  # what distill.chest_cv.score_student counts ectopic beats over
            ectopic = chest_lead.window_ectopic_beats(ws.records, HOP_S, KINDS, ds)
            print(f"ectopic beats counted in {len(ectopic)} windows", flush=True)
            if len(ectopic) != len(ws):
                raise SystemExit(f"{len(ectopic)} ectopic-beat counts for {len(ws)} windows")
    return same


def unpack_synthetic_pvc(src: Path, recipes: list[Path]) -> int:
    """The synthetic-PVC AF window caches of every CV fold of every recipe in ``recipes`` that sets
    ``data.chest_lead.synthetic_pvc``, built from the pack exactly as training builds them (same records,
    templates and options, so the same cache keys). Returns how many window sets were built or found."""
    from distill.chest_cv import CV_FOLDS
    from distill.chest_lead import AF_RECORDS
    from distill.recipe import DistillRecipe
    from distill.synthetic_ectopy import synthetic_pvc_af_windows

    ds = load(src)
    chest_lead.has_lead = lambda d, name, lead=LEAD: d.has_lead(name)
    done = 0
    for path in recipes:
        chest = (DistillRecipe.from_file(path).data or {}).get("chest_lead") or {}
        if chest.get("synthetic_pvc") is None:
            continue
        for fold, held in CV_FOLDS.items():
            pool = [r for r in MITDB_SPLIT["train"] if r not in held]
            ws = synthetic_pvc_af_windows([r for r in AF_RECORDS if r in pool], pool, chest["synthetic_pvc"], HOP_S,
                                          chest.get("time_scales", [1.0]), ds=ds)
            print(f"{path.name} fold {fold}: {len(ws)} synthetic-PVC AF windows", flush=True)
            done += 1
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pack").add_argument("out", type=Path)
    up = sub.add_parser("unpack")
    up.add_argument("src", type=Path)
    up.add_argument("--recipes", type=Path, nargs="*", default=[],
                    help="also build the synthetic-PVC caches these recipes need in each CV fold")
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.out)
    else:  # windows that differ in rounding (another numpy/scipy) are reported, as cinc2017_pack.py does
        unpack(a.src)
        unpack_synthetic_pvc(a.src, a.recipes)


if __name__ == "__main__":
    main()
