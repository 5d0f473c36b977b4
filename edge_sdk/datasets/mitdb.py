"""MIT-BIH Arrhythmia Database: 48 two-lead Holter records at 360 Hz with beat and rhythm annotations."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError, RecordNotFoundError
from ..paths import mitdb_dir
from ..records import Record, read_wfdb

FS_HZ = 360


@dataclass(frozen=True)
class RhythmSegment:
    """A run of one rhythm (``'AFIB'``, ``'N'``, ``'SBR'``...) from ``start`` to ``end`` samples (end exclusive)."""

    rhythm: str
    start: int
    end: int


class MitBih:
    """The ``mitdb`` folder; records are read with ``wfdb``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else mitdb_dir()
        rec_file = self.root / "RECORDS"
        if not rec_file.exists():
            raise DatasetError(f"{rec_file} not found: point root at the mitdb folder")
        self.records = [r.strip() for r in rec_file.read_text().split() if r.strip()]

    def _path(self, name: str) -> Path:
        if name not in self.records:
            raise RecordNotFoundError(f"record {name!r} is not in {self.root / 'RECORDS'}")
        return self.root / name

    def read(self, name: str, lead: str | int = 0, sampto: int | None = None) -> Record:
        """Read one lead (default the first, MLII in most records) in mV at 360 Hz."""
        return read_wfdb(self._path(name), channel=lead, sampto=sampto)

    def beats(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Beat annotations: sample indices (int64) and symbols (``'N'``, ``'V'``, ``'A'``...)."""
        import wfdb

        ann = wfdb.rdann(str(self._path(name)), "atr")
        beat_symbols = set("NLRBAaJSVrFejnE/fQ?")
        keep = np.array([s in beat_symbols for s in ann.symbol], dtype=bool)
        return np.asarray(ann.sample)[keep], np.asarray(ann.symbol)[keep]

    def rhythms(self, name: str, n_samples: int | None = None) -> list[RhythmSegment]:
        """Rhythm segments from the ``aux_note`` of ``'+'`` annotations (e.g. ``'(AFIB'``)."""
        import wfdb

        path = self._path(name)
        ann = wfdb.rdann(str(path), "atr")
        if n_samples is None:
            n_samples = wfdb.rdheader(str(path)).sig_len
        changes = [(int(s), a.strip("(\x00 ")) for s, sym, a in zip(ann.sample, ann.symbol, ann.aux_note)
                   if sym == "+" and a.startswith("(")]
        segs = []
        for i, (start, rhythm) in enumerate(changes):
            end = changes[i + 1][0] if i + 1 < len(changes) else n_samples
            if end > start:
                segs.append(RhythmSegment(rhythm, start, end))
        return segs
