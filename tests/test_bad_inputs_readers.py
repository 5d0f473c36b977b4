"""Bad record files end in a named error (RecordNotFoundError / RecordFormatError / SignalError) that says
what to do, units come from the record, and replayed recordings keep their gaps.

Explicit regressions use the inputs of the reliability issue; the hypothesis tests write random CSV text,
random header lines and random npz bytes (deterministic: ``derandomize=True``).
"""
from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_sdk.datasets import Cinc2017, MitBih, split_records
from edge_sdk.errors import (DatasetError, EdgeSDKError, RecordFormatError, RecordNotFoundError, SignalError,
                             SplitError)
from edge_sdk.preprocessing import bandpass_filter, resample_linear, resample_uniform, zscore
from edge_sdk.records import Record, read_csv, read_record, read_wfdb
from edge_sdk.signal import assess_quality
from edge_sdk.windowing import record_windows, split_windows
from edge_sdk.sources import EcgChunk, ReplaySource, SourceEvent
from edge_sdk.stream.recorder import Recorder

FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
N, FS = 73, 130.0


@pytest.fixture
def a00001(cinc, tmp_path) -> Path:
    """A writable copy of Challenge 2017 record A00001 (300 Hz, 1000/mV), as ``tmp_path / 'r'``."""
    src = cinc.root / "training2017" / "A00001"
    for ext in (".hea", ".mat"):
        shutil.copyfile(src.with_suffix(ext), tmp_path / f"r{ext}")
    hea = tmp_path / "r.hea"
    hea.write_text(hea.read_text().replace("A00001", "r"))
    return tmp_path / "r"


def edit_header(base: Path, old: str, new: str) -> None:
    hea = base.with_suffix(".hea")
    text = hea.read_text()
    assert old in text
    hea.write_text(text.replace(old, new))


# ----------------------------------------------------------------------------- WFDB

@pytest.mark.parametrize("content", ["", "\n\n# only a comment\n", "hello world\nfoo bar\n"])
def test_empty_or_garbage_header_is_a_format_error(a00001, content):
    a00001.with_suffix(".hea").write_text(content)
    with pytest.raises(RecordFormatError, match="r.hea"):
        read_record(a00001)


def test_binary_header_is_a_format_error(a00001):
    a00001.with_suffix(".hea").write_bytes(bytes(range(256)))
    with pytest.raises(RecordFormatError, match="not text"):
        read_record(a00001)


@pytest.mark.parametrize("size", [5000, 18024 - 2, 18024 + 4000])
def test_wrong_size_signal_file_is_a_format_error(a00001, size):
    mat = a00001.with_suffix(".mat")
    data = mat.read_bytes()
    mat.write_bytes((data + b"\0" * 4000)[:size])
    with pytest.raises(RecordFormatError, match=f"has {size} bytes.*18024"):
        read_record(a00001)


def test_missing_signal_file_is_not_found(a00001):
    a00001.with_suffix(".mat").unlink()
    with pytest.raises(RecordNotFoundError, match="r.mat"):
        read_record(a00001)


@pytest.mark.parametrize("fs", ["-300", "0", "nan", "abc"])
def test_invalid_sample_rate_in_header_is_refused(a00001, fs):
    edit_header(a00001, "r 1 300 ", f"r 1 {fs} ")  # wfdb reads -300 as its default 250 Hz
    with pytest.raises(RecordFormatError, match="sample rate"):
        read_record(a00001)


def test_gain_0_is_refused_not_read_as_200(a00001):
    edit_header(a00001, "1000/mV", "0/mV")  # wfdb would use 200: 5x the amplitude
    with pytest.raises(RecordFormatError, match="gain"):
        read_record(a00001)


@pytest.mark.parametrize("gain_units", ["1/uV", "1/µV", "1000000/V"])
def test_wfdb_units_are_taken_from_the_header(a00001, cinc, gain_units):
    reference = cinc.read("A00001").signal_mv  # 1000/mV
    edit_header(a00001, "1000/mV", gain_units)  # the same ADC counts in other units: the same millivolts
    np.testing.assert_allclose(read_record(a00001).signal_mv, reference, rtol=1e-12)


@pytest.mark.parametrize("units", ["mmHg", "NU", "adu"])
def test_non_voltage_units_in_header_are_refused(a00001, units):
    edit_header(a00001, "1000/mV", f"1000/{units}")
    with pytest.raises(RecordFormatError, match=f"units '{units}' are not a voltage"):
        read_record(a00001)


def test_units_argument_must_agree_with_the_header(a00001):
    assert read_record(a00001, units="mV").fs_hz == 300
    with pytest.raises(RecordFormatError, match="units='uV'"):
        read_record(a00001, units="uV")


# ----------------------------------------------------------------------------- CSV

def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_ecg_column_is_picked_by_name_never_the_time_column(tmp_path):
    x = np.round(np.sin(np.arange(300) / 7), 4)
    t = np.arange(300) / FS
    p = write(tmp_path, "a.csv", "ecg_mv,time_s\n" + "".join(f"{v},{s:.6f}\n" for v, s in zip(x, t)))
    rec = read_record(p)  # used to return the time column as the signal
    np.testing.assert_array_equal(rec.signal_mv, x)
    assert rec.fs_hz == pytest.approx(FS, abs=1e-3) and rec.lead == "ecg_mv"
    np.testing.assert_allclose(rec.time_s, t, atol=1e-6)
    with pytest.raises(SignalError, match="time column"):
        read_record(p, column="time_s")


@pytest.mark.parametrize("name, factor", [("ecg_mv", 1.0), ("ecg_uv", 1e-3), ("ECG (µV)", 1e-3), ("ecg_v", 1e3)])
def test_csv_units_come_from_the_column_name(tmp_path, name, factor):
    p = write(tmp_path, "u.csv", f"time_s,{name}\n0.0,1000\n0.01,-250\n0.02,4\n")
    rec = read_record(p)
    np.testing.assert_allclose(rec.signal_mv, np.array([1000, -250, 4]) * factor)
    assert rec.fs_hz == pytest.approx(100.0)


def test_microvolt_csv_without_unit_in_the_name_needs_the_units_argument(tmp_path):
    p = write(tmp_path, "v.csv", "ecg\n1000\n2000\n")
    assert read_record(p, fs_hz=FS).signal_mv.tolist() == [1000.0, 2000.0]  # documented default: mV
    assert read_record(p, fs_hz=FS, units="uV").signal_mv.tolist() == [1.0, 2.0]
    with pytest.raises(RecordFormatError, match="not a voltage"):
        read_record(p, fs_hz=FS, units="mmHg")
    with pytest.raises(RecordFormatError, match="units='V'"):
        read_record(write(tmp_path, "w.csv", "ecg_uv\n1\n2\n"), fs_hz=FS, units="V")


def test_csv_with_a_non_voltage_unit_is_refused(tmp_path):
    with pytest.raises(RecordFormatError, match="'adu', not a voltage"):
        read_record(write(tmp_path, "c.csv", "time_s,ecg_adu\n0,512\n0.01,515\n"))


@pytest.mark.parametrize("text, match", [
    ("1,2\n3\n4,5\n", "number of columns changed"),  # ragged
    ("1.0\nabc\n2.0\n", "could not convert"),
    ("", "no samples"),
    ("ecg_mv\n", "no samples"),
    ("time_s,ecg_mv\n0,1,2\n0.1,1,2\n", "header names 2 columns"),
    ("a,b\n1,2\n3,4\n", "cannot tell which one is ECG"),
])
def test_malformed_csv_is_a_format_error(tmp_path, text, match):
    with pytest.raises(RecordFormatError, match=match):
        read_record(write(tmp_path, "m.csv", text), fs_hz=FS)


def test_binary_csv_is_a_format_error(tmp_path):
    p = tmp_path / "b.csv"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(RecordFormatError, match="not UTF-8 text"):
        read_record(p, fs_hz=FS)
    p.write_bytes(b"1.0\n\x00\x00\n")
    with pytest.raises(RecordFormatError, match="NUL"):
        read_record(p, fs_hz=FS)


def test_headerless_csv_whose_last_column_is_time_is_refused(tmp_path):
    rows = "".join(f"{np.sin(i / 5):.4f},{i / FS:.6f}\n" for i in range(50))
    with pytest.raises(RecordFormatError, match="time axis"):
        read_record(write(tmp_path, "h.csv", rows), fs_hz=FS)
    assert read_csv(tmp_path / "h.csv", fs_hz=FS, column=0).signal_mv.size == 50


def recorder_csv(tmp_path: Path, times: np.ndarray) -> Path:
    p = tmp_path / "rec.csv"
    p.write_text("sensor_time_s,host_time_s,ecg_uv\n" + "".join(f"{t:.6f},{t + 0.05:.6f},{i}.0\n"
                                                                 for i, t in enumerate(times)))
    return p


@pytest.mark.parametrize("times, row", [
    (np.full(20, 5.0), 2),  # identical: fs was inf
    (5.0 - np.arange(20) / FS, 2),  # decreasing: fs was -130
    (np.r_[np.arange(10), 3.0, np.arange(11, 20)] / FS, 11),  # one step back (line 12 of the file)
])
def test_recording_with_non_increasing_timestamps_is_a_format_error(tmp_path, times, row):
    with pytest.raises(RecordFormatError, match=f"do not increase at data row {row}"):
        read_record(recorder_csv(tmp_path, times))


@pytest.mark.parametrize("fs", [0, -300, -1e-9, math.nan, math.inf, -math.inf, "fast"])
def test_user_sample_rates_must_be_positive_and_finite(tmp_path, fs):
    p = write(tmp_path, "f.csv", "1\n2\n3\n")
    with pytest.raises(SignalError, match="fs_hz"):
        read_record(p, fs_hz=fs)
    with pytest.raises(SignalError, match="fs_hz"):
        read_csv(p, fs_hz=fs)
    with pytest.raises(SignalError, match="fs_hz"):
        ReplaySource(p, fs_hz=fs)


# ----------------------------------------------------------------------------- npz

@pytest.mark.parametrize("make", [
    lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"),
    lambda p: p.write_bytes(b""),
    lambda p: p.write_bytes(bytes(range(256))),
    lambda p: (np.savez(p, signal_mv=np.zeros(100), fs_hz=300.0), p.write_bytes(p.read_bytes()[:200])),
    lambda p: np.savez(p, signal_mv=np.array([object()] * 3, dtype=object), fs_hz=300.0),
    lambda p: np.savez(p, x=np.zeros(10)),
    lambda p: np.savez(p, signal_mv=np.zeros((2, 100)), fs_hz=300.0),
    lambda p: np.savez(p, signal_mv=np.zeros(100), fs_hz=np.array([300.0, 360.0])),
    lambda p: np.savez(p, signal_mv=np.zeros(100), fs_hz="300"),
], ids=["not-zip", "empty", "binary", "truncated", "pickled", "keys", "2-D", "fs-array", "fs-str"])
def test_corrupt_npz_is_a_format_error(tmp_path, make):
    p = tmp_path / "c.npz"
    make(p)
    with pytest.raises(RecordFormatError, match="c.npz"):
        read_record(p)


@pytest.mark.parametrize("fs", [0.0, -300.0, math.nan, math.inf])
def test_npz_with_an_invalid_rate_is_refused(tmp_path, fs):
    np.savez(tmp_path / "r.npz", signal_mv=np.zeros(100), fs_hz=fs)
    with pytest.raises(SignalError, match="fs_hz of r.npz"):
        read_record(tmp_path / "r.npz")


# ----------------------------------------------------------------------------- replay of recordings

def replay(source: ReplaySource) -> list:
    async def collect() -> list:
        return [item async for item in source]
    return asyncio.run(collect())


def test_replayed_recording_keeps_its_gap_and_its_rate(tmp_path):
    t0 = 1.7e9
    path = tmp_path / "rec.csv"
    with Recorder(path) as rec:
        for k in range(27):
            if k in (8, 9):  # two frames lost on the link
                continue
            st = t0 + (k * N + np.arange(N)) / FS
            rec.write(EcgChunk(np.arange(N) + 100.0 * k, st, st + 0.05, st[-1] + 0.05, FS, 0.0, k))
    back = read_record(path)
    assert back.fs_hz == pytest.approx(FS, abs=0.01)  # was 120.3 Hz: the gap was bridged
    items = replay(ReplaySource(path, speed=0))
    chunks = [i for i in items if isinstance(i, EcgChunk)]
    gaps = [i for i in items if isinstance(i, SourceEvent) and i.kind == "gap"]
    assert len(gaps) == 1 and gaps[0].detail["gap_s"] == pytest.approx(2 * N / FS, abs=1e-5)
    assert gaps[0].detail["samples"] == 2 * N and gaps[0].detail["reason"] == "recorded"
    after = [c for c in chunks if c.gap_before_s > 0]
    assert len(after) == 1 and after[0].gap_before_s == pytest.approx(2 * N / FS, abs=1e-5)
    assert after[0].sensor_time_s[0] == pytest.approx(t0 + 10 * N / FS, abs=1e-5)
    pos = {id(i): k for k, i in enumerate(items)}
    assert pos[id(gaps[0])] == pos[id(after[0])] - 1  # the event comes right before the chunk
    for c in chunks:  # no chunk spans the hole
        assert np.all(np.diff(c.sensor_time_s) < 1.5 / FS) and c.fs_hz == pytest.approx(FS, abs=0.01)
    np.testing.assert_allclose(np.concatenate([c.samples_uv for c in chunks]), back.signal_mv * 1e3)


def test_replayed_recording_without_gaps_has_no_gap(tmp_path, cinc):
    rec = cinc.read("A00001")
    path = tmp_path / "r.csv"
    with Recorder(path) as out:
        for item in replay(ReplaySource(rec, speed=0, chunk_samples=50)):
            out.write(item)
    back = read_record(path)
    assert abs(back.fs_hz - 300) < 0.01 and back.signal_mv.size == rec.signal_mv.size
    items = replay(ReplaySource(path, speed=0))
    assert not any(isinstance(i, SourceEvent) and i.kind == "gap" for i in items)


@pytest.mark.parametrize("kwargs, match", [
    ({"speed": math.nan}, "speed"), ({"speed": -1}, "speed"), ({"chunk_samples": 0}, "chunk_samples"),
    ({"start_s": -1.0}, "start_s"), ({"duration_s": 0.0}, "duration_s"), ({"start_s": 1e6}, "nothing to replay"),
])
def test_replay_arguments_are_checked(kwargs, match):
    rec = Record("x", np.zeros(1000), 300.0)
    with pytest.raises(SignalError, match=match):
        ReplaySource(rec, **kwargs)


# ----------------------------------------------------------------------------- data set folders

def test_bad_data_set_files_are_data_set_errors(tmp_path):
    (tmp_path / "REFERENCE-v3.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DatasetError, match="not a CSV text"):
        Cinc2017(tmp_path)
    (tmp_path / "REFERENCE-v3.csv").write_text("A00001,N\nA00001,A\n")
    with pytest.raises(DatasetError, match="more than once"):
        Cinc2017(tmp_path)
    (tmp_path / "REFERENCE-v3.csv").write_text("")
    with pytest.raises(DatasetError, match="no record"):
        Cinc2017(tmp_path)
    (tmp_path / "RECORDS").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DatasetError, match="not a text"):
        MitBih(tmp_path)
    (tmp_path / "RECORDS").write_text("\n")
    with pytest.raises(DatasetError, match="no record"):
        MitBih(tmp_path)


def test_missing_or_corrupt_annotations_are_named_errors(tmp_path, mitdb):
    for ext in (".hea", ".dat"):
        shutil.copyfile(mitdb.root / f"100{ext}", tmp_path / f"100{ext}")
    (tmp_path / "RECORDS").write_text("100\n")
    db = MitBih(tmp_path)
    with pytest.raises(RecordNotFoundError, match="100.atr"):
        db.beats("100")
    (tmp_path / "100.atr").write_bytes(b"\x01\x02\x03")
    with pytest.raises(RecordFormatError, match="100.atr"):
        db.rhythms("100")


@pytest.mark.parametrize("fractions", [(0.5, 0.5, 0.5), (1.2, -0.1, -0.1), (0.5, 0.5)])
def test_bad_split_fractions_are_split_errors(fractions):
    with pytest.raises(SplitError, match="fractions"):
        split_records(["a", "b"], ["N", "A"], fractions)


def test_split_with_names_and_labels_of_different_lengths_is_refused():
    with pytest.raises(SplitError, match="3 record names but 2 labels"):
        split_records(["a", "b", "c"], ["N", "A"])


# ----------------------------------------------------------------------------- property-based

def _check_record(rec: Record) -> None:
    assert rec.signal_mv.ndim == 1 and rec.signal_mv.size >= 2 and np.all(np.isfinite(rec.signal_mv))
    assert math.isfinite(rec.fs_hz) and rec.fs_hz > 0
    if rec.time_s is not None:
        assert rec.time_s.shape == rec.signal_mv.shape and np.all(np.diff(rec.time_s) > 0)


_good_cell = st.floats(-1e4, 1e4, allow_nan=False).map(lambda v: f"{v:.4f}")
_bad_cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**6, 10**6).map(str),
                      st.sampled_from(["", "nan", "abc", " 1.5 ", "1e400", "-0", "0x10", '"2"', "1;2"]))
_header = st.lists(st.sampled_from(["time_s", "t", "ecg_mv", "ecg_uv", "ecg_v", "ecg", "MLII", "sensor_time_s",
                                    "host_time_s", "ecg_uv ", "ecg_adu", "x", "ECG (µV)", "sample"]),
                   min_size=1, max_size=4, unique=True)


@st.composite
def csv_texts(draw) -> str:
    """Random CSV-like text: an optional header, rows of numbers with occasional bad cells, ragged rows and
    time columns that may stall or go back; random line ends."""
    header = draw(st.one_of(st.none(), _header))
    n_cols = len(header) if header else draw(st.integers(1, 3))
    n_rows = draw(st.integers(0, 12))
    step = draw(st.sampled_from([1 / 130, 1 / 300, 0.0, -0.01]))
    rows = []
    for i in range(n_rows):
        row = [draw(_good_cell) for _ in range(n_cols)]
        if header:  # time columns count up (usually)
            row = [f"{1000 + i * step:.6f}" if "time" in h or h == "t" else c for h, c in zip(header, row)]
        if draw(st.integers(0, 9)) == 0:
            row[draw(st.integers(0, n_cols - 1))] = draw(_bad_cell)
        if draw(st.integers(0, 14)) == 0:
            row = row[:-1] if len(row) > 1 else row + ["1"]
        rows.append(row)
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    lines = ([",".join(header)] if header else []) + [",".join(r) for r in rows]
    return eol.join(lines) + draw(st.sampled_from(["", eol]))


@FAST
@given(text=st.one_of(csv_texts(), csv_texts(), st.text(max_size=200)),
       fs=st.one_of(st.just(130.0), st.none(), st.floats()), units=st.sampled_from([None, "mV", "uV", "V", "mmHg"]))
def test_any_csv_text_is_a_record_or_a_named_error(text, fs, units):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "r.csv"
        p.write_text(text, encoding="utf-8")
        try:
            rec = read_record(p, fs_hz=fs, units=units)
        except EdgeSDKError:
            return
        _check_record(rec)


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_as_csv_or_npz_are_a_record_or_a_named_error(data):
    with tempfile.TemporaryDirectory() as d:
        for name in ("r.csv", "r.npz"):
            p = Path(d) / name
            p.write_bytes(data)
            try:
                _check_record(read_record(p, fs_hz=130.0))
            except EdgeSDKError:
                pass


#: fields of the A00001 header (record line, then signal line) with valid and invalid alternatives
_HEADER_FIELDS = [
    ("r", ["x", ""]), ("1", ["2", "0", "-1", "x"]), ("300", ["300/1000", "-300", "0", "nan", "1e3", ""]),
    ("9000", ["8999", "9001", "0", "-1", ""]),
    ("r.mat", ["q.mat", ""]), ("16+24", ["16", "212", "x"]),
    ("1000/mV", ["1000", "0/mV", "1000/mmHg", "1/uV", "1/µV", "1e6/V", "-5", "1000/NU"]),
    ("16 0 -127 0 0 ECG", ["16", "", "garbage"]),
]


@st.composite
def wfdb_headers(draw) -> str:
    """The header of A00001 with zero, one or two of its fields replaced by another value (valid or not)."""
    fields = [good for good, _ in _HEADER_FIELDS]
    for _ in range(draw(st.integers(0, 2))):
        k = draw(st.integers(0, len(fields) - 1))
        fields[k] = draw(st.sampled_from(_HEADER_FIELDS[k][1]))
    return " ".join(fields[:4]) + "\n" + " ".join(fields[4:]) + "\n"


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(header=wfdb_headers())
def test_any_wfdb_header_is_a_record_or_a_named_error(cinc, header):
    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "r"
        shutil.copyfile(cinc.root / "training2017" / "A00001.mat", base.with_suffix(".mat"))
        base.with_suffix(".hea").write_text(header)
        try:
            rec = read_record(base)
        except EdgeSDKError:
            return
        _check_record(rec)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(fs=st.floats(100.0, 500.0), lost=st.lists(st.integers(1, 400), max_size=4, unique=True),
       chunk=st.integers(1, 100))
def test_replayed_recordings_report_exactly_their_gaps(fs, lost, chunk):
    n = 600
    keep = np.ones(n, bool)
    for start in lost:
        keep[start:start + 3] = False  # three samples lost at each place
    t = 1.7e9 + np.arange(n)[keep] / fs
    rec = Record("r", np.arange(t.size, dtype=np.float64), fs, time_s=t)
    items = replay(ReplaySource(rec, speed=0, chunk_samples=chunk))
    chunks = [i for i in items if isinstance(i, EcgChunk)]
    gaps = [i.detail["gap_s"] for i in items if isinstance(i, SourceEvent) and i.kind == "gap"]
    expected = np.diff(t)[np.diff(t) > 1.5 / fs] - 1 / fs
    np.testing.assert_allclose(gaps, expected, atol=1e-6)
    np.testing.assert_allclose([c.gap_before_s for c in chunks if c.gap_before_s], expected, atol=1e-6)
    assert np.concatenate([c.samples_uv for c in chunks]).size == t.size
    assert all(len(c) <= chunk and np.all(np.diff(c.sensor_time_s) < 1.5 / fs) for c in chunks)


# ----------------------------------------------------------------------------- files that read as something else

def test_wfdb_record_line_without_a_rate_is_refused_not_250_hz(a00001):
    edit_header(a00001, "r 1 300 9000 05:05:15 1/05/2000", "r 1")
    with pytest.raises(RecordFormatError, match="states no sample rate"):
        read_record(a00001)


def test_npy_named_npz_is_a_format_error(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3000))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    with pytest.raises(RecordFormatError, match=r"single numpy array \(.npy\)"):
        read_record(tmp_path / "a.npz")


def test_decimal_commas_are_refused_not_read_as_two_columns(cinc, tmp_path):
    x = cinc.read("A00001").signal_mv[:3000]  # real ECG in mV: integer parts -1..1, signs on the first part
    p = write(tmp_path, "dec.csv", "\n".join(f"{v:.4f}".replace(".", ",") for v in x) + "\n")
    with pytest.raises(RecordFormatError, match="decimal commas"):
        read_record(p, fs_hz=300)
    # a headerless index,value table of integers is still a record (index counts up)
    q = write(tmp_path, "idx.csv", "".join(f"{i},{abs(int(v * 1000))}\n" for i, v in enumerate(x)))
    assert read_csv(q, fs_hz=300, column=1).signal_mv.size == 3000


@pytest.mark.parametrize("row, what", [("", "empty"), ("# dropout", "a comment"), ("0.3 # note", "a comment")])
def test_empty_or_comment_lines_among_samples_are_refused(tmp_path, row, what):
    lines = ["ecg_mv"] + [f"{0.01 * i:.2f}" for i in range(20)]
    lines.insert(6, row)  # file line 7
    p = write(tmp_path, "h.csv", "\n".join(lines) + "\n\n\n")
    with pytest.raises(RecordFormatError, match=f"line 7 is {what}"):
        read_record(p, fs_hz=FS)
    del lines[6]  # blank lines before the header and after the last sample are fine
    assert read_record(write(tmp_path, "ok.csv", "\n\n" + "\n".join(lines) + "\n\n"), fs_hz=FS).signal_mv.size == 20


def test_time_columns_must_say_seconds_and_imply_an_ecg_rate(tmp_path):
    t_ms = 1.7e12 + np.arange(100) * 1000 / 300  # Unix milliseconds, 300 Hz
    body = "".join(f"{t:.3f},{0.01 * i:.2f}\n" for i, t in enumerate(t_ms))
    with pytest.raises(SignalError, match="'ts' does not say it is in seconds"):
        read_record(write(tmp_path, "ts.csv", "ts,ecg_mv\n" + body))
    assert read_record(write(tmp_path, "ts2.csv", "ts,ecg_mv\n" + body), fs_hz=300).fs_hz == 300
    with pytest.raises(RecordFormatError, match=r"implies a sample rate of 0\.3 Hz.*not in seconds"):
        read_record(write(tmp_path, "t.csv", "time_s,ecg_mv\n" + body))
    t_s = np.arange(100) / 300
    rec = read_record(write(tmp_path, "t2.csv", "time (s),ecg_mv\n" + "".join(f"{t:.6f},0.1\n" for t in t_s)))
    assert rec.fs_hz == pytest.approx(300) and rec.time_s is not None


def test_fs_hz_must_agree_with_the_time_column(tmp_path):
    times = np.arange(200) / FS
    p = recorder_csv(tmp_path, times)
    assert read_record(p, fs_hz=FS * 1.01).fs_hz == pytest.approx(FS * 1.01)  # within 2 %: clock drift
    with pytest.raises(RecordFormatError, match="disagrees with its time column 'sensor_time_s'"):
        read_record(p, fs_hz=300)


# ----------------------------------------------------------------------------- offline API arguments

@pytest.mark.parametrize("call, match", [
    (lambda x: resample_uniform(x, 1e-6), "resampling would produce"),
    (lambda x: resample_linear(x, float("nan")), "fs_in"),
    (lambda x: resample_linear(x, float("inf")), "fs_in"),
    (lambda x: bandpass_filter(x, 80), "cannot hold"),
    (lambda x: bandpass_filter(x, 0), "fs_hz"),
    (lambda x: zscore(np.full(10, np.nan)), "NaN"),
    (lambda x: record_windows(x, 50), "below 80 Hz"),
    (lambda x: record_windows(x, 300, hop_s=0), "hop_s"),
    (lambda x: record_windows(x, 300, hop_s=float("nan")), "hop_s"),
    (lambda x: record_windows(x[:20], 300), "mostly padding"),
    (lambda x: record_windows(x, 1e5), "mostly padding"),
    (lambda x: split_windows(x, 5000, 0), "hop_samples"),
    (lambda x: split_windows(x, 5000, 2.5), "hop_samples"),
    (lambda x: assess_quality(x, float("nan")), "fs_hz"),
    (lambda x: assess_quality(np.stack([x, x]), 300), "one window"),
    (lambda x: assess_quality("abc", 300), "one window"),
])
def test_offline_functions_name_bad_arguments(cinc, call, match):
    x = cinc.read("A00001").signal_mv[:9000]  # 30 s of real ECG at 300 Hz
    with pytest.raises(SignalError, match=match):
        call(x)


def test_records_of_5_to_10_s_are_padded_to_one_window(cinc):
    x = cinc.read("A00001").signal_mv
    assert record_windows(x[:1800], 300).shape == (1, 5000)  # 6 s
    assert record_windows(x[:2999], 300).shape == (1, 5000)


def test_wfdb_channel_and_sampto_must_be_whole_numbers_or_names(a00001):
    for kw in ({"channel": 1.0}, {"channel": None}, {"sampto": "x"}, {"sampto": 2.5}):
        with pytest.raises(SignalError):
            read_wfdb(a00001, **kw)


@pytest.mark.parametrize("runtime", ["onnxruntime", "tflite"])
def test_backends_refuse_non_real_windows_and_answer_an_empty_batch(bundle_dir, runtime):
    from edge_sdk.inference import open_backend

    b = open_backend(bundle_dir, runtime, "int8")
    assert b.predict(np.zeros((0, 5000), np.float32)).shape == (0, 4)
    for bad in (np.array(["a"] * 5000), np.zeros(5000, np.complex64), np.array([None] * 5000)):
        with pytest.raises(SignalError, match="real numbers"):
            b.predict(bad)
