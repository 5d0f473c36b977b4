"""MIT-BIH Arrhythmia Database: 48 two-lead Holter records at 360 Hz with beat and rhythm annotations."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError, RecordFormatError, RecordNotFoundError
from ..paths import mitdb_dir
from ..records import Record, import_wfdb, read_wfdb

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
        try:
            text = rec_file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DatasetError(f"{rec_file} is not a text file; restore it from the data set") from None
        self.records = [r.strip() for r in text.split() if r.strip()]
        if not self.records:
            raise DatasetError(f"{rec_file} lists no record; restore it from the data set")

    def _path(self, name: str) -> Path:
        if name not in self.records:
            raise RecordNotFoundError(f"record {name!r} is not in {self.root / 'RECORDS'}")
        return self.root / name

    def read(self, name: str, lead: str | int = 0, sampto: int | None = None) -> Record:
        """Read one lead (index or name; default the first, MLII in most records) in mV at 360 Hz; ``sampto``:
        samples to read. Errors as :func:`~edge_sdk.records.read_wfdb`."""
        return read_wfdb(self._path(name), channel=lead, sampto=sampto)

    def _annotations(self, name: str):
        """The ``.atr`` annotations of ``name``; :class:`RecordNotFoundError` / :class:`RecordFormatError`."""
        wfdb = import_wfdb()

        path = self._path(name)
        atr = path.with_suffix(".atr")
        if not atr.exists():
            raise RecordNotFoundError(f"annotation file {atr} not found; copy the record's .atr next to its .hea")
        try:
            return wfdb.rdann(str(path), "atr")
        except Exception as exc:  # noqa: BLE001 - wfdb raises many types for a damaged annotation file
            raise RecordFormatError(f"annotation file {atr} cannot be read ({type(exc).__name__}: {exc}); "
                                    "restore it from the data set") from None

    def beats(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Beat annotations: sample indices (int64, at 360 Hz) and symbols (``'N'``, ``'V'``, ``'A'``...)."""
        ann = self._annotations(name)
        beat_symbols = set("NLRBAaJSVrFejnE/fQ?")
        keep = np.array([s in beat_symbols for s in ann.symbol], dtype=bool)
        return np.asarray(ann.sample)[keep], np.asarray(ann.symbol)[keep]

    def rhythms(self, name: str, n_samples: int | None = None) -> list[RhythmSegment]:
        """Rhythm segments (sample indices at 360 Hz) from the ``aux_note`` of ``'+'`` annotations (e.g. ``'(AFIB'``)."""
        wfdb = import_wfdb()

        path = self._path(name)
        ann = self._annotations(name)
        if n_samples is None:
            try:
                n_samples = wfdb.rdheader(str(path)).sig_len
            except Exception as exc:  # noqa: BLE001 - wfdb raises many types for a damaged header
                raise RecordFormatError(f"WFDB header {path}.hea cannot be parsed ({type(exc).__name__}: {exc}); "
                                        "restore it from the data set") from None
        changes = [(int(s), a.strip("(\x00 ")) for s, sym, a in zip(ann.sample, ann.symbol, ann.aux_note)
                   if sym == "+" and a.startswith("(")]
        segs = []
        for i, (start, rhythm) in enumerate(changes):
            end = changes[i + 1][0] if i + 1 < len(changes) else n_samples
            if end > start:
                segs.append(RhythmSegment(rhythm, start, end))
        return segs
