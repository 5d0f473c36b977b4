"""Window data sets for teacher training and distillation, built through edge_sdk's preprocessing.

Windows of the Challenge 2017 records are cached as ``.npy`` files (float16) under the cache folder
(``$ECG_EDGE_CACHE`` or ``~/.cache/ecg-edge``) since preprocessing 8,028 records takes minutes on 2 cores.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_sdk.datasets import CINC2017_CLASSES, Cinc2017, split_records
from edge_sdk.preprocessing import DEFAULT_CONFIG
from edge_sdk.records import read_wfdb
from edge_sdk.windowing import record_windows

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
    """Preprocessed windows ``x`` (n, 5000) float16, label index per window ``y`` (n,) int64 (-1 unknown),
    and ``record_idx`` (n,) mapping each window to ``records[i]``."""

    x: np.ndarray
    y: np.ndarray
    record_idx: np.ndarray
    records: list[str]

    def __len__(self) -> int:
        return len(self.y)

    def record_labels(self) -> np.ndarray:
        out = np.full(len(self.records), -1, np.int64)
        out[self.record_idx] = self.y
        return out


def _windows_of(args):
    root, name, hop_s = args
    rec = read_wfdb(Path(root) / "training2017" / name)
    return record_windows(rec.signal_mv, rec.fs_hz, hop_s).astype(np.float16)


def cinc2017_split(ds: Cinc2017) -> dict[str, list[str]]:
    """The project's fixed record-level split of the 8,028 local records (75/10/15 %, seed 2017)."""
    return split_records(ds.records, [ds.labels[n] for n in ds.records], seed=SPLIT_SEED)


def cinc2017_windows(split: str, hop_s: float = 5.0, ds: Cinc2017 | None = None, limit: int | None = None,
                     workers: int | None = None) -> WindowSet:
    """Windows of one split (``train``/``val``/``test``) of Challenge 2017, cached on disk."""
    ds = ds or Cinc2017()
    names = cinc2017_split(ds)[split]
    if limit:
        names = names[:limit]
    key = hashlib.sha256(json.dumps([names, hop_s, DEFAULT_CONFIG.to_dict()]).encode()).hexdigest()[:16]
    path = cache_dir() / f"cinc2017_{split}_{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return WindowSet(z["x"], z["y"], z["record_idx"], names)
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as pool:
        chunks = list(tqdm(pool.map(_windows_of, [(ds.root, n, hop_s) for n in names], chunksize=32),
                           total=len(names), desc=f"preprocessing {split} windows", unit="rec"))
    x = np.concatenate(chunks)
    record_idx = np.concatenate([np.full(len(c), i) for i, c in enumerate(chunks)])
    y = np.array([CINC2017_CLASSES.index(ds.labels[names[i]]) for i in record_idx], np.int64)
    save_npz_atomic(path, x=x, y=y, record_idx=record_idx)
    return WindowSet(x, y, record_idx, names)
