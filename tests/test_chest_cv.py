"""Chest-lead cross-validation by subject (distill.chest_cv): the folds, the fold recipes, pooling, and one real
fold trained and scored end to end on MIT-BIH and Challenge 2017 records (fail under CI when missing)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from distill import chest_cv
from distill.chest_lead import AF_RECORDS, MITDB_SPLIT, mitdb_side_windows
from distill.data import WindowSet
from distill.recipe import DistillRecipe
from edge_sdk.errors import ConfigError, DatasetError


def test_folds_partition_the_training_side_with_one_af_subject_each():
    chest_cv.check_folds()
    af_train = set(AF_RECORDS) & set(MITDB_SPLIT["train"])
    subjects = [set(recs) & af_train for recs in chest_cv.CV_FOLDS.values()]
    assert sorted(map(sorted, subjects)) == [["201", "202"], ["203"], ["219"]]
    assert not set(r for recs in chest_cv.CV_FOLDS.values() for r in recs) & set(MITDB_SPLIT["test"])
    with pytest.raises(ConfigError, match="every training-side record once"):
        chest_cv.check_folds({"A": MITDB_SPLIT["train"][:-1]})
    split_subject = {"A": tuple(r for r in MITDB_SPLIT["train"] if r != "202"), "B": ("202",)}
    with pytest.raises(ConfigError, match="201 and 202"):
        chest_cv.check_folds(split_subject)


def test_fold_recipe_holds_out_the_fold_and_checks_the_recipe(tmp_path):
    chest = {"teacher_weight": 0.0, "time_scales": [1.0, 1.2]}
    base = DistillRecipe(data={"chest_lead": chest}, epochs=3)
    r = chest_cv.fold_recipe(base, "B", tmp_path)
    assert r.data["chest_lead"] == {**chest, "holdout_records": list(chest_cv.CV_FOLDS["B"])}
    assert r.out == str(tmp_path / "B" / "student.pth") and r.epochs == 3
    assert base.data["chest_lead"] == chest, "the recipe given is not changed"
    with pytest.raises(ConfigError, match="no data.chest_lead"):
        chest_cv.fold_recipe(DistillRecipe(), "A", tmp_path)
    with pytest.raises(ConfigError, match="already holds out"):
        chest_cv.fold_recipe(replace(base, data={"chest_lead": {"holdout_records": ["203"]}}), "A", tmp_path)
    with pytest.raises(ConfigError, match="unknown chest-lead CV folds"):
        chest_cv.fold_recipe(base, "D", tmp_path)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        chest_cv.run_chest_cv(base, tmp_path / "a_file", ["A"], log=lambda m: None)


def test_rescore_scores_on_the_recipes_device(tmp_path, monkeypatch):
    seen = []

    def fake_score(student, records, device="cpu"):
        seen.append((Path(student).parent.name, tuple(records), device))
        return {"af": {"n_windows": 1, "expected_top_fraction": 1.0, "per_record_expected_fraction": {}}}

    monkeypatch.setattr(chest_cv, "score_student", fake_score)
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / chest_cv.FOLD_FILE).write_text(json.dumps({"fold": "B", "recipe": {}, "report": {}, "seconds": 3.0}))
    (tmp_path / "B" / "student.pth").write_bytes(b"")
    recipe = DistillRecipe(data={"chest_lead": {}}, device="meta")  # a device torch names but never computes on
    chest_cv.run_chest_cv(recipe, tmp_path, ["B"], log=lambda m: None, rescore=True)
    assert seen == [("B", chest_cv.CV_FOLDS["B"], "meta")]
    assert json.loads((tmp_path / "B" / chest_cv.FOLD_FILE).read_text())["seconds"] == 3.0


def test_select_records_keeps_whole_records_and_their_weights():
    ws = WindowSet(np.arange(6, dtype=np.float16)[:, None], np.array([0, 1, 1, 0, 2, 2]),
                   np.array([0, 0, 1, 2, 2, 2]), ["a", "b", "c"], ("N", "A", "O"),
                   teacher_weight=np.array([1, 1, 0, 0, 0, 0], np.float32),
                   sampling_weight=np.arange(6, dtype=np.float32))
    sub = ws.select_records(["c", "a"], "a and c")
    assert sub.records == ["a", "c"] and sub.record_idx.tolist() == [0, 0, 1, 1, 1]
    assert sub.x[:, 0].tolist() == [0, 1, 3, 4, 5] and sub.y.tolist() == [0, 1, 0, 2, 2]
    assert sub.teacher_weight.tolist() == [1, 1, 0, 0, 0] and sub.sampling_weight.tolist() == [0, 1, 3, 4, 5]
    assert sub.description == "a and c" and sub.classes == ws.classes
    with pytest.raises(DatasetError, match=r"\['d'\] are not in"):
        ws.select_records(["a", "d"])


def _fold_file(root, fold: str, af: tuple[float, int], sinus: tuple[float, int], f1: float,
               af_ectopy: dict | None = None) -> None:
    def section(frac, n, records):
        return {"expected_top_fraction": frac, "n_windows": n, "per_record_expected_fraction": records}

    d = root / fold
    d.mkdir(parents=True)
    (d / chest_cv.FOLD_FILE).write_text(json.dumps({
        "fold": fold, "recipe": {"seed": 0}, "report": {
            "af": {**section(*af, {f"af{fold}": af[0]}), **({"by_ectopic_beats": af_ectopy} if af_ectopy else {})},
            "clean_sinus": section(*sinus, {f"n{fold}": sinus[0]}),
            "validation": {"epoch": 3, "val_challenge2017_f1": f1, "val_mean_auroc": 0.9}}}))


def test_summarize_pools_windows_not_fold_means(tmp_path):
    _fold_file(tmp_path, "A", (0.5, 100), (1.0, 10), 0.80)
    _fold_file(tmp_path, "C", (1.0, 300), (0.0, 30), 0.84)
    s = chest_cv.summarize(tmp_path)
    assert s["folds"] == ["A", "C"] and not s["complete"]
    assert s["chest_lead"]["af"] == {"n_windows": 400, "expected_top_fraction": 0.875,
                                     "per_record_expected_fraction": {"afA": 0.5, "afC": 1.0}}
    assert s["chest_lead"]["clean_sinus"]["expected_top_fraction"] == 0.25 and "other" not in s["chest_lead"]
    assert s["validation_mean"] == {"val_challenge2017_f1": 0.82, "val_mean_auroc": 0.9}
    assert json.loads((tmp_path / chest_cv.SUMMARY_FILE).read_text()) == s
    table = chest_cv.markdown_table({"tiny": s})
    assert "| tiny | A, C | 25.0 % of 40 | 87.5 % of 400 | - | 0.820 | 0.9000 |" in table
    with pytest.raises(DatasetError, match="no chest-lead CV fold results"):
        chest_cv.summarize(tmp_path / "empty")


def test_summarize_pools_af_by_ectopic_beats_only_when_every_fold_has_it(tmp_path):
    _fold_file(tmp_path, "A", (0.5, 100), (1.0, 10), 0.80, {"0": {"n_windows": 60, "expected_top_fraction": 0.5},
                                                            "1-3": {"n_windows": 40, "expected_top_fraction": 0.5}})
    _fold_file(tmp_path, "B", (1.0, 300), (0.0, 30), 0.84, {"0": {"n_windows": 20, "expected_top_fraction": 1.0},
                                                            "4+": {"n_windows": 280, "expected_top_fraction": 1.0}})
    pooled = chest_cv.summarize(tmp_path, write=False)["chest_lead"]["af"]["by_ectopic_beats"]
    assert pooled == {"0": {"n_windows": 80, "expected_top_fraction": 0.625},
                      "1-3": {"n_windows": 40, "expected_top_fraction": 0.5},
                      "4+": {"n_windows": 280, "expected_top_fraction": 1.0}}
    table = chest_cv.ectopy_table({"r": chest_cv.summarize(tmp_path, write=False)})
    assert table.endswith("| r | A, B | 62.5 % of 80 | 50.0 % of 40 | 100.0 % of 280 |")
    _fold_file(tmp_path, "C", (1.0, 10), (1.0, 10), 0.8)  # an older fold result without the groups
    assert "by_ectopic_beats" not in chest_cv.summarize(tmp_path, write=False)["chest_lead"]["af"]
    assert chest_cv.ectopy_table({"r": chest_cv.summarize(tmp_path, write=False)}) == ""


def test_one_fold_trains_without_its_records_and_scores_them(tmp_path, mitdb, cinc, models_dir, monkeypatch):
    """Fold C (219 + sinus records) on real data: a tiny student (30 Challenge records per split, one epoch,
    augmented batches) trains with fold C's chest-lead records left out and is scored on exactly their windows."""
    monkeypatch.setenv("ECG_EDGE_CACHE", str(tmp_path / "cache"))
    recipe = DistillRecipe(teacher=str(models_dir / "reference_teacher.pth"), train_hop=5.0, epochs=1,
                           batch_size=16, samples_per_epoch=64, selection="macro_f1", device="cpu",
                           data={"limit": 30, "chest_lead": {"teacher_weight": 0.0}}, augment={"p_noise": 1.0})
    summary = chest_cv.run_chest_cv(recipe, tmp_path / "cv", ["C"], log=lambda m: None)
    fold = json.loads((tmp_path / "cv" / "C" / chest_cv.FOLD_FILE).read_text())
    side = mitdb_side_windows("train", hop_s=5.0)
    held = side.select_records([r for r in side.records if r in chest_cv.CV_FOLDS["C"]])
    af = fold["report"]["af"]
    assert af["n_windows"] == int((held.y == held.classes.index("A")).sum()) > 200
    assert set(af["per_record_expected_fraction"]) == {"219"}
    assert fold["report"]["clean_sinus"]["n_windows"] == int((held.y == held.classes.index("N")).sum())
    assert fold["recipe"]["data"]["chest_lead"]["holdout_records"] == list(chest_cv.CV_FOLDS["C"])
    meta = __import__("distill.checkpoint", fromlist=["x"]).read_checkpoint(tmp_path / "cv" / "C" / "student.pth")["meta"]
    assert "held out: 219, 115, 106" in meta["data"]["train"]
    assert meta["train_config"]["augment"] == {"p_noise": 1.0}, "the recipe's augmentation reaches training"
    assert summary["folds"] == ["C"] and summary["chest_lead"]["af"]["n_windows"] == af["n_windows"]
    assert summary["recipe"]["data"]["chest_lead"] == {"teacher_weight": 0.0} and "out" not in summary["recipe"]
    assert 0 <= summary["validation_mean"]["val_macro_f1"] <= 1
    groups = af["by_ectopic_beats"]
    assert sum(g["n_windows"] for g in groups.values()) == af["n_windows"] and set(groups) == {"0", "1-3"}
    assert summary["chest_lead"]["af"]["by_ectopic_beats"]["1-3"]["n_windows"] == groups["1-3"]["n_windows"]
    assert set(fold["report"]["clean_sinus"]["by_ectopic_beats"]) == {"0"}  # clean sinus has no ectopic beat
    with pytest.raises(Exception, match="exists"):  # nothing is overwritten without force
        chest_cv.run_chest_cv(recipe, tmp_path / "cv", ["C"], log=lambda m: None)
    older = {**fold, "report": {k: v for k, v in fold["report"].items() if k != "af"}, "seconds": 12.5}
    (tmp_path / "cv" / "C" / chest_cv.FOLD_FILE).write_text(json.dumps(older))
    again = chest_cv.run_chest_cv(recipe, tmp_path / "cv", ["C"], log=lambda m: None, rescore=True)
    rescored = json.loads((tmp_path / "cv" / "C" / chest_cv.FOLD_FILE).read_text())
    assert rescored["report"]["af"] == af and rescored["seconds"] == 12.5, "scored again, training kept"
    assert again["chest_lead"]["af"]["by_ectopic_beats"] == summary["chest_lead"]["af"]["by_ectopic_beats"]
    with pytest.raises(DatasetError, match="run ecg-edge chest-cv for fold A"):
        chest_cv.run_chest_cv(recipe, tmp_path / "cv", ["A"], log=lambda m: None, rescore=True)


def test_cli_names_a_recipe_without_chest_lead_data(tmp_path, capsys):
    from ecg_edge.cli import main

    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"teacher": "t.pth", "epochs": 1}))
    assert main(["chest-cv", "--config", str(recipe), "--out", str(tmp_path / "cv")]) == 2
    assert "no data.chest_lead" in capsys.readouterr().err and not (tmp_path / "cv").exists()
    assert main(["chest-cv", "--config", str(recipe), "--out", str(tmp_path / "cv"), "--folds", "A,X", "--seed", "3"]) == 2
    assert "unknown chest-lead CV folds ['X']" in capsys.readouterr().err


def test_committed_variant_recipes_load_and_hold_chest_lead_data():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "configs" / "chest_cv"
    files = sorted(folder.glob("*.json"))
    assert len(files) >= 5
    for f in files:
        r = DistillRecipe.from_file(f)
        assert Path(r.teacher).exists(), f
        assert r.data["chest_lead"] and not r.data["chest_lead"].get("holdout_records"), f


def test_readme_table_is_the_committed_device_report():
    """The README's chest-lead CV table is the one the lent-GPU run's report holds, which pools its fold results."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    report = json.loads((root / "models" / "chest_cv.device_report.json").read_text())
    assert report["table"] in (root / "README.md").read_text()
    assert report["table"] == chest_cv.markdown_table({report["recipes"][n]: s for n, s in report["summaries"].items()})
    for name, folds in report["folds"].items():
        af = report["summaries"][name]["chest_lead"]["af"]
        hits = sum(f["af"]["expected_top_fraction"] * f["af"]["n_windows"] for f in folds.values())
        assert af["n_windows"] == 745 and abs(hits / 745 - af["expected_top_fraction"]) < 1e-4, name


def test_readme_tables_are_the_committed_cpu_report():
    """The README's CPU chest-lead CV tables (shipped recipe against synthetic PVCs) are the committed report's,
    which pools its fold results."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    report = json.loads((root / "models" / "chest_cv.cpu_report.json").read_text())
    readme = (root / "README.md").read_text()
    by_recipe = {report["recipes"][n]: s for n, s in report["summaries"].items()}
    assert report["table"] == chest_cv.markdown_table(by_recipe) and report["table"] in readme
    assert report["ectopy_table"] == chest_cv.ectopy_table(by_recipe) and report["ectopy_table"] in readme
    for name, folds in report["folds"].items():
        assert sorted(folds) == ["A", "B", "C"], name
        af = report["summaries"][name]["chest_lead"]["af"]
        hits = sum(f["af"]["expected_top_fraction"] * f["af"]["n_windows"] for f in folds.values())
        assert af["n_windows"] == 745 and abs(hits / 745 - af["expected_top_fraction"]) < 1e-4, name
        assert sum(g["n_windows"] for g in af["by_ectopic_beats"].values()) == 745, name


def _summary(sinus: float, af: float, f1: float, complete: bool = True, four_plus: float | None = None) -> dict:
    pooled = {"clean_sinus": {"n_windows": 100, "expected_top_fraction": sinus},
              "af": {"n_windows": 50, "expected_top_fraction": af}}
    if four_plus is not None:
        pooled["af"]["by_ectopic_beats"] = {"4+": {"n_windows": 5, "expected_top_fraction": four_plus}}
    return {"complete": complete, "chest_lead": pooled, "validation_mean": {"val_challenge2017_f1": f1}}


def test_seed_means_and_the_adoption_rule():
    summaries = {"base_0": _summary(0.90, 0.90, 0.820), "base_1": _summary(0.80, 0.92, 0.830),
                 "var_0": _summary(0.86, 0.93, 0.822), "var_1": _summary(0.83, 0.91, 0.824),
                 "var_2": _summary(0.10, 0.10, 0.1, complete=False),  # a run that lost a fold does not count
                 "bad_0": _summary(0.70, 0.99, 0.825, four_plus=0.4)}
    recipes = {"base_0": "base", "base_1": "base", "var_0": "var", "var_1": "var", "var_2": "var", "bad_0": "bad"}
    means = chest_cv.seed_means(summaries, recipes)
    assert means["var"]["runs"] == ["var_0", "var_1"]
    assert means["base"]["clean_sinus"] == {"mean": 85.0, "min": 80.0, "max": 90.0}
    assert means["var"]["af"]["mean"] == pytest.approx(92.0) and "af_4+_ectopic" not in means["var"]
    assert means["bad"]["af_4+_ectopic"]["mean"] == pytest.approx(40.0)
    ok = chest_cv.adoption_check(means["base"], means["var"])  # AF +1, sinus -0.5, F1 -0.002
    assert ok["meets"] and ok["af_change"] == pytest.approx(1.0) and ok["sinus_change"] == pytest.approx(-0.5)
    bad = chest_cv.adoption_check(means["base"], means["bad"])  # AF +8, but sinus -15
    assert not bad["meets"]
    assert not chest_cv.adoption_check(means["base"], means["var"], {**chest_cv.ADOPTION_RULE, "af_gain_min": 1.5})["meets"]
    table = chest_cv.seed_mean_table(means, "base").splitlines()
    assert table[2].startswith("| base | 2 | 85.0 % (80.0-90.0) |") and table[2].endswith("(the baseline) |")
    assert table[3].endswith("AF +1.0, sinus -0.5, F1 -0.002: meets the rule |")
    assert table[4].endswith("does not meet the rule |") and "40.0 % (40.0-40.0)" in table[4]


def test_readme_seed_table_is_the_committed_seed_report():
    """The README's over-seeds table is the lent-GPU seed report's, made from its runs' summaries by the rule."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    report = json.loads((root / "models" / "chest_cv_seeds.device_report.json").read_text())
    recipes = {n: r["recipe"] for n, r in report["runs"].items()}
    means = chest_cv.seed_means(report["summaries"], recipes)
    assert report["rule"] == chest_cv.ADOPTION_RULE and means == report["seed_means"]
    assert report["seed_mean_table"] == chest_cv.seed_mean_table(means, "configs/default_student.json")
    assert report["seed_mean_table"] in (root / "README.md").read_text()
    assert all(len(m["runs"]) == 3 for m in means.values()) and len(means) == 4
    for name, folds in report["folds"].items():
        assert sorted(folds) == ["A", "B", "C"], name
        af = report["summaries"][name]["chest_lead"]["af"]
        hits = sum(f["report"]["af"]["expected_top_fraction"] * f["report"]["af"]["n_windows"] for f in folds.values())
        assert af["n_windows"] == 745 and abs(hits / 745 - af["expected_top_fraction"]) < 1e-4, name


def _device_runs(tmp_path) -> tuple[dict, dict[str, list[Path]]]:
    """The committed seed report's fold results written back as chest-cv run folders, grouped by recipe."""
    root = Path(__file__).resolve().parents[1]
    report = json.loads((root / "models" / "chest_cv_seeds.device_report.json").read_text())
    groups: dict[str, list[Path]] = {}
    for run, folds in report["folds"].items():
        for fold, result in folds.items():
            (tmp_path / run / fold).mkdir(parents=True)
            (tmp_path / run / fold / chest_cv.FOLD_FILE).write_text(json.dumps(result))
        groups.setdefault(report["runs"][run]["recipe"], []).append(tmp_path / run)
    return report, groups


def test_compare_runs_rebuilds_the_committed_seed_table_from_run_folders(tmp_path, capsys):
    from ecg_edge.cli import main

    report, groups = _device_runs(tmp_path)
    base = "configs/default_student.json"
    means, table = chest_cv.compare_runs({base: groups.pop(base), **groups})
    def figures(m: dict) -> dict:
        return {r: {k: v for k, v in fig.items() if k != "runs"} for r, fig in m.items()}

    assert table == report["seed_mean_table"] and figures(means) == figures(report["seed_means"])
    args = ["chest-cv-compare", "--run", "shipped=" + ",".join(str(tmp_path / f"default_student_seed{s}") for s in range(3)),
            "--run", "pvc=" + ",".join(str(tmp_path / f"synthetic_pvc_seed{s}") for s in range(3))]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| shipped | 3 | 89.9 % (89.1-90.8) |" in out and "sinus -7.5, F1 -0.004: does not meet the rule |" in out


def test_compare_runs_refuses_unfinished_runs_and_mixed_recipes(tmp_path, capsys):
    from ecg_edge.cli import main

    _, groups = _device_runs(tmp_path)
    shipped, pvc = groups["configs/default_student.json"], groups["configs/chest_cv/synthetic_pvc.json"]
    with pytest.raises(ConfigError, match="differ in data, not only the seed"):
        chest_cv.compare_runs({"mixed": [shipped[0], pvc[0]]})
    with pytest.raises(ConfigError, match="given twice"):
        chest_cv.compare_runs({"a": [shipped[0]], "b": [shipped[0]]})
    (shipped[1] / "C" / chest_cv.FOLD_FILE).unlink()
    with pytest.raises(ConfigError, match=r"folds A, B only; finish it \(ecg-edge chest-cv --folds C\)"):
        chest_cv.compare_runs({"shipped": shipped})
    assert main(["chest-cv-compare", "--run", "shipped"]) == 2
    assert "is not NAME=DIR" in capsys.readouterr().err
    assert main(["chest-cv-compare", "--run", f"a={tmp_path / 'nothing'}"]) == 2
    assert "no chest-lead CV fold results" in capsys.readouterr().err
