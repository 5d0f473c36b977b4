"""The card's record rule: bounded running statistics, a logistic rule fitted on real records, its card form."""
import asyncio
import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from distill.data import cinc2017_windows
from edge_sdk.bundle import load_bundle
from edge_sdk.errors import BundleError, ConfigError, SignalError
from edge_sdk.inference import open_backend
from edge_sdk.record_rule import RecordRule, RecordStats, feature_names
from edge_sdk.sources import ReplaySource
from edge_sdk.stream import EcgStream
from quantize.fidelity import rule_figures
from distill.record_rule_fit import fit_record_rule, rule_score

NAMES = ("NORMAL SINUS RHYTHM", "ATRIAL FIBRILLATION", "OTHER RHYTHM", "NOISE")


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.just(4)), elements=st.floats(0, 1)),
       st.integers(1, 7))
def test_running_statistics_equal_the_batch_ones(p, chunk):
    """Windows added one chunk at a time give the statistics of all of them at once."""
    stats = RecordStats(4)
    for i in range(0, len(p), chunk):
        stats.add(p[i:i + chunk])
    f = stats.features()
    assert f.shape == (len(feature_names(NAMES)),) and stats.n_windows == len(p)
    want = np.concatenate([p.mean(0), np.log(np.maximum(p, 1e-6)).mean(0), p.max(0), p.min(0), p.std(0),
                           [np.log(len(p))]])
    np.testing.assert_allclose(f, want, rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=60))
def test_f1_behind_the_bootstrap_equals_scikit_learns(pairs):
    from sklearn.metrics import f1_score

    from distill.record_rule_fit import _f1

    y, pred = np.array(pairs).T
    want = f1_score(y, pred, labels=[0, 1, 2], average=None, zero_division=0)
    np.testing.assert_allclose(_f1(y, pred, [0, 1, 2]), want, atol=1e-12)


def test_statistics_refuse_what_is_not_a_probability():
    stats = RecordStats(4)
    stats.add(np.array([1 + 1e-7, -1e-8, 0.0, 0.0]))  # a runtime's float32 rounding: clipped, not refused
    assert stats.features()[0] == 1.0 and stats.features()[1] == 0.0
    stats = RecordStats(4)
    for bad in (np.full(4, np.nan), np.full(4, 1.5), np.full(4, -0.1), np.zeros(3), np.zeros((2, 5))):
        with pytest.raises(SignalError):
            stats.add(bad)
    with pytest.raises(SignalError, match="no windows yet"):
        stats.features()
    with pytest.raises(SignalError, match="positive int"):
        RecordStats(0)


@pytest.fixture(scope="module")
def fitted(cinc, bundle_dir):
    """A logistic rule fitted on the committed float student's outputs for 500 training records, chosen on
    300 validation records, and applied to 300 held-out records."""
    fp32 = open_backend(bundle_dir, precision="fp32", threads=2)
    sets = {s: cinc2017_windows(s, limit=n) for s, n in (("train", 500), ("val", 300), ("test", 300))}
    probs = {s: fp32.predict(ws.x.astype(np.float32)) for s, ws in sets.items()}
    rule, report = fit_record_rule("logistic", NAMES, "softmax", probs["train"], sets["train"], probs["val"],
                                   sets["val"], "student_fp32.onnx", log=lambda *_: None)
    return rule, report, sets, probs


def test_logistic_rule_fitted_on_real_records_beats_chance_and_is_chosen_on_validation(fitted):
    rule, report, sets, probs = fitted
    assert rule.method == "logistic" and rule.classes == NAMES
    assert report["n_records"] == 500 and sum(report["records_per_class"].values()) == 500
    assert report["selection"] == "challenge2017_f1"
    by_c = report["validation"]["logistic_by_C"]
    assert by_c[f"{report['regularization_C']:g}"] == max(by_c.values())
    # on held-out records it is a working classifier (4 classes; chance is about 0.3)
    score, what, f1 = rule_score(rule, probs["test"], sets["test"])
    assert what == "challenge2017_f1" and score > 0.7 and set(f1) <= set(NAMES)


def test_rule_survives_the_card_and_decides_streams_and_batches_alike(fitted):
    rule, _, sets, probs = fitted
    again = RecordRule.from_dict(json.loads(json.dumps(rule.to_dict())), NAMES)
    test = sets["test"]
    labels = rule.decide_records(probs["test"], test.record_idx)
    assert again.decide_records(probs["test"], test.record_idx) == labels
    # a record's windows one at a time (as a stream adds them) give the label of the batch
    for r in range(0, len(test.records), 37):
        stats = rule.new_stats()
        for p in probs["test"][test.record_idx == r]:
            stats.add(p)
        d = rule.decide(stats)
        assert d.label == labels[r] and abs(sum(d.scores.values()) - 1) < 1e-9
    # the figures the card gets: a candidate equal to the reference agrees on every record
    fig = rule_figures(rule, probs["test"], probs["test"], test)
    assert fig["agreement"] == 1.0 and fig["challenge2017_f1"] == fig["challenge2017_f1_reference"]
    boot = fig["bootstrap"]  # the card's interval: around the score; no gain over itself as the mean rule
    assert boot["score_ci95"][0] <= boot["score"] == fig["challenge2017_f1"] <= boot["score_ci95"][1]
    assert boot["n_records"] == len(test.records) and 0 < boot["score_se"] < 0.1


def test_recording_longer_than_any_fitted_record_is_flagged_and_its_count_capped(fitted):
    rule, _, sets, probs = fitted
    lo, hi = rule.fitted_windows
    assert lo >= 1 and hi == int(np.bincount(sets["train"].record_idx).max())
    long = np.concatenate([probs["test"]] * 2)[: 4 * hi]  # a recording of 4x the longest training record
    d = rule.decide(long)
    assert d.flags == ("longer_than_fitted",) and d.n_windows == 4 * hi
    f = rule.new_stats().add(long).features()
    f[-1] = np.log(hi)  # as the card says: ln(n) capped at the longest fitted record
    want = rule.class_scores(f)
    assert list(d.scores.values()) == pytest.approx(want.tolist(), abs=1e-12)
    assert rule.decide(long[:hi]).flags == ()


def test_rule_that_does_not_fit_the_card_is_a_bundle_error(fitted):
    rule, *_ = fitted
    d = rule.to_dict()
    cases = [({**d, "features": d["features"][:-1]}, "not the ones this SDK computes"),
             ({**d, "coef": d["coef"][:-1]}, "needs finite coef"),
             ({**d, "classes": ["NORMAL SINUS RHYTHM", "SINUS ARREST"]}, "must be two or more distinct outputs"),
             ({**d, "method": "median"}, "unknown"), ({**d, "log_floor": 1e-3}, "log_floor"),
             ({**d, "fitted_windows": [5, 2]}, "fitted_windows"), ({**d, "fitted_windows": [1.5, 3]}, "fitted_windows")]
    for bad, msg in cases:
        with pytest.raises(BundleError, match=msg):
            RecordRule.from_dict(bad, NAMES)
    with pytest.raises(BundleError, match="not the ones"):  # another model's outputs
        RecordRule.from_dict(d, NAMES[:3])


def test_logistic_rule_needs_softmax_outputs_and_labels(fitted):
    _, _, sets, probs = fitted
    args = (probs["train"], sets["train"], probs["val"], sets["val"], "x")
    with pytest.raises(ConfigError, match="use record_rule 'mean'"):
        fit_record_rule("logistic", NAMES, "sigmoid", *args)
    with pytest.raises(ConfigError, match="unlabeled"):
        fit_record_rule("logistic", NAMES, "softmax", probs["train"], sets["train"].unlabeled(), probs["val"],
                        sets["val"], "x")
    with pytest.raises(ConfigError, match="record_rule must be one of"):
        fit_record_rule("vote", NAMES, "softmax", *args)


def test_build_refuses_a_rule_it_cannot_fit_before_writing(tmp_path, models_dir, fitted):
    from quantize.build import build_bundle

    _, _, sets, _ = fitted
    calib = sets["train"].x[:16].astype(np.float32)
    for rule, train, val, match in [("logistic", sets["train"], None, "unlabeled"),
                                    ("logistic", sets["train"].unlabeled(), sets["val"], "unlabeled"),
                                    ("median", None, None, "record_rule must be one of")]:
        with pytest.raises(ConfigError, match=match):
            build_bundle(models_dir / "student.pth", tmp_path / "b", calib, sets["test"], val, None, tflite=False,
                         record_rule=rule, record_train=train)
    assert not list(tmp_path.iterdir())


def test_tampered_record_rule_in_a_bundle_is_refused_at_load(tmp_path, bundle_dir, fitted):
    rule, *_ = fitted
    b = tmp_path / "b"
    shutil.copytree(bundle_dir, b)
    card = json.loads((b / "model_card.json").read_text())
    card["record_rule"] = {**rule.to_dict(), "coef": [[1.0, 2.0]]}
    (b / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="record_rule"):
        load_bundle(b)


def test_stream_reports_the_recordings_label_by_the_cards_rule(cinc, bundle_dir):
    stream = EcgStream(ReplaySource(cinc.read("A00005"), speed=0), bundle_dir)  # an AF record, 60 s
    preds = asyncio.run(stream.run())
    d = stream.record_decision()
    assert d.n_windows == len(preds) == stream.prediction_count
    batch = stream.record_rule.decide(np.array([[p.probabilities[n] for n in stream.labels] for p in preds]))
    assert d.label == batch.label == "ATRIAL FIBRILLATION" and d.method == batch.method
    assert d.scores == pytest.approx(batch.scores, abs=1e-12)  # summed one window at a time vs at once
    stream.reset_record()
    assert stream.record_decision() is None
