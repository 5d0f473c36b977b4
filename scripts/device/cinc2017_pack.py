"""Carry the Challenge 2017 records to a machine that cannot see ``../shared`` (the lent GPU machine).

``pack``: every record's samples as 16-bit integers (1000 per mV, the data set's own ADC units), delta-coded
and LZMA-compressed (about 40 MB for the 8,028 records instead of 199 MB), with ``REFERENCE-v3.csv`` and the
sha256 of this machine's preprocessed windows of each split.

``unpack``: rebuilds a stand-in shared folder (``REFERENCE-v3.csv``) and the window cache of each split with
the library's own preprocessing (:func:`edge_sdk.windowing.record_windows`), so ``cinc2017_windows`` and
everything above it run unchanged there; it says whether each split's windows equal this machine's bit for bit.

    python scripts/device/cinc2017_pack.py pack .device/cinc2017.npz
    python scripts/device/cinc2017_pack.py unpack .device/cinc2017.npz /tmp/shared   # with ECG_EDGE_CACHE set
"""
from __future__ import annotations

import argparse
import hashlib
import lzma
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from distill.data import SPLIT_SEED, cinc2017_cache_path, cinc2017_split, cinc2017_windows, save_npz_atomic  # noqa: E402
from edge_sdk.datasets import CINC2017_CLASSES, Cinc2017  # noqa: E402
from edge_sdk.windowing import record_windows  # noqa: E402

UNITS_PER_MV = 1000.0
FS_HZ = 300.0
HOP_S = 5.0


def _digest(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def pack(out: Path) -> None:
    ds = Cinc2017()
    ints, lengths = [], []
    for i, name in enumerate(ds.records):
        sig = ds.read(name).signal_mv
        d = np.round(sig * UNITS_PER_MV)
        if not np.array_equal(d / UNITS_PER_MV, sig) or np.abs(d).max() > 32767:
            raise SystemExit(f"{name}: samples are not whole 1/1000 mV in int16; cannot pack losslessly")
        ints.append(d.astype(np.int16))
        lengths.append(len(d))
        if i % 1000 == 0:
            print(f"read {i}/{len(ds.records)}", flush=True)
    flat = np.concatenate(ints)
    delta = np.diff(flat, prepend=np.int16(0)).astype(np.int16)
    blob = np.frombuffer(lzma.compress(delta.tobytes(), preset=9), np.uint8)
    digests = {f"sha256_{s}": np.array(_digest(cinc2017_windows(s, HOP_S, ds).x)) for s in ("train", "val", "test")}
    reference = (ds.root / "REFERENCE-v3.csv").read_bytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, names=np.array(ds.records), lengths=np.array(lengths, np.int64), blob=blob,
             reference=np.frombuffer(reference, np.uint8), **digests)
    print(f"{out}: {len(ds.records)} records, {flat.size} samples, {out.stat().st_size / 1e6:.1f} MB")


def _windows(args) -> np.ndarray:
    samples = args
    return record_windows(samples.astype(np.float64) / UNITS_PER_MV, FS_HZ, HOP_S).astype(np.float16)


def unpack(src: Path, shared: Path, workers: int | None = None) -> dict[str, bool]:
    z = np.load(src)
    root = shared / "data" / "cinc2017"
    root.mkdir(parents=True, exist_ok=True)
    (root / "REFERENCE-v3.csv").write_bytes(z["reference"].tobytes())
    flat = np.cumsum(np.frombuffer(lzma.decompress(z["blob"].tobytes()), np.int16), dtype=np.int16)
    names = [str(n) for n in z["names"]]
    signals = dict(zip(names, np.split(flat, np.cumsum(z["lengths"])[:-1])))
    ds = Cinc2017(root)
    if ds.records != names:
        raise SystemExit("REFERENCE-v3.csv and the packed records disagree")
    same = {}
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        for split, split_names in cinc2017_split(ds).items():
            chunks = list(pool.map(_windows, [signals[n] for n in split_names], chunksize=16))
            x = np.concatenate(chunks)
            record_idx = np.concatenate([np.full(len(c), i) for i, c in enumerate(chunks)])
            y = np.array([CINC2017_CLASSES.index(ds.labels[split_names[i]]) for i in record_idx], np.int64)
            save_npz_atomic(cinc2017_cache_path(split, split_names, HOP_S), x=x, y=y, record_idx=record_idx)
            same[split] = _digest(x) == str(z[f"sha256_{split}"])
            print(f"{split}: {len(split_names)} records, {len(x)} windows (seed {SPLIT_SEED}); "
                  f"{'equal to' if same[split] else 'NOT bit-equal to'} the packing machine's windows", flush=True)
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("out", type=Path)
    u = sub.add_parser("unpack")
    u.add_argument("src", type=Path)
    u.add_argument("shared", type=Path, help="stand-in shared folder to create (point ECG_EDGE_SHARED at it)")
    a = ap.parse_args()
    pack(a.out) if a.cmd == "pack" else unpack(a.src, a.shared)


if __name__ == "__main__":
    main()
