"""Distillation on real Challenge 2017 windows, from the committed reference teacher and an official-format one."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from distill.checkpoint import load_model
from distill.data import WindowSet, cinc2017_windows
from distill.distiller import DistillConfig, distill, kd_loss
from distill.student import EdgeStudent, StudentConfig, count_macs, count_params
from distill.trainer import TrainConfig
from edge_sdk.errors import EdgeSDKError


def test_default_student_budget_and_int8_friendly_layers():
    s = EdgeStudent(StudentConfig())
    assert count_params(s) <= 300_000 and count_macs(s) <= 20_000_000
    kinds = {type(m).__name__ for m in s.modules()}
    assert kinds <= {"EdgeStudent", "Sequential", "ConvBNReLU", "ResidualConv", "Conv1d", "BatchNorm1d", "ReLU",
                     "Dropout", "Linear"}
    mods = list(s.modules())
    for i, m in enumerate(mods):  # every BatchNorm directly follows a bias-free conv: foldable
        if isinstance(m, nn.BatchNorm1d):
            assert isinstance(mods[i - 1], nn.Conv1d) and mods[i - 1].bias is None


def test_kd_loss_is_zero_only_for_matching_outputs():
    t = torch.randn(8, 4)
    assert float(kd_loss(t, t, 4.0, "softmax")) == pytest.approx(0, abs=1e-6)
    assert float(kd_loss(t.flip(1), t, 4.0, "softmax")) > 0.01
    same = float(kd_loss(t, t, 2.0, "sigmoid"))
    assert float(kd_loss(-t, t, 2.0, "sigmoid")) > same


@pytest.fixture(scope="module")
def small_sets(cinc):
    return cinc2017_windows("train", limit=60), cinc2017_windows("val", limit=40)


def test_same_recipe_same_student_whatever_ran_before(tmp_path, small_sets, models_dir):
    """The student's initial weights come from the recipe's seed, not from the global generator's state after
    data loading: two runs after differently scrambled global generators write identical weights."""
    train, val = small_sets
    weights = []
    for run, scramble in enumerate((1, 2)):
        torch.manual_seed(scramble)
        np.random.seed(scramble)
        cfg = TrainConfig(epochs=1, batch_size=32, samples_per_epoch=64, out_dir=str(tmp_path / f"run{run}"))
        distill(models_dir / "reference_teacher.pth", tmp_path / f"s{run}.pth", train, val, cfg=DistillConfig(),
                train_cfg=cfg)
        weights.append(load_model(tmp_path / f"s{run}.pth")[0].state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_distill_from_reference_teacher_learns_and_resumes(tmp_path, small_sets, models_dir, monkeypatch):
    train, val = small_sets
    cfg = TrainConfig(epochs=3, batch_size=32, samples_per_epoch=256, lr=3e-3, out_dir=str(tmp_path / "run"))
    import distill.distiller as d

    calls = {"n": 0}
    real_evaluate = d.evaluate_by_name

    def crash_on_third_epoch(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash during epoch 3")
        return real_evaluate(*args)

    monkeypatch.setattr(d, "evaluate_by_name", crash_on_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        distill(models_dir / "reference_teacher.pth", tmp_path / "s.pth", train, val, cfg=DistillConfig(), train_cfg=cfg)
    monkeypatch.setattr(d, "evaluate_by_name", real_evaluate)
    model, ckpt = load_model(tmp_path / "s.pth")  # best of the two finished epochs
    assert ckpt["meta"]["teacher"]["sha256"] and ckpt["labels"][1]["name"] == "ATRIAL FIBRILLATION"
    assert [l["vocab_index"] for l in ckpt["labels"]] == [1, 5, None, None]
    assert model(torch.zeros(1, 1, 5000)).shape == (1, 4)
    cfg.resume = True
    r = distill(models_dir / "reference_teacher.pth", tmp_path / "s.pth", train, val, cfg=DistillConfig(), train_cfg=cfg)
    h = r["history"]
    assert [e["epoch"] for e in h] == [1, 2, 3] and h[2]["loss"] < h[0]["loss"]
    assert {"val_auroc/ATRIAL FIBRILLATION", "val_mean_auroc", "val_macro_f1", "val_agreement",
            "val_challenge2017_f1"} <= set(h[0])
    assert all(0 <= e["val_challenge2017_f1"] <= 1 for e in h)  # Challenge 2017 validation records: N, A, O scored
    cfg.epochs = 5
    with pytest.raises(EdgeSDKError, match="resume with the same values"):
        distill(models_dir / "reference_teacher.pth", tmp_path / "s.pth", train, val, cfg=DistillConfig(), train_cfg=cfg)


def test_distill_official_format_teacher_on_unlabeled_windows(tmp_path, reference, small_sets):
    train, _ = small_sets
    unlabeled = WindowSet(train.x[:200], np.full(200, -1), train.record_idx[:200], train.records)
    cfg_json = json.loads((reference / "net1d_small_config.json").read_text())["config"]
    cfg = TrainConfig(epochs=1, batch_size=32, samples_per_epoch=128, out_dir=str(tmp_path / "run"))
    r = distill(reference / "net1d_small_checkpoint.pth", tmp_path / "s150.pth", unlabeled, unlabeled,
                cfg=DistillConfig(alpha=1.0), train_cfg=cfg, teacher_config=cfg_json)
    model, ckpt = load_model(tmp_path / "s150.pth")
    assert ckpt["meta"]["activation"] == "sigmoid" and model.head.out_features == 150
    assert "val_agreement" in r["history"][0] and "val_mean_auroc" not in r["history"][0]
    assert [l["name"] for l in ckpt["labels"]][:6] == ["ABNORMAL ECG", "NORMAL SINUS RHYTHM", "NORMAL ECG",
                                                      "SINUS RHYTHM", "SINUS BRADYCARDIA", "ATRIAL FIBRILLATION"]


def test_torchrun_ddp_two_processes_on_cpu(tmp_path, cinc, models_dir):
    out = tmp_path / "ddp.pth"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ecg_edge",
           "distill", "--teacher", str(models_dir / "reference_teacher.pth"), "--limit", "30", "--epochs", "1",
           "--samples-per-epoch", "128", "--batch-size", "16", "--out", str(out), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists() and "student:" in proc.stdout


def test_running_mean_averages_floats_and_keeps_integer_counters():
    """The weight average's step: a running mean for float tensors; an integer buffer takes the current value
    even when the count comes as a tensor (torch's own multi-tensor step divides integers there, which CUDA
    builds of torch 2.11 refuse: the crash a lent H100 showed with average_last)."""
    from distill.trainer import running_mean

    a, b = torch.tensor([1.0, 3.0]), torch.tensor([4.0, 0.0])
    torch.testing.assert_close(running_mean(a, b, torch.tensor(2)), torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(running_mean(a, b, 0), b)
    counter = running_mean(torch.tensor(7), torch.tensor(12), torch.tensor(3))
    assert counter.dtype == torch.int64 and int(counter) == 12


def test_average_last_writes_the_mean_of_the_last_epochs_weights(tmp_path, small_sets):
    """``average_last`` = 2: the saved model is the mean of the weights (BatchNorm statistics included) after
    the last two epochs, evaluated once more; the per-epoch choice is no longer what gets written."""
    import copy

    from distill.trainer import fit

    train, _ = small_sets
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 15, stride=8), nn.BatchNorm1d(4), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
                          nn.Flatten(), nn.Linear(4, len(train.classes)))
    data = [{"x": torch.from_numpy(train.x[i].astype(np.float32))[None], "y": torch.tensor(int(train.y[i]))}
            for i in range(len(train))]
    after_epoch, saved = [], []

    def evaluate(m):
        after_epoch.append(copy.deepcopy(m.state_dict()))
        return {"score": float(len(after_epoch) == 1)}  # the first epoch would be "best"

    def loss_fn(m, batch):
        return nn.functional.cross_entropy(m(batch["x"]), batch["y"])

    cfg = TrainConfig(epochs=3, batch_size=16, samples_per_epoch=64, out_dir=str(tmp_path / "run"), average_last=2)
    r = fit(model, data, np.full(len(data), 1 / len(data)), loss_fn, evaluate, "score", cfg,
            lambda m, metrics: saved.append((copy.deepcopy(m.state_dict()), metrics)))
    assert [e["epoch"] for e in r["history"]] == [1, 2, 3, "average of 2"] and len(after_epoch) == 4
    state, metrics = saved[-1]
    assert metrics["epoch"] == "average of 2" and r["best"] == metrics["score"]
    for k, v in state.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (after_epoch[1][k] + after_epoch[2][k]) / 2)
        else:  # BatchNorm's batch counter: the last epoch's, not an integer mean
            assert torch.equal(v, after_epoch[2][k]), k
    assert not torch.equal(state["5.weight"], after_epoch[2]["5.weight"])
    cfg.resume = True  # a finished run resumed (say, killed while saving the average) saves the same average
    fit(model, data, np.full(len(data), 1 / len(data)), loss_fn, evaluate, "score", cfg,
        lambda m, metrics: saved.append((copy.deepcopy(m.state_dict()), metrics)))
    assert all(torch.equal(saved[-1][0][k], state[k]) for k in state)
    cfg.average_last = 1
    with pytest.raises(EdgeSDKError, match="average_last=2"):
        fit(model, data, np.full(len(data), 1 / len(data)), loss_fn, evaluate, "score", cfg, lambda m, metrics: None)
    with pytest.raises(EdgeSDKError, match="average_last"):
        fit(model, data, np.full(len(data), 1 / len(data)), loss_fn, evaluate, "score",
            TrainConfig(epochs=2, average_last=3, out_dir=str(tmp_path / "bad")), lambda m, metrics: None)
