"""Chest-lead (MIT-BIH MLII) windows: the subject-safe split, window labels checked against the annotations,
and the report by output name. Tests on real data use the ``mitdb`` fixture (fail under CI when missing)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import distill.chest_lead as cl
from distill.data import WindowSet
from edge_sdk.errors import DatasetError, LabelError, SplitError
from edge_sdk.windowing import record_windows

FS = 360
NSR, AF, OTHER, NOISE = "NORMAL SINUS RHYTHM", "ATRIAL FIBRILLATION", "OTHER RHYTHM", "NOISE"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A fresh cache folder, so the windows are computed (not loaded) at least once."""
    with pytest.MonkeyPatch.context() as mp:
        d = tmp_path_factory.mktemp("cache")
        mp.setenv("ECG_EDGE_CACHE", str(d))
        yield d


@pytest.fixture(scope="module")
def windows(mitdb, cache) -> WindowSet:
    """All kinds of records 100 (sinus), 102 (no MLII lead) and 201 (sinus, AF and other rhythms), hop 5 s."""
    return cl.chest_lead_windows(["100", "102", "201"], hop_s=5.0, ds=mitdb)


def _minutes(mitdb, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in mitdb.rhythms(name):
        out[s.rhythm] = out.get(s.rhythm, 0.0) + (s.end - s.start) / FS / 60
    return out


# ----------------------------------------------------------------------------- split


def test_split_is_disjoint_covers_records_and_keeps_201_202_together(mitdb):
    split = cl.mitdb_split(mitdb)
    train, test = set(split["train"]), set(split["test"])
    assert not train & test
    assert train | test == set(mitdb.records) and len(mitdb.records) == 48
    assert abs(len(train) - len(test)) <= 4
    assert {"201", "202"} <= train or {"201", "202"} <= test


def test_split_sides_both_hold_af_and_long_clean_sinus_records(mitdb):
    minutes = {r: _minutes(mitdb, r) for r in mitdb.records}
    af = {r for r, m in minutes.items() if m.get("AFIB", 0) > 0}
    assert af == set(cl.AF_RECORDS)
    for side, names in cl.mitdb_split(mitdb).items():
        side_af = [r for r in names if minutes[r].get("AFIB", 0) >= 5]
        sinus = [r for r in names if minutes[r].get("N", 0) >= 20]
        assert len(side_af) >= 2, (side, side_af)
        assert len(sinus) >= 8, (side, sinus)


def test_split_errors_are_named():
    with pytest.raises(SplitError, match="201 and 202"):
        cl._check_sides({"201", "100"}, {"202"})
    with pytest.raises(SplitError, match="share"):
        cl._check_sides({"100", "201", "202"}, {"100"})
    fake = SimpleNamespace(records=[*cl.MITDB_SPLIT["train"], *cl.MITDB_SPLIT["test"], "999"], root=Path("x"))
    with pytest.raises(SplitError, match="999"):
        cl.mitdb_split(fake)


# ----------------------------------------------------------------------------- window labels


def test_window_bounds_follow_the_500_hz_grid():
    b = cl.window_bounds(650000, FS, 5.0)
    n_windows = len(record_windows(np.zeros(650000), FS, 5.0))
    assert len(b.start) == n_windows == 360
    np.testing.assert_array_equal(b.start, np.arange(n_windows) * 1800)  # 5 s hop = 1800 samples at 360 Hz
    # output samples 0..4999 at 500 Hz reach input index 4999 * 0.72 = 3599.28: samples 0..3600 are used
    np.testing.assert_array_equal(b.end, np.arange(n_windows) * 1800 + 3601)


def test_window_kinds_on_synthetic_annotations():
    from edge_sdk.datasets.mitdb import RhythmSegment as Seg

    segs = [Seg("N", 0, 100), Seg("N", 100, 200), Seg("AFIB", 200, 300), Seg("AFL", 300, 400), Seg("B", 400, 500),
            Seg("NOISE", 500, 600)]
    bounds = cl.WindowBounds(np.array([10, 100, 150, 210, 310, 410, 510, 250]),
                             np.array([90, 155, 190, 290, 390, 490, 590, 350]))
    beats = np.array([20, 50, 130, 160, 170, 220, 320, 420])
    symbols = np.array(["N", "N", "N", "V", "N", "N", "N", "V"])
    # N run split in two annotations still counts as one run; a V beat spoils a sinus window, not an
    # AF or other one; AFL and noise give nothing; a window across a rhythm change gives nothing
    assert cl.window_kinds(bounds, segs, beats, symbols) == ["sinus", "sinus", None, "af", None, "other", None,
                                                              None]
    joined = cl.window_kinds(cl.WindowBounds(np.array([50]), np.array([150])), segs, beats, symbols)
    assert joined == ["sinus"]


def test_record_100_yields_only_clean_sinus_windows_with_only_n_beats(mitdb):
    n = mitdb.read("100", lead="MLII").signal_mv.shape[0]
    bounds, kinds = cl.record_window_kinds(mitdb, "100", n, FS, 5.0)
    samples, symbols = mitdb.beats("100")
    rhythm_n = [s for s in mitdb.rhythms("100") if s.rhythm == "N"]
    assert len(rhythm_n) == 1
    seg = rhythm_n[0]
    assert set(kinds) == {"sinus", None} and kinds.count("sinus") > 250
    n_with_ectopy = 0
    for a, b, kind in zip(bounds.start, bounds.end, kinds):
        inside = symbols[(samples >= a) & (samples < b)]
        clean = seg.start <= a and b <= seg.end and set(inside) <= {"N"}
        assert (kind == "sinus") == clean, (a, b, kind, set(inside))
        n_with_ectopy += bool(seg.start <= a and b <= seg.end and set(inside) - {"N"})
    assert n_with_ectopy > 0  # record 100 has A and V beats: their windows are in N rhythm but not "sinus"


def test_windows_are_the_sdk_windows_of_the_kept_kind(mitdb, windows):
    assert windows.classes == ("N", "A", "O")
    assert windows.label_map == {"N": NSR, "A": AF, "O": OTHER}
    assert windows.records == ["100", "201"]  # 102 has no MLII lead
    assert "102" in windows.description and "MLII" in windows.description
    assert windows.x.dtype == np.float16 and windows.x.shape == (len(windows), 5000)
    assert windows.y.dtype == np.int64 and windows.record_idx.dtype == np.int64
    rec = mitdb.read("100", lead="MLII")
    _, kinds = cl.record_window_kinds(mitdb, "100", len(rec.signal_mv), rec.fs_hz, 5.0)
    sinus = np.array([k == "sinus" for k in kinds])
    ours = windows.x[windows.record_idx == 0]
    np.testing.assert_array_equal(ours, record_windows(rec.signal_mv, rec.fs_hz, 5.0)[sinus].astype(np.float16))
    assert (windows.y[windows.record_idx == 0] == 0).all()


def test_record_201_gives_all_three_kinds_inside_their_rhythm_runs(mitdb, windows):
    y201 = windows.y[windows.record_idx == 1]
    assert set(np.unique(y201)) == {0, 1, 2}
    n = mitdb.read("201", lead="MLII").signal_mv.shape[0]
    bounds, kinds = cl.record_window_kinds(mitdb, "201", n, FS, 5.0)
    assert [cl.CLASSES.index(cl.KIND_CLASS[k]) for k in kinds if k] == list(y201)
    segs = cl.merge_segments(mitdb.rhythms("201"))
    for a, b, kind in zip(bounds.start, bounds.end, kinds):
        if kind is None:
            continue
        (seg,) = [s for s in segs if s.start <= a and b <= s.end]
        expected = {"sinus": {"N"}, "af": {"AFIB"}}.get(kind)
        assert seg.rhythm in expected if expected else seg.rhythm not in {"N", "AFIB", "AFL"}


def test_af_windows_come_from_af_records_only(mitdb, cache):
    only_af = cl.chest_lead_windows(["100", "201"], hop_s=5.0, kinds=("af",), ds=mitdb)
    assert only_af.records == ["201"] and (only_af.y == cl.CLASSES.index("A")).all() and len(only_af) > 100
    for name in mitdb.records:
        rhythms = {s.rhythm for s in mitdb.rhythms(name)}
        if name in cl.AF_RECORDS:
            assert "AFIB" in rhythms
            continue
        assert "AFIB" not in rhythms  # no AFIB run, hence no window that lies inside one


def test_windows_are_cached(mitdb, windows, cache):
    assert list(cache.glob("mitdb_mlii_*.npz"))
    again = cl.chest_lead_windows(["100", "102", "201"], hop_s=5.0, ds=mitdb)
    np.testing.assert_array_equal(again.x, windows.x)
    np.testing.assert_array_equal(again.y, windows.y)
    np.testing.assert_array_equal(again.record_idx, windows.record_idx)
    assert again.records == windows.records and again.description == windows.description


def test_missing_mitdb_folder_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("ECG_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("edge_sdk.datasets.mitdb.mitdb_dir", lambda: tmp_path / "mitdb")
    with pytest.raises(DatasetError, match="ECG_EDGE_SHARED"):
        cl.chest_lead_windows(["100"], hop_s=7.0)


def test_unknown_kind_is_an_error():
    with pytest.raises(DatasetError, match="unknown window kinds"):
        cl.chest_lead_windows(["100"], kinds=("vt",))


# ----------------------------------------------------------------------------- report


def _synthetic() -> WindowSet:
    # records r0, r1 hold N windows; r1, r2 hold A windows; r2 holds O windows
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2], np.int64)
    rec = np.array([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2], np.int64)
    return WindowSet(np.zeros((len(y), 5000), np.float16), y, rec, ["r0", "r1", "r2"], cl.CLASSES,
                     dict(cl.LABEL_MAP), "synthetic")


# top outputs per window, by name (same order as the windows of _synthetic)
TOP = [NSR, NSR, NSR, AF, AF, AF, NSR, AF, OTHER, OTHER, NSR]


def _probs(names: list[str], top: list[str]) -> np.ndarray:
    p = np.full((len(top), len(names)), 0.05)
    for i, t in enumerate(top):
        p[i, names.index(t)] = 0.9
    return p


def test_report_known_answers_and_name_lookup_under_shuffled_outputs():
    ws = _synthetic()
    reports = []
    for names in ([NSR, AF, OTHER, NOISE], [NOISE, OTHER, NSR, AF]):
        r = cl.chest_lead_report(_probs(names, TOP), names, ws)
        reports.append(r)
        assert r["not_scored"] == {}
        s = r["clean_sinus"]
        assert (s["expected"], s["n_windows"], s["n_records"]) == (NSR, 5, 2)
        assert s["top_label_fraction"] == {NSR: 0.6, AF: 0.4, OTHER: 0.0, NOISE: 0.0}
        assert s["expected_top_fraction"] == pytest.approx(0.6)
        assert s["per_record_expected_fraction"] == pytest.approx({"r0": 1.0, "r1": 1 / 3})
        assert s["records_majority_expected"] == 0.5
        a = r["af"]
        assert (a["n_windows"], a["n_records"], a["expected_top_fraction"]) == (4, 2, 0.5)
        assert a["per_record_expected_fraction"] == {"r1": 0.5, "r2": 0.5}
        assert a["records_majority_expected"] == 0.0  # 1-1 ties do not count
        o = r["other"]
        assert o["expected"] == OTHER and o["top_label_fraction"][NSR] == 0.5
        assert o["records_majority_expected"] == 0.0
    for key in ("clean_sinus", "af", "other"):
        assert reports[0][key] == reports[1][key]


def test_report_not_scored_when_expected_output_is_missing():
    ws = _synthetic()
    names = [AF, NSR]
    top = [NSR if t == OTHER else t for t in TOP]
    r = cl.chest_lead_report(_probs(names, top), names, ws)
    assert set(r["not_scored"]) == {"other"} and OTHER in r["not_scored"]["other"]
    assert r["other"]["n_windows"] == 2 and "expected_top_fraction" not in r["other"]
    assert r["other"]["top_label_fraction"] == {AF: 0.0, NSR: 1.0}
    assert r["clean_sinus"]["expected_top_fraction"] == pytest.approx(0.6)


def test_report_skips_absent_kinds_and_checks_shapes():
    ws = _synthetic()
    keep = ws.y == 0
    only_n = WindowSet(ws.x[keep], ws.y[keep], ws.record_idx[keep], ws.records, ws.classes, ws.label_map)
    r = cl.chest_lead_report(_probs([NSR, AF], [NSR] * int(keep.sum())), [NSR, AF], only_n)
    assert "af" not in r and "other" not in r and r["clean_sinus"]["records_majority_expected"] == 1.0
    with pytest.raises(LabelError, match="shape"):
        cl.chest_lead_report(np.zeros((3, 2)), [NSR, AF], ws)
    with pytest.raises(LabelError, match="repeat"):
        cl.chest_lead_report(np.zeros((len(ws), 2)), [NSR, NSR], ws)
