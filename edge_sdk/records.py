"""Read one single-lead ECG record from disk: WFDB (``.hea``), CSV or ``.npz``.

Returns the signal in millivolts as float64 ``(n_samples,)`` and its sample rate in Hz.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RecordNotFoundError, SignalError
from .preprocessing import check_signal


@dataclass
class Record:
    """One lead of ECG. ``signal_mv``: (n,) float64 millivolts; ``fs_hz``: sample rate in Hz."""

    name: str
    signal_mv: np.ndarray
    fs_hz: float
    lead: str = ""

    @property
    def duration_s(self) -> float:
        return self.signal_mv.shape[0] / self.fs_hz


def _wfdb_to_mv(signal: np.ndarray, units: list[str] | None, channel: int) -> np.ndarray:
    unit = units[channel] if units else "mV"
    scale = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}.get(unit.lower(), 1.0)
    return signal * scale


def read_wfdb(path: str | Path, channel: int | str = 0, sampto: int | None = None) -> Record:
    """Read channel ``channel`` (index or name, e.g. ``'MLII'``) of a WFDB record (path without extension)."""
    import wfdb

    p = Path(path)
    base = p.with_suffix("") if p.suffix in (".hea", ".dat", ".mat") else p
    if not base.with_suffix(".hea").exists():
        raise RecordNotFoundError(f"WFDB header {base.with_suffix('.hea')} not found; pass the record path "
                                  "without extension, e.g. data/cinc2017/training2017/A00001")
    sig, fields = wfdb.rdsamp(str(base), sampto=sampto)
    names = list(fields.get("sig_name") or [])
    if isinstance(channel, str):
        if channel not in names:
            raise SignalError(f"record {base.name} has channels {names}, not {channel!r}")
        channel = names.index(channel)
    if not 0 <= channel < sig.shape[1]:
        raise SignalError(f"record {base.name} has {sig.shape[1]} channel(s); channel {channel} does not exist")
    x = _wfdb_to_mv(sig[:, channel].astype(np.float64), fields.get("units"), channel)
    x = check_signal(x, min_samples=2, name=f"record {base.name}")
    return Record(base.name, x, float(fields["fs"]), names[channel] if names else "")


def read_csv(path: str | Path, fs_hz: float | None = None, column: int = -1) -> Record:
    """Read a CSV with one sample per row, values in mV (optionally a header and a time column).

    Recordings written by :class:`edge_sdk.stream.Recorder` (header ``sensor_time_s,host_time_s,ecg_uv``) are
    recognised: microvolts are converted to millivolts and the sample rate comes from the timestamps.
    """
    p = Path(path)
    if not p.exists():
        raise RecordNotFoundError(f"CSV record {p} not found")
    with p.open() as f:
        first = f.readline()
    header: list[str] = []
    try:
        [float(v) for v in first.strip().split(",") if v.strip()]
    except ValueError:  # a header line such as "time_s,ecg_mv"
        header = [h.strip() for h in first.strip().split(",")]
    data = np.genfromtxt(p, delimiter=",", dtype=np.float64, skip_header=1 if header else 0, ndmin=2)
    if "ecg_uv" in header and "sensor_time_s" in header:
        t = data[:, header.index("sensor_time_s")]
        if fs_hz is None and t.size > 1:
            fs_hz = float((t.size - 1) / (t[-1] - t[0]))
        x = data[:, header.index("ecg_uv")] * 1e-3
    else:
        x = data[:, column]
    if fs_hz is None:
        raise SignalError(f"CSV {p.name} carries no sample rate: pass fs_hz (e.g. --fs 130)")
    return Record(p.stem, check_signal(x, min_samples=2, name=f"CSV {p.name}"), float(fs_hz))


def read_npz(path: str | Path) -> Record:
    """Read an ``.npz`` holding ``signal_mv`` (n,) and ``fs_hz`` (scalar)."""
    p = Path(path)
    if not p.exists():
        raise RecordNotFoundError(f"npz record {p} not found")
    with np.load(p, allow_pickle=False) as z:
        if "signal_mv" not in z.files or "fs_hz" not in z.files:
            raise SignalError(f"{p} must hold arrays 'signal_mv' and 'fs_hz', it has {z.files}")
        return Record(p.stem, check_signal(z["signal_mv"], 2, f"npz {p.name}"), float(z["fs_hz"]))


def read_record(path: str | Path, fs_hz: float | None = None, channel: int | str = 0) -> Record:
    """Read a record by extension: ``.csv`` (needs ``fs_hz``), ``.npz``, otherwise WFDB."""
    p = Path(path)
    if p.suffix == ".csv":
        return read_csv(p, fs_hz)
    if p.suffix == ".npz":
        return read_npz(p)
    return read_wfdb(p, channel=channel)
