"""PhysioNet/CinC Challenge 2017 single-lead AF set: AliveCor records at 300 Hz, labels N/A/O/~."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import DatasetError, RecordNotFoundError, SplitError
from ..paths import cinc2017_dir
from ..records import Record, read_wfdb

#: Class codes in model output order: normal, AF, other rhythm, noisy.
CINC2017_CLASSES = ("N", "A", "O", "~")
FS_HZ = 300


class Cinc2017:
    """The Challenge 2017 folder (``REFERENCE-v3.csv`` + ``training2017/``)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cinc2017_dir()
        ref = self.root / "REFERENCE-v3.csv"
        if not ref.exists():
            raise DatasetError(f"{ref} not found: point root at the cinc2017 folder holding REFERENCE-v3.csv")
        try:
            with ref.open(encoding="utf-8-sig", newline="") as f:
                rows = [[c.strip() for c in r] for r in csv.reader(f) if r]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(f"{ref} is not a CSV text file ({type(exc).__name__}: {exc}); restore it from the "
                               "data set") from None
        bad = [r for r in rows if len(r) != 2 or r[1] not in CINC2017_CLASSES]
        if bad:
            raise DatasetError(f"{ref}: malformed rows, e.g. {bad[0]}; expected 'record,label' with label in N/A/O/~")
        if not rows:
            raise DatasetError(f"{ref} lists no record; restore it from the data set")
        self.labels: dict[str, str] = {r[0]: r[1] for r in rows}
        if len(self.labels) != len(rows):
            seen: set[str] = set()
            dup = next(r[0] for r in rows if r[0] in seen or seen.add(r[0]))
            raise DatasetError(f"{ref}: record {dup!r} is listed more than once; keep one label per record")
        self.records = sorted(self.labels)

    def __len__(self) -> int:
        return len(self.records)

    def read(self, name: str) -> Record:
        """Read record ``name`` (e.g. ``'A00001'``) in mV at 300 Hz."""
        if name not in self.labels:
            raise RecordNotFoundError(f"record {name!r} is not in {self.root / 'REFERENCE-v3.csv'}")
        return read_wfdb(self.root / "training2017" / name)


def split_records(names: list[str], labels: list[str], fractions: tuple[float, float, float] = (0.75, 0.10, 0.15),
                  seed: int = 2017) -> dict[str, list[str]]:
    """Record-level stratified split into ``train``/``val``/``test`` with a fixed seed.

    Each class is shuffled with ``numpy.random.default_rng(seed)`` and cut by ``fractions``. Raises
    :class:`~edge_sdk.errors.SplitError` (a ``ValueError``) for bad fractions or names/labels of different lengths.
    """
    if len(fractions) != 3 or any(not 0 <= f <= 1 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise SplitError(f"fractions must be three numbers in [0, 1] summing to 1 (train, val, test), got {fractions}")
    if len(names) != len(labels):
        raise SplitError(f"{len(names)} record names but {len(labels)} labels: pass one label per record")
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    by_class: dict[str, list[str]] = {}
    for n, l in sorted(zip(names, labels)):
        by_class.setdefault(l, []).append(n)
    for l in sorted(by_class):
        members = [by_class[l][i] for i in rng.permutation(len(by_class[l]))]
        n_train = int(round(fractions[0] * len(members)))
        n_val = int(round(fractions[1] * len(members)))
        out["train"] += members[:n_train]
        out["val"] += members[n_train:n_train + n_val]
        out["test"] += members[n_train + n_val:]
    return {k: sorted(v) for k, v in out.items()}
