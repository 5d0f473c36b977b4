"""Read one single-lead ECG record from disk: WFDB (``.hea``), CSV or ``.npz``.

Every reader returns a :class:`Record`: the signal in millivolts as float64 ``(n_samples,)``, its sample
rate in Hz and, when the file carries them (a recording of :class:`edge_sdk.stream.Recorder`, a CSV with a
``time_s`` column), the per-sample times in seconds. Units come from the record (WFDB units field, CSV
column name such as ``ecg_mv`` / ``ecg_uv`` / ``ecg_v``) or from the ``units`` argument; unknown units are
refused, never assumed to be mV.

Bad input ends in a named error: :class:`~edge_sdk.errors.RecordNotFoundError` (missing file),
:class:`~edge_sdk.errors.RecordFormatError` (the file exists but cannot be used) or
:class:`~edge_sdk.errors.SignalError` (bad arguments: sample rate, channel; NaN/inf samples).
"""
from __future__ import annotations

import io
import math
import numbers
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MissingDependencyError, RecordFormatError, RecordNotFoundError, SignalError
from .preprocessing import check_fs, check_signal

#: Multiply a value in these units by the factor to get millivolts (keys lower case; µ: micro sign and mu).
UNITS_TO_MV = {"mv": 1.0, "uv": 1e-3, "\u00b5v": 1e-3, "\u03bcv": 1e-3, "v": 1e3}
_UNITS_HELP = "ECG must be in mV, uV (µV) or V"


@dataclass
class Record:
    """One lead of ECG.

    ``signal_mv``: (n,) float64 millivolts; ``fs_hz``: sample rate in Hz; ``lead``: channel name;
    ``time_s``: (n,) per-sample times in seconds when the file recorded them (strictly increasing; a step
    larger than 1.5 sample periods is a gap in the recording), else None (samples are ``i / fs_hz`` apart).
    """

    name: str
    signal_mv: np.ndarray
    fs_hz: float
    lead: str = ""
    time_s: np.ndarray | None = None

    @property
    def duration_s(self) -> float:
        """Seconds of signal present (gaps in ``time_s`` not counted)."""
        return self.signal_mv.shape[0] / self.fs_hz


# ----------------------------------------------------------------------------- shared checks

def units_to_mv(units: str, where: str, fix: str = "pass units='mV', 'uV' or 'V'") -> float:
    """Factor converting values in ``units`` (mV, uV, µV, V; any case) to millivolts.

    Raises :class:`RecordFormatError` for any other unit (e.g. mmHg, NU, ADC counts) saying where it came
    from and, in ``fix``, what to do.
    """
    key = str(units).strip().lower()
    if key not in UNITS_TO_MV:
        raise RecordFormatError(f"{where}: units {units!r} are not a voltage; {_UNITS_HELP}: {fix}")
    return UNITS_TO_MV[key]


def _check_units_arg(units: str | None, record_units: str | None, where: str) -> None:
    """An explicit ``units`` argument must be a voltage and agree with what the record says."""
    if units is None:
        return
    units_to_mv(units, "units argument")
    if record_units is not None and UNITS_TO_MV[units.strip().lower()] != UNITS_TO_MV[record_units.strip().lower()]:
        raise RecordFormatError(f"{where} says its units are {record_units!r} but units={units!r} was passed; "
                                "drop the units argument (the record's own units are used)")


# ----------------------------------------------------------------------------- WFDB

def _wfdb_header_lines(hea: Path) -> list[str]:
    data = hea.read_bytes()
    if b"\x00" in data:
        raise RecordFormatError(f"WFDB header {hea} is not text (binary data?); restore the .hea file from the "
                                "data set")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # e.g. a latin-1 "µV"
        text = data.decode("latin-1")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise RecordFormatError(f"WFDB header {hea} is empty; restore the .hea file from the data set")
    return lines


def _check_wfdb_raw_fields(hea: Path, lines: list[str], header: object, channel: int) -> str | None:
    """Check what ``wfdb`` silently replaces or misreads: an unparsable sample rate (-300 becomes its default
    250), an ADC gain of 0 (uncalibrated; becomes 200). Returns the units exactly as written in the signal
    line (wfdb reads ``µV`` as ``V``), or None when the line states none (WFDB default: mV)."""
    raw_units: str | None = None
    tokens = lines[0].split()
    if len(tokens) < 3:  # wfdb would assume its default, 250 Hz
        raise RecordFormatError(f"WFDB header {hea}: the record line {lines[0]!r} states no sample rate (wfdb would "
                                "assume 250 Hz); add it, e.g. 'A00001 1 300 9000'")
    # record line: name n_sig fs[/counter_freq[(base)]] ...
    fs_text = re.split(r"[/(]", tokens[2], maxsplit=1)[0]
    try:
        fs_raw = float(fs_text)
    except ValueError:
        fs_raw = math.nan
    if not (math.isfinite(fs_raw) and fs_raw > 0) or fs_raw != float(header.fs):
        raise RecordFormatError(f"WFDB header {hea}: sample rate {tokens[2]!r} is not a positive number of Hz; "
                                "fix the record line (e.g. 'A00001 1 300 9000')")
    if channel + 1 < len(lines):
        sig_tokens = lines[channel + 1].split()
        if len(sig_tokens) >= 3:  # signal line: file fmt gain[(baseline)][/units] ...
            if "/" in sig_tokens[2]:
                raw_units = sig_tokens[2].split("/", 1)[1]
            gain_text = re.split(r"[/(]", sig_tokens[2], maxsplit=1)[0]
            try:
                gain = float(gain_text)
            except ValueError:
                gain = math.nan
            if not math.isfinite(gain) or gain == 0:
                raise RecordFormatError(f"WFDB header {hea}: ADC gain {sig_tokens[2]!r} of signal {channel} is 0 or "
                                        "not a number (uncalibrated): amplitudes in mV are unknown; put the real "
                                        "gain (ADC units per mV, e.g. 200 or 1000) in the header")
    return raw_units


def _check_wfdb_file_sizes(base: Path, header: object) -> None:
    """Signal files must hold exactly ``sig_len`` frames (wfdb pads or ignores a wrong size silently)."""
    from wfdb.io._signal import BYTES_PER_SAMPLE

    sig_len = getattr(header, "sig_len", None)
    files = getattr(header, "file_name", None) or []
    if not sig_len or not files:
        return
    per_file: dict[str, list[int]] = {}
    for i, name in enumerate(files):
        per_file.setdefault(name, []).append(i)
    for name, chans in per_file.items():
        fmt = str(header.fmt[chans[0]])
        bps = BYTES_PER_SAMPLE.get(fmt, 0)
        if not bps:  # compressed (FLAC) formats: size not predictable
            continue
        path = base.parent / name
        if not path.exists():
            raise RecordNotFoundError(f"signal file {path} of WFDB record {base.name} not found; copy it next to "
                                      f"{base.with_suffix('.hea').name}")
        spf = sum(int((header.samps_per_frame or [1] * len(files))[c] or 1) for c in chans)
        offset = int((header.byte_offset or [0] * len(files))[chans[0]] or 0)
        expected = offset + math.ceil(sig_len * spf * bps)
        actual = path.stat().st_size
        if actual != expected:
            raise RecordFormatError(f"signal file {path} has {actual} bytes but header {base.name}.hea describes "
                                    f"{sig_len} samples x {spf} signal(s) in format {fmt} = {expected} bytes; the "
                                    "file is truncated or belongs to another record: restore it from the data set")


def import_wfdb():
    """The ``wfdb`` module, or :class:`MissingDependencyError` saying which extra installs it."""
    try:
        import wfdb
    except ImportError as e:
        raise MissingDependencyError("reading WFDB records needs the wfdb package: pip install 'ecg-edge[records]' "
                                     "(the device runtime alone reads CSV and npz)") from e
    return wfdb


def read_wfdb(path: str | Path, channel: int | str = 0, sampto: int | None = None,
              units: str | None = None) -> Record:
    """Read channel ``channel`` (index or name, e.g. ``'MLII'``) of a WFDB record (path without extension),
    converted to mV from the units in its header (mV, uV/µV or V).

    ``sampto``: read samples ``[0, sampto)`` only. ``units``: optional, must agree with the header.
    Raises :class:`RecordNotFoundError` (no header/signal file), :class:`RecordFormatError` (empty or
    unparsable header, sample rate <= 0, gain 0, wrong-size signal file, non-voltage units) or
    :class:`SignalError` (unknown channel, NaN samples).
    """
    wfdb = import_wfdb()
    if isinstance(channel, bool) or not isinstance(channel, (numbers.Integral, str)):
        raise SignalError(f"channel must be a signal index (0, 1, ...) or a signal name such as 'MLII', got {channel!r}")
    if sampto is not None and (isinstance(sampto, bool) or not isinstance(sampto, numbers.Integral)):
        raise SignalError(f"sampto must be a whole number of samples or None, got {sampto!r}")

    p = Path(path)
    base = p.with_suffix("") if p.suffix in (".hea", ".dat", ".mat") else p
    hea = base.with_suffix(".hea")
    if not hea.exists():
        raise RecordNotFoundError(f"WFDB header {hea} not found; pass the record path "
                                  "without extension, e.g. data/cinc2017/training2017/A00001")
    lines = _wfdb_header_lines(hea)
    try:
        header = wfdb.rdheader(str(base))
    except Exception as exc:  # noqa: BLE001 - wfdb raises IndexError, ValueError, its own HeaderSyntaxError...
        raise RecordFormatError(f"WFDB header {hea} cannot be parsed ({type(exc).__name__}: {exc}); it must "
                                "start with a record line such as 'A00001 1 300 9000': restore it") from None
    names = list(getattr(header, "sig_name", None) or [])
    n_sig = int(getattr(header, "n_sig", 0) or 0)
    if n_sig < 1 or not getattr(header, "file_name", None):
        raise RecordFormatError(f"WFDB header {hea} describes no signal; it needs one signal line per channel")
    if isinstance(channel, str):
        if channel not in names:
            raise SignalError(f"record {base.name} has channels {names}, not {channel!r}")
        channel = names.index(channel)
    if not 0 <= channel < n_sig:
        raise SignalError(f"record {base.name} has {n_sig} channel(s); channel {channel} does not exist")
    raw_units = _check_wfdb_raw_fields(hea, lines, header, channel)
    record_units = raw_units or (getattr(header, "units", None) or ["mV"] * n_sig)[channel] or "mV"
    scale = units_to_mv(record_units, f"WFDB record {base.name}, signal {channel}",
                        "pick an ECG channel, or correct the units in the header's signal line (e.g. 1000/mV)")
    _check_units_arg(units, record_units, f"WFDB record {base.name}")
    _check_wfdb_file_sizes(base, header)
    if sampto is not None and not 2 <= int(sampto) <= (header.sig_len or sampto):
        raise SignalError(f"sampto={sampto} is outside [2, {header.sig_len}] samples of record {base.name}")
    try:
        sig, fields = wfdb.rdsamp(str(base), sampto=sampto, channels=[channel])
    except Exception as exc:  # noqa: BLE001 - wfdb raises many types for a damaged record
        raise RecordFormatError(f"WFDB record {base} cannot be read ({type(exc).__name__}: {exc}); restore its "
                                ".hea and signal files from the data set") from None
    x = check_signal(sig[:, 0].astype(np.float64) * scale, min_samples=2, name=f"record {base.name}")
    fs = check_fs(fields["fs"], f"sample rate of WFDB record {base.name}")
    return Record(base.name, x, fs, names[channel] if names else "")


# ----------------------------------------------------------------------------- CSV

_TIME_COLUMN = re.compile(
    r"^(t|ts|time|timestamps?|datetime|date|elapsed|seconds?|secs?|ms|samples?|sample_(index|no|number)|index|idx)"
    r"([_ (\[].*)?$|^.*_(time|ts|timestamp)([_ (\[].*)?$", re.IGNORECASE)
#: a time column in seconds says so: ``time_s``, ``t_s``, ``sensor_time_s``, ``time (s)``, ``t[s]`` (not ``ts`` or
#: ``timestamps``, which are as often milliseconds or nanoseconds)
_SECONDS_COLUMN = re.compile(r"^(t|time|elapsed|timestamp|.*_time)(?:[_ ]s|[_ ]?\(s\)|[_ ]?\[s\])$", re.IGNORECASE)
#: sample rates a time column may imply (Hz): below, the times are not seconds (ms, ns) or the record is too
#: coarse for ECG (the 0.67-40 Hz band-pass needs more than 80 Hz); above, not seconds either
TIMES_FS_RANGE_HZ = (80.0, 20_000.0)
#: how far (relative) a given ``fs_hz`` may differ from the rate a CSV's time column implies (clock drift)
FS_AGREEMENT = 0.02
_UNIT_SUFFIX = re.compile(r"(?:.*?(?:[_ ]+|(?=[(\[])))?[(\[]?\s*(mv|uv|\u00b5v|\u03bcv|v)\s*[)\]]?", re.IGNORECASE)
_NON_VOLTAGE_SUFFIX = re.compile(r".*?(?:[_ ]+|(?=[(\[]))[(\[]?\s*(adu|adc|counts?|raw|mmhg|kpa|nu|bpm|%)\s*[)\]]?",
                                 re.IGNORECASE)


def _column_units(name: str) -> str | None:
    """Units stated in a CSV column name (``ecg_mv`` -> ``'mv'``, ``ECG (uV)`` -> ``'uv'``), else None.

    Raises :class:`RecordFormatError` for a name stating a non-voltage unit (``ecg_adu``, ``bp_mmhg``).
    """
    m = _UNIT_SUFFIX.fullmatch(name.strip())
    if m:
        return m.group(1).lower()
    bad = _NON_VOLTAGE_SUFFIX.fullmatch(name.strip())
    if bad:
        raise RecordFormatError(f"CSV column {name!r} is in {bad.group(1)!r}, not a voltage; {_UNITS_HELP}: "
                                "convert it (e.g. to a column ecg_mv)")
    return None


def _pick_column(header: list[str], n_cols: int, column: int | str | None, where: str) -> int:
    """Index of the ECG column: ``column`` if given, else the only non-time column (by name), preferring names
    starting with 'ecg'. A time column is never returned."""
    if column is not None:
        if isinstance(column, str):
            if column not in header:
                raise SignalError(f"{where} has columns {header}, not {column!r}")
            idx = header.index(column)
        else:
            if not -n_cols <= int(column) < n_cols:
                raise SignalError(f"{where} has {n_cols} column(s); column {column} does not exist")
            idx = int(column) % n_cols
        if header and _TIME_COLUMN.match(header[idx]):
            raise SignalError(f"{where}: column {header[idx]!r} is a time column, not ECG; pick the ECG column")
        return idx
    if not header:
        return n_cols - 1  # the last column; read_csv refuses it if it looks like a time axis
    candidates = [i for i, h in enumerate(header) if not _TIME_COLUMN.match(h)]
    if len(candidates) > 1:
        ecg = [i for i in candidates if header[i].strip().lower().startswith("ecg")]
        candidates = ecg if len(ecg) == 1 else candidates
    if len(candidates) != 1:
        raise RecordFormatError(f"{where} has columns {header}: cannot tell which one is ECG; name it ecg_mv "
                                "(or ecg_uv / ecg_v) or pass column=<name>")
    return candidates[0]


def _fs_from_times(t: np.ndarray, where: str) -> float:
    """Sample rate (Hz) from per-sample times (s), ignoring gaps (steps > 1.5 x the median step).

    :class:`RecordFormatError` when the rate is outside :data:`TIMES_FS_RANGE_HZ`: the times are then not in
    seconds (Unix milliseconds give 0.3 Hz for a 300 Hz record), or the record is no usable ECG."""
    d = np.diff(t)
    med = float(np.median(d))
    keep = d <= 1.5 * med
    fs = check_fs(float(np.count_nonzero(keep)) / float(np.sum(d[keep])), f"sample rate implied by {where}")
    lo, hi = TIMES_FS_RANGE_HZ
    if not lo <= fs <= hi:
        raise RecordFormatError(f"{where} implies a sample rate of {fs:.6g} Hz, outside {lo:g}-{hi:g} Hz: the times "
                                "are probably not in seconds (milliseconds? nanoseconds?); convert them to seconds, "
                                "or delete the time column and pass fs_hz (--fs)")
    return fs


def _check_times(t: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(t)):
        raise RecordFormatError(f"{where} contains NaN/inf timestamps; remove those rows")
    bad = np.flatnonzero(np.diff(t) <= 0)
    if bad.size:
        i = int(bad[0])
        raise RecordFormatError(f"{where}: timestamps do not increase at data row {i + 2} (line {i + 3}: {float(t[i])!r} then "
                                f"{float(t[i + 1])!r}; {bad.size} such step(s)); the time axis cannot be trusted: cut "
                                "the file there, or delete the time column(s) and pass fs_hz")


def _looks_like_decimal_commas(body: str, data: np.ndarray) -> bool:
    """A headerless two-column table written with decimal commas ('-0,3909' per row): every value is written
    as an integer, the second column never has a sign, and the first neither counts up like an index nor
    takes large values (ECG integer parts in mV are small)."""
    rows = [r.strip() for r in body.splitlines() if r.strip()]
    if len(rows) < 2 or not all(re.fullmatch(r"[+-]?\d+,\d+", r) for r in rows):
        return False
    first = data[:, 0]
    return bool(np.all(np.abs(first) <= 100) and not np.all(np.diff(first) > 0))


def read_csv(path: str | Path, fs_hz: float | None = None, column: int | str | None = None,
             units: str | None = None) -> Record:
    """Read a comma-separated ECG record; returns millivolts.

    Layout: one sample per row; an optional header line names the columns. The ECG column is chosen by name
    (``column`` overrides): the only column that is not a time column (``time_s``, ``t``, ``sensor_time_s``,
    ``timestamp``, ``sample``...), preferring one starting with ``ecg``; a time column is never used as ECG.
    Without a header the last column is used (refused if it increases on every row, like a time axis).
    Units: from the column name suffix (``ecg_mv``: mV, ``ecg_uv``/``ecg_µv``: microvolts, converted to mV,
    ``ecg_v``: volts), else ``units`` ('mV', 'uV', 'V'), else mV. Sample rate: from a time column whose name
    says seconds (``sensor_time_s``, ``time_s``, ``t_s``, ``time (s)``), ignoring gaps, which must imply
    80-20,000 Hz (Unix milliseconds do not) and agree with ``fs_hz`` within 2 % when both are given; the
    times are kept in :attr:`Record.time_s`. Without one, ``fs_hz`` (Hz). Recordings of
    :class:`edge_sdk.stream.Recorder` (``sensor_time_s,host_time_s,ecg_uv``) are read this way.

    Raises :class:`RecordNotFoundError`, :class:`RecordFormatError` (binary, empty, ragged or non-numeric
    rows, empty or comment lines among the samples, decimal commas, unknown units, timestamps not increasing
    or not in seconds, ``fs_hz`` against the times, several candidate columns) or :class:`SignalError` (bad
    ``fs_hz``, no sample rate at all, NaN samples).
    """
    p = Path(path)
    if not p.exists():
        raise RecordNotFoundError(f"CSV record {p} not found")
    where = f"CSV {p.name}"
    if fs_hz is not None:
        fs_hz = check_fs(fs_hz)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise RecordFormatError(f"{where} is not UTF-8 text (a binary file?); export the ECG as CSV text") from None
    if "\x00" in text:
        raise RecordFormatError(f"{where} contains NUL bytes (a binary file?); export the ECG as CSV text")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    header: list[str] = []
    try:
        [float(v) for v in first.strip().split(",") if v.strip()]
    except ValueError:  # a header line such as "time_s,ecg_mv"
        header = [h.strip().strip('"').strip("'").strip() for h in first.strip().split(",")]
    body = text
    if header:
        body = text[text.index(first) + len(first):]
    if not body.strip():
        raise RecordFormatError(f"{where} holds no samples (empty{' apart from its header' if header else ''}); "
                                "write one sample per row")
    rows = body.splitlines()
    numbered = [(i + 1 + len(text.splitlines()) - len(rows), r) for i, r in enumerate(rows)]  # (file line, row)
    filled = [k for k, (_, r) in enumerate(numbered) if r.strip()]
    inner = numbered[filled[0]:filled[-1] + 1]
    holes = [(n, r) for n, r in inner if not r.strip() or "#" in r]
    if holes:
        n, r = holes[0]
        raise RecordFormatError(f"{where}: line {n} is {'empty' if not r.strip() else 'a comment: ' + repr(r.strip())} "
                                f"({len(holes)} such line(s) among the samples); a CSV record holds one sample per "
                                "line and nothing else, since a missing line would shift every later sample in time: "
                                "delete those lines if no sample is missing, or export the record with a time_s column")
    try:
        data = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except ValueError as exc:
        raise RecordFormatError(f"{where} is not a numeric comma-separated table ({exc}); every row must have "
                                "the same number of comma-separated numbers") from None
    n_cols = data.shape[1]
    if header and len(header) != n_cols:
        raise RecordFormatError(f"{where}: header names {len(header)} columns {header} but rows have {n_cols}; "
                                "make them agree")
    idx = _pick_column(header, n_cols, column, where)
    if not header and column is None and n_cols > 1 and data.shape[0] >= 10 and np.all(np.diff(data[:, idx]) > 0):
        raise RecordFormatError(f"{where} has {n_cols} columns and no header, and its last column increases on "
                                "every row like a time axis, not ECG: pass column=<index of the ECG column>, or add "
                                "a header such as 'time_s,ecg_mv'")
    if not header and column is None and n_cols == 2 and _looks_like_decimal_commas(body, data):
        raise RecordFormatError(f"{where} has no header and every row is two integers such as "
                                f"{rows[filled[0]].strip()!r}: decimal commas? Write decimal points (0.1037), or give the "
                                "file a header such as 'time_s,ecg_mv' and pass column=<the ECG column>")
    col_units = _column_units(header[idx]) if header else None
    _check_units_arg(units, col_units, f"{where} column {header[idx]!r}" if header else where)
    scale = units_to_mv(col_units or units or "mV", where)
    x = check_signal(data[:, idx] * scale, min_samples=2, name=where)
    time_s = None
    seconds = [i for i, h in enumerate(header) if _SECONDS_COLUMN.match(h)]
    if seconds:
        ti = header.index("sensor_time_s") if "sensor_time_s" in header else seconds[0]
        t = data[:, ti].copy()
        _check_times(t, f"{where} column {header[ti]!r}")
        time_s = t
        implied = _fs_from_times(t, f"{where} column {header[ti]!r}")
        if fs_hz is None:
            fs_hz = implied
        elif abs(fs_hz - implied) > FS_AGREEMENT * implied:
            raise RecordFormatError(f"{where}: fs_hz {fs_hz:g} Hz disagrees with its time column {header[ti]!r}, "
                                    f"which implies {implied:.6g} Hz; drop fs_hz (--fs) to use the times, or fix them")
    if fs_hz is None:
        times = [h for h in header if _TIME_COLUMN.match(h)]
        unitless = (f" (its time column {times[0]!r} does not say it is in seconds: rename it time_s if it is)"
                    if times else "")
        raise SignalError(f"{where} carries no sample rate{unitless}: pass fs_hz (e.g. --fs 130) or add a time_s "
                          "column")
    return Record(p.stem, x, float(fs_hz), header[idx] if header else "", time_s)


# ----------------------------------------------------------------------------- npz

def read_npz(path: str | Path, units: str | None = None) -> Record:
    """Read an ``.npz`` holding ``signal_mv`` (n,) in millivolts and ``fs_hz`` (scalar, Hz).

    Raises :class:`RecordNotFoundError`, :class:`RecordFormatError` (not a readable npz, missing arrays,
    wrong shapes, pickled objects, ``units`` other than mV) or :class:`SignalError` (bad rate, NaN samples).
    """
    p = Path(path)
    if not p.exists():
        raise RecordNotFoundError(f"npz record {p} not found")
    _check_units_arg(units, "mV", f"npz {p.name} (array signal_mv)")
    try:
        loaded = np.load(p, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy under an .npz name: one bare array
            raise RecordFormatError(f"{p} is a single numpy array (.npy), not an .npz archive: the sample rate is "
                                    "missing; save it with numpy.savez(path, signal_mv=x_mv, fs_hz=fs)")
        with loaded as z:
            if "signal_mv" not in z.files or "fs_hz" not in z.files:
                raise RecordFormatError(f"{p} must hold arrays 'signal_mv' and 'fs_hz', it has {z.files}; save it "
                                        "with numpy.savez(path, signal_mv=x_mv, fs_hz=fs)")
            signal, fs = z["signal_mv"], z["fs_hz"]
    except RecordFormatError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise RecordFormatError(f"{p} is not a readable numpy .npz ({type(exc).__name__}: {exc}); save it again "
                                "with numpy.savez(path, signal_mv=x_mv, fs_hz=fs)") from None
    if np.ndim(signal) != 1 or np.size(fs) != 1:
        raise RecordFormatError(f"{p}: signal_mv must have shape (n,) and fs_hz be a scalar, got "
                                f"{np.shape(signal)} and {np.shape(fs)}; store one lead")
    if np.asarray(fs).dtype.kind not in "fiu":
        raise RecordFormatError(f"{p}: fs_hz must be a number, got dtype {np.asarray(fs).dtype}")
    return Record(p.stem, check_signal(signal, 2, f"npz {p.name}"),
                  check_fs(np.asarray(fs).item(), f"fs_hz of {p.name}"))


def read_record(path: str | Path, fs_hz: float | None = None, channel: int | str = 0,
                units: str | None = None, column: int | str | None = None) -> Record:
    """Read a record by extension: ``.csv`` (see :func:`read_csv`; ``fs_hz`` in Hz when it has no time column,
    ``column`` picks its ECG column), ``.npz`` (:func:`read_npz`), otherwise WFDB (:func:`read_wfdb`,
    ``channel`` = signal index or name). The result is always in mV. ``units``: units of the stored
    values when the file does not say (CSV), checked against the file when it does. ``fs_hz`` must be a
    positive finite rate (:class:`SignalError` otherwise); WFDB and npz records carry their own rate.
    """
    p = Path(path)
    if fs_hz is not None:
        fs_hz = check_fs(fs_hz)
    if p.suffix.lower() == ".csv":
        return read_csv(p, fs_hz, column=column, units=units)
    if p.suffix.lower() == ".npz":
        return read_npz(p, units=units)
    return read_wfdb(p, channel=channel, units=units)
