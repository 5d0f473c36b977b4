"""Choosing among QAT runs (quantize.qat_select, recipe key qat_seeds): real QAT runs of the committed student
on real Challenge 2017 training windows, measured as int8 on records no calibration window came from."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.checkpoint import read_checkpoint
from distill.data import DataSpec, load_split
from distill.labels import checkpoint_label_table, hard_targets
from edge_sdk.errors import ConfigError
from quantize.plan_check import unseen_indices
from quantize.qat import qat_finetune
from quantize.qat_select import choose_run, run_int8_errors, split_by_record
from quantize.recipe import (QuantizeRecipe, calibration_indices, choose_among_qat_runs, run_recipe,
                             sample_calibration)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=60), st.integers(0, 5))
def test_split_by_record_keeps_records_whole_and_loses_no_window(records, seed):
    record_idx = np.asarray(records)
    idx = np.arange(len(record_idx))[::2]
    choose, check = split_by_record(idx, record_idx, seed)
    assert sorted(np.concatenate([choose, check]).tolist()) == idx.tolist()
    assert not set(record_idx[choose]) & set(record_idx[check])
    n = len(np.unique(record_idx[idx]))
    assert len(np.unique(record_idx[choose])) == (n + 1) // 2
    again = split_by_record(idx, record_idx, seed)
    assert np.array_equal(again[0], choose) and np.array_equal(again[1], check)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=40), st.integers(0, 2**31 - 1))
def test_record_changes_count_records_whose_mean_top_label_moves(records, seed):
    from quantize.qat_select import record_changes

    rng = np.random.default_rng(seed)
    record_idx = np.asarray(records) * 3 + 1  # record ids need not be 0..n-1
    ref = rng.dirichlet(np.ones(4), len(record_idx))
    cand = np.clip(ref + rng.normal(0, 0.1, ref.shape), 0, 1)
    want = sum(ref[record_idx == r].mean(0).argmax() != cand[record_idx == r].mean(0).argmax()
               for r in np.unique(record_idx))
    assert record_changes(ref, cand, record_idx) == {"records_top_label_changed": want,
                                                     "n_records": len(np.unique(record_idx))}
    assert record_changes(ref, ref, record_idx)["records_top_label_changed"] == 0


def test_qat_seeds_are_checked_before_any_work(tmp_path, models_dir):
    for bad, match in [(dict(qat_seeds=[0, 0]), "lists a seed twice"), (dict(qat_seeds=[]), "list of integer seeds"),
                       (dict(qat_seeds="0,1"), "qat_seeds is a list of whole numbers"),
                       (dict(qat_seeds=[0, True]), "qat_seeds is a list of whole numbers"),
                       (dict(qat_seeds=[0, 1], qat_epochs=0), "set qat_epochs > 0 or give one seed")]:
        with pytest.raises(ConfigError, match=match):
            run_recipe(QuantizeRecipe(student=str(models_dir / "student.pth"), out=str(tmp_path / "b"), **bad),
                       log=lambda m: None)
    assert not list(tmp_path.iterdir())


def test_two_real_qat_runs_the_kept_one_is_written_and_measures_as_recorded(tmp_path, models_dir, cinc):
    student = models_dir / "student.pth"
    train = load_split(DataSpec(limit=60), "train")
    val = load_split(DataSpec(limit=20), "val")
    recipe = QuantizeRecipe(student=str(student), calibration_windows=48, qat_epochs=1, qat_samples_per_epoch=128,
                            qat_seeds=[0, 1], float_ops=["conv0", "head"], input_clip=True,
                            channel_equalization=0.5)
    ckpt = read_checkpoint(student)
    table = checkpoint_label_table(ckpt, len(ckpt["state_dict"]["head.bias"]), where="student")
    y, supervised = hard_targets(train.y, train.classes, train.label_map, table, "unlabeled")
    calib = sample_calibration(train, recipe.calibration_windows, recipe.seed)

    def finetune(path, seed):
        qat_finetune(student, path, train.x, y, None, epochs=1, samples_per_epoch=128, seed=seed,
                     supervised=supervised)

    out = tmp_path / "qat.pth"
    sel = choose_among_qat_runs(recipe, [0, 1], finetune, train, val, calib, None, out, log=lambda m: None)
    runs = {r["seed"]: r for r in sel["runs"]}
    assert sorted(runs) == [0, 1] and sel["chosen_seed"] == choose_run(runs, 0.03)
    # the two seeds give two different int8 models, so the choice is not vacuous
    assert runs[0]["choose"]["max_abs_prob_error"] != runs[1]["choose"]["max_abs_prob_error"]
    # the halves: whole records, none that gave a calibration window
    unseen = unseen_indices(train.record_idx, 48, 0, 0)
    choose, check = split_by_record(unseen, train.record_idx, 0)
    assert len(choose) and len(check)
    calib_records = set(train.record_idx[calibration_indices(len(train), 48, 0)])
    assert not calib_records & set(train.record_idx[unseen])
    assert runs[0]["choose"]["n_windows"] == len(choose) and runs[0]["check"]["n_windows"] == len(check)
    assert f"{len(choose):,} windows of" in sel["choose"]
    # the file written is the run kept: measured again, independently, it gives the recorded figures
    written = read_checkpoint(out)
    assert written["meta"]["qat"]["selection"] == sel
    again = run_int8_errors(out, calib, calib, {"choose": train.x[choose], "check": train.x[check]},
                            float_ops=["conv0", "head"], input_clip=True, channel_equalization=0.5,
                            records={"choose": train.record_idx[choose], "check": train.record_idx[check]})
    kept = runs[sel["chosen_seed"]]
    for half, idx in (("choose", choose), ("check", check)):
        assert again[half]["max_abs_prob_error"] == pytest.approx(kept[half]["max_abs_prob_error"], abs=1e-6)
        for k in ("windows_over_0.03", "records_top_label_changed", "n_records"):
            assert again[half][k] == kept[half][k]
        assert kept[half]["n_records"] == len(np.unique(train.record_idx[idx]))


def test_an_auto_plan_without_plan_windows_measures_on_the_calibration_windows(models_dir, cinc):
    train = load_split(DataSpec(limit=12), "train")
    calib = sample_calibration(train, 24)
    calib[0, :50] = 30.0  # an artefact beyond the QAT input range of +-8
    logged = []
    r = run_int8_errors(models_dir / "student_qat.pth", calib, None, {"choose": train.x[:8]}, float_ops="auto",
                        precision_target=0.5, log=logged.append)
    assert r["plan"]["n_windows"] == 24 and r["float_ops"] == [] and r["plan"]["windows_over_target"] == 0
    assert any("[precision plan]" in m for m in logged)
    assert calib[0, 0] == 30.0  # the caller's windows are left as they are


def test_too_few_unseen_records_to_choose_on_is_a_named_error(tmp_path, models_dir, cinc):
    from edge_sdk.errors import DatasetError

    train = load_split(DataSpec(limit=3), "train")  # every window a calibration window
    recipe = QuantizeRecipe(student=str(models_dir / "student.pth"), calibration_windows=48, qat_seeds=[0, 1])
    calib = sample_calibration(train, 48)
    ran = []
    with pytest.raises(DatasetError, match="choosing a QAT run needs at least 2"):
        choose_among_qat_runs(recipe, [0, 1], lambda path, seed: ran.append(seed), train, None, calib, None,
                              tmp_path / "qat.pth", log=lambda m: None)
    assert not ran and not list(tmp_path.iterdir())


def test_cli_refuses_a_bad_seed_list(capsys):
    from ecg_edge.cli import main

    with pytest.raises(SystemExit) as e:
        main(["quantize", "--student", "x.pth", "--qat-seeds", "a,b"])
    assert e.value.code == 2
    assert "list of integer seeds such as 0,1,2" in capsys.readouterr().err


def test_the_readme_table_and_plan_check_say_which_run_was_kept():
    from quantize.plan_check import markdown
    from quantize.qat_select import RULE
    from quantize.results_table import _qat_runs_markdown

    fig = {"max_abs_prob_error": 0.0312, "windows_over_0.03": 2, "n_windows": 5000}
    sel = {"rule": RULE, "precision_target": 0.03, "chosen_seed": 1, "choose": "5,000 windows (choose half)",
           "check": "5,100 windows (check half)",
           "runs": [{"seed": 0, "float_ops": ["conv0", "head"], "choose": {**fig, "windows_over_0.03": 9},
                     "check": fig}, {"seed": 1, "float_ops": ["conv0", "conv1"], "choose": fig, "check": fig}]}
    table = "\n".join(_qat_runs_markdown(sel))
    assert "Kept: seed 1" in table and "| **1 (kept)** | conv0-1 | 0.0312 | 2 of 5,000 |" in table
    assert "| 0 | conv0, head | 0.0312 | 9 of 5,000 |" in table and "records whose top label" not in table
    for r in sel["runs"]:
        for h in ("choose", "check"):
            r[h] = {**r[h], "records_top_label_changed": r["seed"] + (h == "check"), "n_records": 1300}
    table = "\n".join(_qat_runs_markdown(sel))
    assert "| 0 | conv0, head | 0.0312 | 9 of 5,000 | 0.0312 | 2 of 5,000 | 0 of 1,300 / 1 of 1,300 |" in table
    note = markdown({"planned_on": "p", "checked_on": "c", "accept": 0.03, "rows": [], "qat_chosen_on": sel["choose"]})
    assert "chosen among several by its int8 error on half of these records (5,000 windows (choose half)" in note
