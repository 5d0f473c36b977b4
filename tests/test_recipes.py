"""Recipe files for the student (distill) and the bundle (quantize): committed configs load, paths resolve
relative to the file, bad files are named errors, and the chest-lead data option builds real windows."""
import json
from pathlib import Path

import numpy as np
import pytest

from distill.data import DataSpec, chest_lead_training_windows, load_split
from distill.recipe import DistillRecipe, run_distill_recipe
from edge_sdk.errors import ConfigError, DatasetError, EdgeSDKError
from quantize.recipe import QuantizeRecipe

ROOT = Path(__file__).resolve().parents[1]


def test_committed_recipes_load_and_point_at_committed_files():
    from distill.teacher import TeacherRecipe

    t = TeacherRecipe.from_file(ROOT / "configs" / "reference_teacher.json")
    assert Path(t.out) == ROOT / "models" / "reference_teacher.pth" and t.width == "reduced" and t.epochs == 14
    g = TeacherRecipe.from_file(ROOT / "configs" / "reference_teacher_gpu.json")
    assert Path(g.out) == ROOT / "models" / "reference_teacher_gpu.pth" and g.augment == {} and g.seed == 1
    from distill.ensemble import EnsembleRecipe

    e = EnsembleRecipe.from_file(ROOT / "configs" / "teacher_ensemble.json")
    assert [Path(m).resolve() for m in e.members] == [Path(t.out), Path(g.out)]
    s = DistillRecipe.from_file(ROOT / "configs" / "default_student.json")
    assert Path(s.teacher) == Path(e.out) == ROOT / "models" / "teacher_ensemble.json" and Path(s.teacher).is_file()
    ens = json.loads(Path(s.teacher).read_text())
    assert [m["path"] for m in ens["members"]] == ["reference_teacher.pth", "reference_teacher_gpu.pth"]
    assert Path(s.out) == ROOT / "models" / "student.pth"
    assert s.data.get("chest_lead", {}).get("teacher_weight") == 0.0
    from distill.data import DEFAULT_CHEST_LEAD

    assert s.data["chest_lead"] == DEFAULT_CHEST_LEAD, "`distill --chest-lead` gives the shipped student's options"
    q = QuantizeRecipe.from_file(ROOT / "configs" / "default_bundle.json")
    assert Path(q.student) == Path(s.out), "the bundle is built from the student the student recipe writes"
    assert q.data.get("chest_lead") == s.data.get("chest_lead")
    assert q.record_rule == "logistic"


def test_recipe_file_errors_are_named(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text('{"teacher": "t.pth", "epoch": 3}')
    with pytest.raises(ConfigError, match="unknown keys \\['epoch'\\]"):
        DistillRecipe.from_file(bad)
    bad.write_text('{"student": "s.pth", "float_convs": [0, 1]}')  # a recipe from before the rename
    with pytest.raises(ConfigError, match="'float_convs' is now 'float_ops', with op ids instead of indices"):
        QuantizeRecipe.from_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        DistillRecipe.from_file(bad)
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        QuantizeRecipe.from_file(bad)
    with pytest.raises(ConfigError, match="not found"):
        DistillRecipe.from_file(tmp_path / "missing.json")
    ok = tmp_path / "sub" / "r.json"
    ok.parent.mkdir()
    ok.write_text(json.dumps({"teacher": "../t.pth", "out": "s.pth", "data": {"records": ["a", "/abs/b"]}}))
    r = DistillRecipe.from_file(ok, epochs=2, lr=None)
    assert r.teacher == str(tmp_path / "t.pth") and r.out == str(ok.parent / "s.pth")
    assert r.data["records"] == [str(ok.parent / "a"), "/abs/b"] and r.epochs == 2 and r.lr == 4e-3


def test_distill_recipe_checks_before_writing(tmp_path, models_dir):
    with pytest.raises(EdgeSDKError, match="unknown"):
        run_distill_recipe(DistillRecipe(teacher=str(models_dir / "reference_teacher.pth"), out=str(tmp_path / "s.pth"),
                                         labels=["ATRIAL FIBRILATION"]), log=lambda m: None)
    with pytest.raises(ConfigError, match="unmapped_labels"):
        run_distill_recipe(DistillRecipe(teacher=str(models_dir / "reference_teacher.pth"), out=str(tmp_path / "s.pth"),
                                         unmapped_labels="drop"), log=lambda m: None)
    for bad in (-1, 31, 2.5):
        with pytest.raises(ConfigError, match="average_last"):
            run_distill_recipe(DistillRecipe(teacher=str(models_dir / "reference_teacher.pth"),
                                             out=str(tmp_path / "s.pth"), average_last=bad), log=lambda m: None)
    for key, bad, match in (("epochs", 0, "epochs is a whole number"), ("batch_size", 2.5, "batch_size is"),
                            ("samples_per_epoch", True, "samples_per_epoch is"),
                            ("samples_per_epoch", 32, "less than one batch")):
        with pytest.raises(ConfigError, match=match):
            run_distill_recipe(DistillRecipe(teacher=str(models_dir / "reference_teacher.pth"),
                                             out=str(tmp_path / "s.pth"), **{key: bad}), log=lambda m: None)
    for bad, match in (([0.1], "augment is a dict"), ({"noise": [0, 1]}, "unknown augmentation keys"),
                       ({"p_noise": 2.0}, "probability")):
        with pytest.raises(ConfigError, match=match):
            run_distill_recipe(DistillRecipe(teacher=str(models_dir / "reference_teacher.pth"),
                                             out=str(tmp_path / "s.pth"), augment=bad), log=lambda m: None)
    assert not list(tmp_path.iterdir())


def test_quantize_recipe_precision_choices_are_checked_before_any_work(tmp_path, models_dir):
    from quantize.recipe import run_recipe

    for bad, match in [(dict(float_ops="all"), "float_ops"), (dict(float_ops=[0, 1]), "float_ops"),
                       (dict(float_ops="auto", precision_target=3.0), "precision_target"),
                       (dict(float_ops=["conv0", "conv12"]), r"conv12.*conv0..conv11, add0..add4, head"),
                       (dict(float_ops=["input"]), "not an op id"),
                       (dict(record_rule="vote"), "record_rule must be one of"),
                       (dict(channel_equalization=2.0), r"channel_equalization is a strength in \[0, 1\]"),
                       (dict(precision_train_windows=-1), "precision_train_windows"),
                       (dict(precision_train_windows=True), "precision_train_windows"),
                       (dict(precision_train_windows=8192.0), "precision_train_windows"),
                       (dict(calibration_method="MinMax"), "calibration_method must be one of minmax, entropy"),
                       (dict(calibration_windows=0), "calibration_windows"),
                       (dict(calibration_windows="256"), "calibration_windows")]:
        with pytest.raises(ConfigError, match=match):
            run_recipe(QuantizeRecipe(student=str(models_dir / "student.pth"), out=str(tmp_path / "b"), **bad),
                       log=lambda m: None)
    assert not list(tmp_path.iterdir())


def test_chest_lead_training_windows_are_real_labeled_and_time_scaled(mitdb, cinc):
    ws = chest_lead_training_windows({"teacher_weight": 0.0, "sampling_weight": 2.0, "time_scales": [1.0, 1.3]})
    one = chest_lead_training_windows({})
    assert set(ws.records) <= set(__import__("distill.chest_lead", fromlist=["x"]).MITDB_SPLIT["train"])
    assert (ws.teacher_weight == 0).all() and (ws.sampling_weight == 2).all()
    assert one.teacher_weight.tolist() == [0.0] * len(one) and (one.sampling_weight == 1).all()
    assert len(one) < len(ws) < 2 * len(one)  # a record played 1.3x faster is shorter: fewer extra windows
    assert np.isfinite(ws.x.astype(np.float32)).all() and ws.x.shape[1] == 5000
    with pytest.raises(DatasetError, match="unknown"):
        chest_lead_training_windows({"teacher_weigth": 0})
    with pytest.raises(DatasetError, match="between 0.5 and 2.0"):
        chest_lead_training_windows({"time_scales": [3.0]})
    held = chest_lead_training_windows({"holdout_records": ["203", "201", "202"]})
    assert held.records == [r for r in one.records if r not in ("201", "202", "203")]
    assert len(held) == int(np.isin(one.record_idx, [one.records.index(r) for r in held.records]).sum())
    assert (held.y == one.y[np.isin(one.record_idx, [one.records.index(r) for r in held.records])]).all()
    assert "held out: 203, 201, 202" in held.description and (held.teacher_weight == 0).all()
    with pytest.raises(DatasetError, match="not training-side"):
        chest_lead_training_windows({"holdout_records": ["221"]})  # a held-out-side record
    with pytest.raises(DatasetError, match="list of record names"):
        chest_lead_training_windows({"holdout_records": "203"})
    train = load_split(DataSpec(limit=30, chest_lead={"teacher_weight": 0.0}), "train")
    val = load_split(DataSpec(limit=30, chest_lead={"teacher_weight": 0.0}), "val")
    assert train.teacher_weight is not None and (train.teacher_weight == 0).sum() == len(one)
    assert val.teacher_weight is None and "MIT-BIH" not in val.description


@pytest.mark.parametrize("cls, key, bad, match", [
    ("distill", "lr", "fast", "lr is a finite number"), ("distill", "lr", -1.0, "lr must be > 0"),
    ("distill", "lr", float("inf"), "lr is a finite number"), ("distill", "temperature", 0, "temperature must be > 0"),
    ("distill", "alpha", 2, r"alpha must be in \[0, 1\]"), ("distill", "hard_labels", "no", "hard_labels is true or false"),
    ("distill", "seed", -5, "seed must be >= 0"), ("distill", "labels", [1, 2], "labels is a list of strings"),
    ("distill", "teacher", 5, "teacher is a string"), ("distill", "data", {"bogus": 1}, "unknown keys"),
    ("distill", "data", {"limit": 0}, "limit must be >= 1"), ("teacher", "lr", -1, "lr must be > 0"),
    ("quantize", "qat_epochs", "4", "qat_epochs is a whole number"), ("quantize", "qat_epochs", -3, "qat_epochs must be >= 0"),
    ("quantize", "tflite", "no", "tflite is true or false"), ("quantize", "hop_seconds", 0, "hop_seconds must be > 0"),
    ("quantize", "qat_samples_per_epoch", 0, "qat_samples_per_epoch must be >= 1"),
])
def test_recipe_values_of_the_wrong_type_or_range_are_config_errors(tmp_path, cls, key, bad, match):
    """Each of these used to run into a raw TypeError/ValueError after the data were loaded, or was taken
    silently ("no" as true, a negative epoch count as post-training quantization)."""
    from distill.teacher import TeacherRecipe

    make = {"distill": DistillRecipe, "teacher": TeacherRecipe, "quantize": QuantizeRecipe}[cls]
    base = {"student": "s.pth"} if cls == "quantize" else {}
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**base, key: bad}))
    with pytest.raises(ConfigError, match=match):
        make.from_file(path)
