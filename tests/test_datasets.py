from collections import Counter

import numpy as np
import pytest

from edge_sdk.datasets import Cinc2017, MitBih, split_records
from edge_sdk.errors import DatasetError, RecordNotFoundError, SignalError
from edge_sdk.records import read_record


def test_cinc2017_reads_real_records(cinc):
    assert len(cinc) == 8028
    counts = Counter(cinc.labels.values())
    assert set(counts) == {"N", "A", "O", "~"} and counts["A"] > 500
    rec = cinc.read("A00001")
    assert rec.fs_hz == 300 and rec.signal_mv.shape == (9000,)
    assert 0.5 < np.ptp(rec.signal_mv) < 10  # millivolts, not ADC counts


def test_split_is_record_level_stratified_and_fixed(cinc):
    labels = [cinc.labels[n] for n in cinc.records]
    a = split_records(cinc.records, labels, seed=1)
    b = split_records(cinc.records, labels, seed=1)
    assert a == b
    sets = [set(a[k]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sum(map(len, sets)) == len(cinc)
    frac_af = sum(cinc.labels[n] == "A" for n in a["test"]) / len(a["test"])
    assert abs(frac_af - Counter(labels)["A"] / len(labels)) < 0.01


def test_mitdb_reads_signal_beats_and_rhythms(mitdb):
    rec = mitdb.read("201", lead="MLII", sampto=3600)
    assert rec.fs_hz == 360 and rec.signal_mv.shape == (3600,) and rec.lead == "MLII"
    samples, symbols = mitdb.beats("100")
    assert len(samples) == 2273 and Counter(symbols)["A"] == 33
    rhythms = {s.rhythm for s in mitdb.rhythms("201")}
    assert "AFIB" in rhythms
    segs = mitdb.rhythms("201")
    assert all(s.end > s.start for s in segs) and segs[-1].end == 650000


def test_missing_and_malformed_inputs(tmp_path, cinc, mitdb):
    with pytest.raises(RecordNotFoundError, match="not in"):
        cinc.read("Z99999")
    with pytest.raises(RecordNotFoundError, match="not in"):
        mitdb.read("999")
    with pytest.raises(SignalError, match="channel"):
        mitdb.read("100", lead="V9")
    with pytest.raises(DatasetError, match="REFERENCE-v3.csv"):
        Cinc2017(tmp_path)
    with pytest.raises(DatasetError, match="RECORDS"):
        MitBih(tmp_path)
    with pytest.raises(RecordNotFoundError, match="header"):
        read_record(tmp_path / "nothing")
    (tmp_path / "REFERENCE-v3.csv").write_text("A00001,X\n")
    with pytest.raises(DatasetError, match="malformed"):
        Cinc2017(tmp_path)


def test_csv_and_npz_records(tmp_path, cinc):
    rec = cinc.read("A00002")
    np.savez(tmp_path / "r.npz", signal_mv=rec.signal_mv, fs_hz=300.0)
    assert np.array_equal(read_record(tmp_path / "r.npz").signal_mv, rec.signal_mv)
    np.savetxt(tmp_path / "r.csv", rec.signal_mv, delimiter=",")
    with pytest.raises(SignalError, match="fs_hz"):
        read_record(tmp_path / "r.csv")
    got = read_record(tmp_path / "r.csv", fs_hz=300)
    np.testing.assert_allclose(got.signal_mv, rec.signal_mv)
    np.savetxt(tmp_path / "nan.csv", np.r_[rec.signal_mv[:100], np.nan, rec.signal_mv[:100]][:, None] * [1, 1], delimiter=",")
    with pytest.raises(SignalError, match="NaN"):
        read_record(tmp_path / "nan.csv", fs_hz=300)
