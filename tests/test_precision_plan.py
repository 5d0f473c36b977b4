"""Float parts chosen by measurement: the greedy plan on real Challenge 2017 validation windows."""
import json

import numpy as np
import pytest

from distill.data import cinc2017_windows
from quantize.onnx_export import export_onnx
from quantize.float_ops import sort_ops
from quantize.precision_plan import plan_float_ops


@pytest.fixture(scope="module")
def fp32_student(tmp_path_factory, models_dir):
    from distill.checkpoint import load_model

    student, _ = load_model(models_dir / "student_qat.pth")
    path = tmp_path_factory.mktemp("plan") / "student_fp32.onnx"
    export_onnx(student, path, "softmax")
    return path


def test_plan_keeps_in_float_what_measurably_helps(fp32_student, cinc):
    calib = np.clip(cinc2017_windows("train", limit=40).x[:48].astype(np.float32), -8, 8)
    val = cinc2017_windows("val", limit=60).x.astype(np.float32)
    logs = []
    plan = plan_float_ops(fp32_student, calib, val, target=0.03, input_range=8.0, max_float=2, log=logs.append)
    steps = plan["steps"]
    assert plan["candidates"] == [f"conv{i}" for i in range(12)] + [f"add{i}" for i in range(5)] + ["head"]
    assert plan["measured_on"] == f"{len(val)} validation windows"
    assert steps[0]["float_ops"] == [] and steps[0]["added"] is None
    # every step is the previous one plus one part, and lowers (windows over target, max error)
    for a, b in zip(steps, steps[1:]):
        assert b["float_ops"] == sort_ops(a["float_ops"] + [b["added"]])
        assert (b["windows_over_target"], b["max_abs_prob_error"]) < (a["windows_over_target"], a["max_abs_prob_error"])
    assert plan["float_ops"] == steps[-1]["float_ops"] and len(plan["float_ops"]) <= 2
    # the first convolution (8-bit input, 15-tap kernel) is this student's largest single error: the first step
    # keeps conv0 float. How much that buys depends on the CPU's int8 kernel: without AVX-512 VNNI, ONNX
    # Runtime's u8s8 kernel (VPMADDUBSW) saturates on large products, which this layer makes most
    assert steps[1]["added"] == "conv0" and steps[1]["max_abs_prob_error"] < steps[0]["max_abs_prob_error"]
    assert plan["reached"] == (steps[-1]["windows_over_target"] == 0)
    assert all(s["ms_per_window_1_thread"] > 0 for s in steps) and len(logs) >= len(steps)


def test_plan_refuses_to_measure_on_nothing(fp32_student):
    with pytest.raises(ValueError, match="no windows"):
        plan_float_ops(fp32_student, np.zeros((4, 5000), np.float32), np.zeros((0, 5000), np.float32))


def test_committed_bundle_ships_its_plan_in_both_runtimes(bundle_dir):
    """The committed card's plan is what both int8 files keep float, and a card whose plan lost its steps is
    refused by the validator."""
    import copy
    import json

    from edge_sdk.bundle import CARD_NAME, validate_card
    from edge_sdk.errors import BundleError

    card = json.loads((bundle_dir / CARD_NAME).read_text())
    plan = card["precision_plan"]
    files = card["files"]
    assert files["student_int8.onnx"]["quantization"]["float_ops"] == plan["float_ops"]
    assert files["student_int8.tflite"]["quantization"]["float_ops"] == plan["float_ops"]
    assert plan["steps"][-1]["float_ops"] == plan["float_ops"] and "validation" in plan["measured_on"]
    bad = copy.deepcopy(card)
    del bad["precision_plan"]["steps"]
    with pytest.raises(BundleError, match="precision_plan"):
        validate_card(bad)
    bad = copy.deepcopy(card)
    bad["precision_plan"]["float_ops"] = [0, 1]  # the indices of older cards are not op ids
    with pytest.raises(BundleError, match="precision_plan"):
        validate_card(bad)


def test_precision_study_measures_the_shipped_choice_against_the_alternatives(bundle_dir, cinc, mitdb, capsys):
    """``python -m quantize.precision_study`` on a few real validation records (ONNX variants only)."""
    from quantize.precision_study import main, study

    r = study(bundle_dir, n_sqnr=16, tflite=False, limit=30, sweep=[1.0])
    rows = {v["variant"]: v for v in r["variants"]}
    shipped = next(v for k, v in rows.items() if k.endswith("(shipped)"))
    # the committed bundle is channel-equalized: the study also measures its float parts without that, and at
    # the swept strength
    plain = next(k for k in rows if k.endswith(", without channel equalization"))
    assert next(k for k in rows if k.endswith(", channel equalization 1")).split(", channel")[0] == plain.split(", without")[0]
    assert rows["fp32 (reference)"]["max_abs_prob_error"] == 0
    # the 8-bit input is the largest single error: every variant that keeps it float does far better
    assert rows["int8 everywhere (input too)"]["p99_abs_prob_error"] > 3 * shipped["p99_abs_prob_error"]
    assert all(v["latency_ms_1_thread"] > 0 for v in rows.values())
    assert len(r["tensor_sqnr_db"]) > 10 and all(np.isfinite(list(r["tensor_sqnr_db"].values())))
    assert main(["--bundle", str(bundle_dir), "--no-tflite", "--limit", "5"]) == 0
    assert "| fp32 (reference) | 0.000 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--bundle", str(bundle_dir), "--sweep", "0.5,2"])
    assert "--sweep: channel_equalization is a strength in [0, 1]" in capsys.readouterr().err
    for bad in ("256", "0:minmax", "256:MinMax", "x:entropy"):
        with pytest.raises(SystemExit):
            main(["--bundle", str(bundle_dir), "--calibrations", bad])
        assert "--calibrations: " in capsys.readouterr().err
    # a folder without a bundle: the named error and what to do, no traceback
    assert main(["--bundle", str(bundle_dir / "student_int8.onnx")]) == 2
    assert "error: " in capsys.readouterr().err


def test_precision_study_measures_other_calibrations_with_the_shipped_float_parts(bundle_dir, cinc, mitdb):
    from quantize.precision_study import study

    r = study(bundle_dir, n_sqnr=8, tflite=False, limit=20, calibrations=[(256, "minmax"), (64, "percentile")])
    rows = {v["variant"]: v for v in r["variants"]}
    shipped = next(v for k, v in rows.items() if k.endswith("(shipped)"))
    same = next(v for k, v in rows.items() if "calibrated on 256 windows (minmax" in k)
    # the recipe's own calibration again gives the shipped file's figures exactly
    assert same["max_abs_prob_error"] == shipped["max_abs_prob_error"]
    other = next(v for k, v in rows.items() if "calibrated on 64 windows (percentile; shipped: 256, minmax)" in k)
    assert other["max_abs_prob_error"] != shipped["max_abs_prob_error"]


def test_plan_windows_are_training_windows_the_calibration_never_saw(cinc):
    """``precision_train_windows``: seeded training windows, none of them a calibration window."""
    from quantize.recipe import calibration_indices, sample_calibration, sample_plan_windows

    train = cinc2017_windows("train", limit=40)
    calib = sample_calibration(train, 64, seed=3)
    plan = sample_plan_windows(train, 48, 64, seed=3)
    assert plan.shape == (48, 5000) and plan.dtype == np.float32
    np.testing.assert_array_equal(plan, sample_plan_windows(train, 48, 64, seed=3))
    np.testing.assert_array_equal(calib, train.x[calibration_indices(len(train), 64, 3)].astype(np.float32))
    # no plan window is a calibration window (the windows are real ECG: no two are equal)
    assert not (plan[:, None, :] == calib[None, :, :]).all(-1).any()
    everything = sample_plan_windows(train, 10 ** 6, 64, seed=3)  # capped at what is left
    assert len(everything) == len(train) - 64


def test_bundle_plan_measures_on_validation_and_training_windows(tmp_path, models_dir, cinc, monkeypatch):
    """``build_bundle(float_ops="auto", plan_windows=...)`` hands the plan both sets and says so in the card
    (the real plan, cut to one step to keep the test short)."""
    import quantize.precision_plan as pp
    from quantize.build import build_bundle
    from quantize.recipe import sample_calibration, sample_plan_windows

    seen = []
    real = pp.plan_float_ops

    def one_step(fp32, calibration, windows, *args, **kwargs):
        seen.append(len(windows))
        return real(fp32, calibration, windows, *args, max_float=1, **kwargs)

    monkeypatch.setattr(pp, "plan_float_ops", one_step)
    train = cinc2017_windows("train", limit=40)
    val = cinc2017_windows("val", limit=12)
    card = build_bundle(models_dir / "student_qat.pth", tmp_path / "b", sample_calibration(train, 32),
                        cinc2017_windows("test", limit=10), val, None, tflite=False, float_ops="auto",
                        with_conformance=False, plan_windows=sample_plan_windows(train, 24, 32))
    plan = card["precision_plan"]
    assert seen == [len(val) + 24]
    assert plan["measured_on"] == f"{len(val) + 24} windows: {len(val)} validation + 24 training (not the calibration ones)"
    assert plan["steps"][1]["added"] == "conv0" and plan["float_ops"] == ["conv0"]
    assert card["files"]["student_int8.onnx"]["quantization"]["float_ops"] == ["conv0"]


def test_precision_study_of_a_bundle_with_activation_bounds_measures_them_too(tmp_path, bundle_dir, cinc, mitdb):
    """A card that says its student was bounded (quantize.activation_bounds): the study adds the shipped float
    parts without the bounds, measured against that unbounded student's own fp32 model, and bounds the
    students of its other variants as the build did."""
    import json
    import shutil

    from quantize.precision_study import study

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    card = json.loads((copy / "model_card.json").read_text())
    card["student"]["activation_bounds"] = {"windows": card["recipe"]["calibration_windows"]}
    (copy / "model_card.json").write_text(json.dumps(card))
    plain = study(bundle_dir, n_sqnr=8, tflite=False, limit=10, sweep=[1.0])
    bounded = study(copy, n_sqnr=8, tflite=False, limit=10, sweep=[1.0])
    rows, before = {v["variant"]: v for v in bounded["variants"]}, {v["variant"]: v for v in plain["variants"]}
    unbounded = next(k for k in rows if k.endswith("without activation bounds (against its own fp32)"))
    assert not any("activation bounds" in k for k in before)
    # the unbounded student's int8 file against its own float model: this bundle's files are unbounded, so
    # that is the shipped row again, up to float rounding of the second export
    shipped = next(v for k, v in rows.items() if k.endswith("(shipped)"))
    assert abs(rows[unbounded]["max_abs_prob_error"] - shipped["max_abs_prob_error"]) < 1e-3
    # the swept strength's student is bounded here and not there: its figures differ
    swept = next(k for k in rows if k.endswith(", channel equalization 1"))
    assert rows[swept]["max_abs_prob_error"] != before[swept]["max_abs_prob_error"]


def test_plan_check_measures_each_plan_on_windows_it_never_saw(fp32_student, cinc, tmp_path, capsys):
    """``quantize.plan_check``: the plan's choice on validation windows, measured again on training windows."""
    from edge_sdk.inference.onnx_backend import OnnxBackend
    from quantize.onnx_int8 import quantize_onnx_int8
    from quantize.plan_check import check_plan_targets, main, markdown, unseen_figures

    train = cinc2017_windows("train", limit=80).x.astype(np.float32)
    calib, unseen = np.clip(train[:48], -8, 8), train[48:]
    val = cinc2017_windows("val", limit=60).x.astype(np.float32)
    rows = check_plan_targets(fp32_student, calib, val, unseen, [0.02], input_range=8.0, max_float=1,
                              log=lambda m: None)
    (row,) = rows
    assert row["target"] == 0.02 and row["plan"]["n_windows"] == len(val) and len(row["float_ops"]) <= 1
    # the unseen figures are those of the chosen int8 model on the unseen windows, measured independently here
    path = tmp_path / "chosen.onnx"
    quantize_onnx_int8(fp32_student, path, calib, input_range=8.0, float_ops=row["float_ops"])
    err = np.abs(OnnxBackend(path).predict(unseen) - OnnxBackend(fp32_student).predict(unseen)).max(1)
    expected = unseen_figures(err)
    assert row["unseen"]["n_windows"] == len(unseen) == expected["n_windows"]
    assert row["unseen"]["windows_over_0.03"] == expected["windows_over_0.03"]
    assert abs(row["unseen"]["max_abs_prob_error"] - expected["max_abs_prob_error"]) < 1e-6
    assert row["unseen"]["second_abs_prob_error"] <= row["unseen"]["max_abs_prob_error"]
    table = markdown({"planned_on": "v", "checked_on": "u", "accept": 0.03, "rows": rows})
    assert f"| 0.02 | {row['float_ops'][0] if row['float_ops'] else 'none'} |" in table
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        check_plan_targets(fp32_student, calib, val, unseen, [0.0])
    with pytest.raises(ValueError, match="no unseen windows"):
        check_plan_targets(fp32_student, calib, val, unseen[:0], [0.03])
    for bad in (["--targets", "0.03,abc"], ["--targets", "1.5"], ["--unseen", "0"]):
        with pytest.raises(SystemExit):
            main(bad)
    # a folder without a bundle: the named error and what to do, no traceback
    assert main(["--bundle", str(tmp_path)]) == 2
    assert "error: no model_card.json" in capsys.readouterr().err


def test_plan_check_command_on_the_committed_bundle_writes_its_result(bundle_dir, cinc, mitdb, tmp_path, capsys):
    """``python -m quantize.plan_check`` end to end: a target the all-int8 model already meets plans no float
    part, and the result is printed and written as JSON (never over an existing file)."""
    import json

    from quantize.plan_check import main

    out = tmp_path / "check.json"
    # 0.99: above the all-int8 model's error on any CPU kind (0.87 at most without VNNI, on 11,847 windows)
    args = ["--bundle", str(bundle_dir), "--targets", "0.99", "--limit", "3", "--unseen", "32", "--out", str(out)]
    assert main(args) == 0
    shipped, row = json.loads(out.read_text())["rows"]
    assert row["float_ops"] == [] and row["reached"] and row["unseen"]["n_windows"] == 32
    card = json.loads((bundle_dir / "model_card.json").read_text())
    # the first row is the bundle's own int8 file, whose plan measured on these very training windows
    assert shipped["shipped"] and shipped["plan_saw_unseen"] and shipped["unseen"]["n_windows"] == 32
    assert shipped["float_ops"] == card["files"]["student_int8.onnx"]["quantization"]["float_ops"]
    printed = capsys.readouterr().out
    assert "| 0.99 | none |" in printed and "| the bundle's int8 file (1) |" in printed
    assert main(args) == 2  # the result file exists now
    assert "error: " in capsys.readouterr().err and json.loads(out.read_text())["rows"] == [shipped, row]


def test_measurements_calibrate_as_the_bundle_was_built(bundle_dir, cinc, mitdb):
    """The studies quantize the input on the card's recorded range and clip calibration windows only where the
    build did: a student without QAT has no input range, and its calibration windows stay as drawn."""
    import copy
    import json

    from edge_sdk.bundle import CARD_NAME
    from quantize.precision_study import bundle_windows, card_input_range

    card = json.loads((bundle_dir / CARD_NAME).read_text())
    assert card_input_range(card) == card["student"]["qat"]["input_range"] == 8.0
    val, train, calib, input_range = bundle_windows(card, limit=2)
    assert input_range == 8.0 and np.abs(calib).max() <= 8.0 and len(calib) == card["recipe"]["calibration_windows"]
    plain = copy.deepcopy(card)
    del plain["files"]["student_int8.onnx"]["quantization"]["input_range"]
    _, _, raw, none = bundle_windows(plain, limit=2)
    assert none is None and np.abs(raw).max() > 8.0  # the committed calibration draw holds larger z-scores
    np.testing.assert_array_equal(np.clip(raw, -8, 8), calib)


def test_plan_check_as_the_recipe_checks_on_windows_no_plan_and_no_calibration_used(bundle_dir, cinc, mitdb, capsys):
    """``--as-recipe``: plans measure on the recipe's own plan windows, and every row (the bundle's int8 file
    first) is checked on the windows of training records that no calibration or plan window came from."""
    from edge_sdk.inference.onnx_backend import OnnxBackend
    from quantize.plan_check import plan_check, unseen_indices
    from quantize.precision_study import bundle_windows
    from quantize.recipe import calibration_indices, plan_window_indices

    record_idx = np.repeat(np.arange(250), 4)  # 1,000 windows of 250 records
    rest = unseen_indices(record_idx, 16, 60, seed=0)
    used = np.union1d(calibration_indices(1000, 16, 0), plan_window_indices(1000, 60, 16, 0))
    # whole records: not one window of a record that gave a calibration or plan window
    assert len(rest) and not set(record_idx[rest]) & set(record_idx[used])
    assert set(rest) == {i for i in range(1000) if record_idx[i] not in set(record_idx[used])}
    some = unseen_indices(record_idx, 16, 60, seed=0, n=50)
    assert len(some) == 50 and set(some) <= set(rest) and np.array_equal(some, unseen_indices(record_idx, 16, 60, 0, 50))

    result = plan_check(bundle_dir, [0.99], n_unseen=24, limit=2, as_recipe=True, log=lambda m: None)
    card = json.loads((bundle_dir / "model_card.json").read_text())
    n_plan = card["recipe"]["precision_train_windows"]
    assert f"+ {n_plan:,} training" in result["planned_on"] and result["checked_on"].startswith("24 windows of ")
    shipped, row = result["rows"]
    assert shipped["shipped"] and not shipped["plan_saw_unseen"] and row["plan"]["n_windows"] > n_plan
    # the shipped row is the bundle's int8 file against its fp32 file on exactly those windows
    _, train, _, _ = bundle_windows(card, limit=2)
    x = train.x[unseen_indices(train.record_idx, card["recipe"]["calibration_windows"], n_plan,
                               card["recipe"]["seed"], 24)].astype(np.float32)
    err = np.abs(OnnxBackend(bundle_dir / "student_int8.onnx").predict(x)
                 - OnnxBackend(bundle_dir / "student_fp32.onnx").predict(x)).max(1)
    assert abs(shipped["unseen"]["max_abs_prob_error"] - err.max()) < 1e-6


def test_precision_study_of_a_bundle_with_an_input_clip_measures_without_it_too(tmp_path, bundle_dir, cinc, mitdb):
    """A card that says its student clips its input (quantize.activation_bounds.bound_input): the study adds
    the shipped float parts on the student without the clip, against that student's own fp32 model."""
    import shutil

    from quantize.precision_study import _bundle_student, study

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    card = json.loads((copy / "model_card.json").read_text())
    assert _bundle_student(bundle_dir, card).input_bound is None
    card["student"]["input_clip"] = {"range": [-8.0, 8.0]}
    (copy / "model_card.json").write_text(json.dumps(card))
    bound = _bundle_student(copy, card).input_bound
    assert (bound.min_val, bound.max_val) == (-8.0, 8.0)
    rows = {v["variant"]: v for v in study(copy, n_sqnr=8, tflite=False, limit=10)["variants"]}
    unclipped = next(k for k in rows if k.endswith("without the input clip (against its own fp32)"))
    # this bundle's files are unclipped, so that is the shipped row again, up to the second export's rounding
    shipped = next(v for k, v in rows.items() if k.endswith("(shipped)"))
    assert abs(rows[unclipped]["max_abs_prob_error"] - shipped["max_abs_prob_error"]) < 1e-3
