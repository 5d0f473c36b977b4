"""Teacher ensembles (distill.ensemble): the committed members on real Challenge 2017 windows."""
import json
import shutil

import numpy as np
import pytest
import torch

from distill.checkpoint import load_net1d
from distill.distiller import activate, load_teacher
from distill.ensemble import EnsembleRecipe, load_teacher_ensemble, write_teacher_ensemble
from distill.errors import CheckpointError
from distill.torch_dataset import predict
from edge_sdk.errors import ConfigError, LabelError, OutputExistsError
from edge_sdk.windowing import record_windows


@pytest.fixture(scope="module")
def windows(cinc) -> np.ndarray:
    return np.concatenate([record_windows(cinc.read(n).signal_mv, 300.0, 5.0)[:3] for n in ("A00001", "A00002", "A00005")])


def test_ensemble_is_the_mean_of_its_members_probabilities(models_dir, windows):
    teacher = load_teacher(models_dir / "teacher_ensemble.json")
    members = [load_net1d(models_dir / n)[0] for n in ("reference_teacher.pth", "reference_teacher_gpu.pth")]
    expected = np.mean([activate(predict(m.float(), windows), "softmax") for m in members], 0)
    got = activate(predict(teacher.model, windows), teacher.labels.activation)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    logits, feats = predict(teacher.model, windows, features=True)
    assert feats.shape == (len(windows), 128 + 128)
    with torch.no_grad():
        np.testing.assert_allclose(teacher.model(torch.from_numpy(windows[:, None])).numpy(), logits, atol=1e-4)
    ident = teacher.identity()
    assert ident["width"] == "ensemble of 2" and ident["name"] == "teacher_ensemble.json"
    assert [m["path"] for m in ident["config"]["ensemble"]] == ["reference_teacher.pth", "reference_teacher_gpu.pth"]


def test_write_checks_members_and_refuses_to_overwrite(models_dir, tmp_path):
    for n in ("reference_teacher.pth", "reference_teacher_gpu.pth"):
        shutil.copy(models_dir / n, tmp_path / n)
    members = [tmp_path / "reference_teacher.pth", tmp_path / "reference_teacher_gpu.pth"]
    out = tmp_path / "ens.json"
    write_teacher_ensemble(out, members)
    with pytest.raises(OutputExistsError):
        write_teacher_ensemble(out, members)
    with pytest.raises(ConfigError, match="at least two"):
        write_teacher_ensemble(tmp_path / "one.json", members[:1])
    swapped = torch.load(members[1], weights_only=True)  # same weights, two outputs' names swapped
    swapped["labels"] = ["ATRIAL FIBRILLATION", "NORMAL SINUS RHYTHM", "OTHER RHYTHM", "NOISE"]
    torch.save(swapped, tmp_path / "swapped.pth")
    with pytest.raises(LabelError, match="share one label table"):
        write_teacher_ensemble(tmp_path / "mixed.json", [members[0], tmp_path / "swapped.pth"])
    assert not (tmp_path / "mixed.json").exists()
    # a member retrained after the file was written is named, not silently used
    model, ckpt = load_net1d(members[1])
    ckpt["state_dict"] = {k: v + 1 if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, members[1])
    with pytest.raises(CheckpointError, match="has changed"):
        load_teacher_ensemble(out)
    with pytest.raises(ConfigError, match="teacher ensemble"):
        load_teacher(models_dir / "teacher_ensemble.json", config={"base_filters": 16})
    (tmp_path / "bad.json").write_text(json.dumps({"members": []}))
    with pytest.raises(CheckpointError, match="not a teacher ensemble"):
        load_teacher(tmp_path / "bad.json")


def test_recipe_resolves_members_relative_to_the_file(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "e.json").write_text(json.dumps({"out": "../m/e.json", "members": ["../m/a.pth", "../m/b.pth"]}))
    r = EnsembleRecipe.from_file(tmp_path / "c" / "e.json")
    assert r.out.endswith("m/e.json") and [m.split("/")[-1] for m in r.members] == ["a.pth", "b.pth"]
    (tmp_path / "c" / "one.json").write_text(json.dumps({"members": ["a.pth"]}))
    with pytest.raises(ConfigError, match="at least two"):
        EnsembleRecipe.from_file(tmp_path / "c" / "one.json")


def test_distill_from_an_ensemble_records_it(models_dir, cinc, tmp_path):
    from distill.checkpoint import read_checkpoint
    from distill.data import cinc2017_windows
    from distill.distiller import distill
    from distill.trainer import TrainConfig

    train, val = cinc2017_windows("train", limit=12), cinc2017_windows("val", limit=12)
    out = tmp_path / "s.pth"
    distill(models_dir / "teacher_ensemble.json", out, train, val, cache=tmp_path,
            train_cfg=TrainConfig(epochs=1, batch_size=16, samples_per_epoch=32, out_dir=str(tmp_path / "run"), threads=2))
    teacher = read_checkpoint(out)["meta"]["teacher"]
    assert teacher["width"] == "ensemble of 2" and teacher["name"] == "teacher_ensemble.json"
    assert teacher["sha256"] == load_teacher(models_dir / "teacher_ensemble.json").sha256


def test_compare_scores_members_and_ensemble_on_real_validation_records(models_dir, cinc, tmp_path, capsys):
    from distill.compare import main

    paths = [str(models_dir / n) for n in ("reference_teacher.pth", "reference_teacher_gpu.pth", "teacher_ensemble.json")]
    assert main([*paths, "--split", "val", "--limit", "120", "--json", str(tmp_path / "c.json")]) == 0
    rows = json.loads((tmp_path / "c.json").read_text())
    assert [r["params"] for r in rows] == [888484, 888484, 2 * 888484]
    for r in rows:
        assert r["records"] == 120 and 0.5 < r["mean_auroc"] <= 1 and 0 < r["challenge_f1"] <= 1
    assert "| teacher_ensemble.json | 1,776,968 |" in capsys.readouterr().out


def test_compare_scores_student_checkpoints_beside_a_teacher(models_dir, cinc, tmp_path, capsys):
    """Students are scored like teachers, by their own label table (so a seed sweep is chosen on val)."""
    from distill.compare import main

    paths = [str(models_dir / n) for n in ("student.pth", "student_qat.pth", "reference_teacher.pth")]
    assert main([*paths, "--split", "val", "--limit", "60", "--json", str(tmp_path / "c.json")]) == 0
    rows = json.loads((tmp_path / "c.json").read_text())
    assert [r["params"] for r in rows] == [278276, 278276, 888484]
    assert all(set(r["auroc"]) == {"NORMAL SINUS RHYTHM", "ATRIAL FIBRILLATION", "OTHER RHYTHM", "NOISE"} for r in rows)
    assert rows[0]["auroc"] != rows[1]["auroc"]  # QAT changed the weights
    assert "| student_qat.pth | 278,276 |" in capsys.readouterr().out


def test_compare_scores_models_by_a_record_rule_fitted_on_their_own_outputs(models_dir, cinc, tmp_path, capsys):
    """--record-rule: each softmax model gets a rule fitted on its outputs for the training records, chosen on
    validation, scored on the split; the score is a real one (AF, N, O records decided) and printed."""
    from distill.compare import main

    paths = [str(models_dir / n) for n in ("student_qat.pth", "reference_teacher.pth")]
    assert main([*paths, "--split", "test", "--limit", "150", "--record-rule", "--json", str(tmp_path / "c.json")]) == 0
    rows = json.loads((tmp_path / "c.json").read_text())
    for r in rows:
        assert 0.5 < r["challenge_f1_rule"] <= 1 and r["records"] == 150
    out = capsys.readouterr().out
    assert "Challenge F1, record rule |" in out and out.count(f"{rows[0]['challenge_f1_rule']:.3f} |") >= 1


def test_compare_names_rows_by_path_where_file_names_repeat():
    from distill.compare import row_names

    assert row_names(["runs/s0/student.pth", "runs/s1/student.pth", "models/student_qat.pth"]) == \
        ["runs/s0/student.pth", "runs/s1/student.pth", "student_qat.pth"]
