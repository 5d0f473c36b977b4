"""Synthetic PVCs in atrial-fibrillation records (distill.synthetic_ectopy), on real MIT-BIH records."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distill import chest_lead
from distill.chest_lead import (MITDB_SPLIT, chest_lead_report, merge_segments, mitdb_side_windows,
                                non_normal_beat_counts, record_window_kinds, window_ectopic_beats)
from distill.data import chest_lead_training_windows
from distill.synthetic_ectopy import (SUFFIX, check_options, insert_pvcs, pvc_templates,
                                      synthetic_pvc_af_windows)
from edge_sdk.errors import DatasetError, LabelError


@pytest.fixture(scope="module")
def templates(mitdb):
    return pvc_templates(["119", "201"], mitdb)


@pytest.fixture(scope="module")
def record_219(mitdb):
    rec = mitdb.read("219", lead="MLII")
    samples, symbols = mitdb.beats("219")
    runs = [(s.start, s.end) for s in merge_segments(mitdb.rhythms("219", len(rec.signal_mv))) if s.rhythm == "AFIB"]
    return rec, samples, symbols, runs


def test_templates_are_ventricular_beats_of_the_given_records(mitdb, templates):
    assert templates.records == ["119", "201"] and templates.fs_hz == 360
    assert templates.x.shape[1] == round(0.6 * 360) and templates.onset == 72
    counts = np.bincount(templates.record_idx)
    n_v = [(mitdb.beats(r)[1] == "V").sum() for r in templates.records]
    assert all(0 < c <= n for c, n in zip(counts, n_v))  # some V beats lack room around them
    p2p = np.ptp(templates.x, axis=1)
    assert (p2p >= 0.3).all() and (p2p <= 6.0).all()
    assert np.allclose(templates.x[:, 0], 0) and np.allclose(templates.x[:, -1], 0)  # end points on the baseline
    with pytest.raises(DatasetError, match="no ventricular beat"):
        pvc_templates(["115", "220"], mitdb)  # records without V beats


def test_pvcs_replace_normal_beats_inside_af_only(record_219, templates):
    rec, samples, symbols, runs = record_219
    same, same_sym = insert_pvcs(rec.signal_mv, rec.fs_hz, samples, symbols, runs, templates, rate=0.0)
    assert np.array_equal(same, rec.signal_mv.astype(np.float32)) and (same_sym == symbols).all()
    sig, new = insert_pvcs(rec.signal_mv, rec.fs_hz, samples, symbols, runs, templates, rate=0.3,
                           rng=np.random.default_rng(3))
    changed = np.flatnonzero(new != symbols)
    assert len(changed) > 100 and (symbols[changed] == "N").all() and (new[changed] == "V").all()
    inside = np.zeros(len(rec.signal_mv), bool)
    for s in samples[changed]:
        inside[s - templates.onset:s - templates.onset + templates.x.shape[1]] = True
    assert np.array_equal(sig[~inside], rec.signal_mv[~inside].astype(np.float32))  # nothing else moves
    in_af = np.zeros(len(rec.signal_mv), bool)
    for a, b in runs:
        in_af[a:b] = True
    assert in_af[inside].all()
    bounds, kinds = record_window_kinds_of(record_219)
    af = np.array([k == "af" for k in kinds])
    before = non_normal_beat_counts(bounds, samples, symbols)[af]
    after = non_normal_beat_counts(bounds, samples, new)[af]
    assert (after >= before).all() and after.mean() > before.mean() + 1


def record_window_kinds_of(record):
    from edge_sdk.datasets.mitdb import MitBih

    rec, *_ = record
    return record_window_kinds(MitBih(), "219", len(rec.signal_mv), rec.fs_hz)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rate=st.floats(0, 1), seed=st.integers(0, 2**16), lo=st.floats(0.5, 2.0), span=st.floats(0, 1))
def test_inserted_beats_keep_the_signal_continuous_and_bounded(record_219, templates, rate, seed, lo, span):
    rec, samples, symbols, runs = record_219
    n = 360 * 120  # the first two minutes of AF
    a0 = runs[0][0]
    sl = slice(a0, a0 + n)
    keep = (samples >= a0) & (samples < a0 + n)
    sig, new = insert_pvcs(rec.signal_mv[sl], rec.fs_hz, samples[keep] - a0, symbols[keep], [(0, n)], templates,
                           rate, (lo, lo + span), np.random.default_rng(seed))
    orig = rec.signal_mv[sl].astype(np.float32)
    assert sig.shape == orig.shape and np.isfinite(sig).all()
    for s in (samples[keep] - a0)[new != symbols[keep]]:
        a, b = s - templates.onset, s - templates.onset + templates.x.shape[1] - 1
        assert abs(sig[a] - orig[a]) < 1e-5 and abs(sig[b] - orig[b]) < 1e-5  # joins the original signal
        seg_p2p = np.ptp(orig[a:b + 1] - np.linspace(orig[a], orig[b], b - a + 1))
        assert np.ptp(sig[a:b + 1]) <= (lo + span) * seg_p2p + np.ptp(orig[[a, b]]) + 1e-4


def test_synthetic_af_windows_are_cut_like_the_real_ones(mitdb, tmp_path, monkeypatch):
    monkeypatch.setenv("ECG_EDGE_CACHE", str(tmp_path))
    ws = synthetic_pvc_af_windows(["219"], ["119"], {"copies": 2, "rate": 0.25}, ds=mitdb)
    rec = mitdb.read("219", lead="MLII")
    _, kinds = record_window_kinds(mitdb, "219", len(rec.signal_mv), rec.fs_hz)
    n_af = sum(k == "af" for k in kinds)
    assert len(ws) == 2 * n_af and ws.records == ["219" + SUFFIX] and (ws.y == ws.classes.index("A")).all()
    assert ws.x.shape[1] == 5000 and np.isfinite(ws.x.astype(np.float32)).all()
    assert not np.array_equal(ws.x[:n_af], ws.x[n_af:])  # two different copies
    again = synthetic_pvc_af_windows(["219"], ["119"], {"copies": 2, "rate": 0.25}, ds=mitdb)
    assert np.array_equal(again.x, ws.x) and len(list(tmp_path.glob("mitdb_synthetic_pvc_*.npz"))) == 1
    other = synthetic_pvc_af_windows(["219"], ["119"], {"copies": 2, "rate": 0.25, "seed": 1}, ds=mitdb)
    assert not np.array_equal(other.x, ws.x)


def test_recipe_key_adds_synthetic_af_from_training_side_records_only(mitdb, cinc):
    opts = {"time_scales": [1.0], "sampling_weight": 2.0, "synthetic_pvc": {"copies": 1, "weight": 0.5}}
    ws = chest_lead_training_windows({**opts, "holdout_records": ["203", "119"]})
    syn = [r for r in ws.records if r.endswith(SUFFIX)]
    assert syn == [r + SUFFIX for r in ("201", "202", "219")]  # 203 is held out; held-out side never used
    assert "templates from" in ws.description and "119" not in ws.description.split("templates from")[1]
    is_syn = np.isin(ws.record_idx, [ws.records.index(r) for r in syn])
    assert (ws.sampling_weight[is_syn] == 1.0).all() and (ws.sampling_weight[~is_syn] == 2.0).all()
    assert (ws.y[is_syn] == ws.classes.index("A")).all()
    assert set(MITDB_SPLIT["test"]).isdisjoint(r.removesuffix(SUFFIX) for r in ws.records)


@pytest.mark.parametrize("bad, match", [
    ([1], "must be a dict"), ({"copy": 1}, "unknown"), ({"copies": 0}, "copies"), ({"copies": True}, "copies"),
    ({"rate": 1.5}, "rate"), ({"weight": -1}, "weight"), ({"amplitude": [2, 1]}, "amplitude"),
    ({"amplitude": 1.0}, "amplitude"), ({"seed": 0.5}, "seed")])
def test_bad_options_are_named(bad, match):
    with pytest.raises(DatasetError, match=match):
        check_options(bad)
    with pytest.raises(DatasetError, match=match):
        chest_lead_training_windows({"synthetic_pvc": bad})


def test_ectopic_beats_per_window_follow_the_window_order(mitdb):
    """Held-out-of-fold-B record 203: AF with multiform PVCs; its AF windows by ectopic beats (hop 5 s)."""
    side = mitdb_side_windows("train")
    counts = window_ectopic_beats(side.records, ds=mitdb)
    assert counts.shape == (len(side),)
    assert (counts[side.y == side.classes.index("N")] == 0).all()  # clean sinus has every beat N
    af_203 = counts[(side.record_idx == side.records.index("203")) & (side.y == side.classes.index("A"))]
    assert [(af_203 == 0).sum(), ((af_203 >= 1) & (af_203 <= 3)).sum(), (af_203 >= 4).sum()] == [48, 156, 51]
    names = ["NORMAL SINUS RHYTHM", "ATRIAL FIBRILLATION", "OTHER RHYTHM"]
    probs = np.zeros((len(side), 3))
    probs[np.arange(len(side)), np.where(counts >= 4, 2, side.y)] = 1  # right unless 4+ ectopic beats
    af = chest_lead_report(probs, names, side, ectopic_beats=counts)["af"]["by_ectopic_beats"]
    assert af["4+"]["expected_top_fraction"] == 0 and af["0"]["expected_top_fraction"] == 1
    assert sum(g["n_windows"] for g in af.values()) == int((side.y == side.classes.index("A")).sum())
    with pytest.raises(LabelError, match="ectopic_beats"):
        chest_lead_report(probs, names, side, ectopic_beats=counts[:-1])


def test_ectopic_beats_are_cached_for_a_machine_without_the_database(mitdb, tmp_path, monkeypatch):
    """A lent GPU has the window caches but not MIT-BIH: chest-cv scoring there reads the counts from the cache."""
    monkeypatch.setenv("ECG_EDGE_CACHE", str(tmp_path))
    counts = window_ectopic_beats(["203", "219"], ds=mitdb)
    assert len(list(tmp_path.glob("mitdb_ectopic_*.npz"))) == 1

    def no_database(ds):
        raise DatasetError("MIT-BIH Arrhythmia Database not found")

    monkeypatch.setattr(chest_lead, "_open", no_database)
    assert np.array_equal(window_ectopic_beats(["203", "219"]), counts)
    with pytest.raises(DatasetError, match="not found"):
        window_ectopic_beats(["203"])  # other records: another cache entry, computed from the database
