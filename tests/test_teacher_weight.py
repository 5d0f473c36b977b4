"""Windows that learn from their label alone (teacher weight 0) next to distilled ones, on real windows."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from distill.checkpoint import load_model
from distill.data import WindowSet, cinc2017_windows, concat_window_sets
from distill.distiller import DistillConfig, distill, hard_loss, kd_loss
from distill.torch_dataset import predict
from distill.trainer import TrainConfig
from edge_sdk.errors import ConfigError, DatasetError, LabelError


def test_weighted_losses_equal_plain_ones_with_unit_weights_and_drop_zero_weight_windows():
    torch.manual_seed(0)
    s, t = torch.randn(8, 4), torch.randn(8, 4)
    y = torch.tensor([0, 1, -1, 3, 2, -1, 0, 1])
    ones = torch.ones(8)
    for act in ("softmax", "sigmoid"):
        assert float(kd_loss(s, t, 4.0, act, ones)) == pytest.approx(float(kd_loss(s, t, 4.0, act)), rel=1e-5)
        w = torch.tensor([1.0, 0, 1, 0, 1, 0, 1, 0])
        keep = w > 0
        expected = float(kd_loss(s[keep], t[keep], 4.0, act)) * int(keep.sum()) / 8
        assert float(kd_loss(s, t, 4.0, act, w)) == pytest.approx(expected, rel=1e-5)
        known = y >= 0
        plain = float(hard_loss(s, y, act))
        assert float(hard_loss(s, y, act, weights=ones)) == pytest.approx(plain * int(known.sum()) / 8, rel=1e-5)


def _toy(classes, label_map, y, n_records, desc, weight=None):
    y = np.asarray(y, np.int64)
    return WindowSet(np.zeros((len(y), 8), np.float16), y, np.arange(len(y)) % n_records,
                     [f"{desc}{i}" for i in range(n_records)], classes, label_map, desc, weight)


def test_concat_unites_classes_by_name_and_keeps_weights():
    a = _toy(("N", "A", "O", "~"), {"N": "NSR", "A": "AF", "O": "OTHER", "~": "NOISE"}, [0, 1, 2, 3, -1], 2, "a")
    b = _toy(("O", "N"), {"N": "NSR", "O": "OTHER"}, [0, 1, 1], 3, "b", np.zeros(3, np.float32))
    ab = concat_window_sets([a, b])
    assert ab.classes == ("N", "A", "O", "~")
    assert [ab.classes[i] if i >= 0 else None for i in ab.y] == ["N", "A", "O", "~", None, "O", "N", "N"]
    assert ab.record_idx.tolist() == [0, 1, 0, 1, 0, 2, 3, 4] and len(ab.records) == 5
    assert ab.teacher_weight.tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert concat_window_sets([a, a]).teacher_weight is None
    clash = _toy(("N",), {"N": "AF"}, [0], 1, "c")
    with pytest.raises(LabelError, match="maps to"):
        concat_window_sets([a, clash])


def test_label_only_windows_learn_their_label_against_the_teacher(tmp_path, cinc, models_dir):
    """Real Challenge windows the teacher calls normal, relabelled 'O' with teacher weight 0: after a short
    run the student leans to OTHER RHYTHM on them far more than a student distilled on the same windows."""
    train = cinc2017_windows("train", limit=80)
    normal = np.flatnonzero(train.y == train.classes.index("N"))[:120]
    relabel = replace(train, x=train.x[normal], y=np.full(len(normal), train.classes.index("O")),
                      record_idx=np.zeros(len(normal), np.int64), records=["relabelled"],
                      teacher_weight=np.zeros(len(normal), np.float32), description="relabelled windows")
    cfg = TrainConfig(epochs=2, batch_size=32, samples_per_epoch=512, lr=3e-3, threads=2)
    other = []
    for name, data in (("label", concat_window_sets([train, relabel])),
                       ("teacher", concat_window_sets([train, replace(relabel, teacher_weight=np.ones(len(normal), np.float32))]))):
        out = tmp_path / f"{name}.pth"
        distill(models_dir / "reference_teacher.pth", out, data, None, cfg=DistillConfig(),
                train_cfg=replace(cfg, out_dir=str(tmp_path / name)), cache=tmp_path)
        m, _ = load_model(out)
        other.append(torch.softmax(torch.from_numpy(predict(m, relabel.x)), 1)[:, 2].mean().item())
    assert other[0] > other[1] + 0.1
    # the teacher ran on the windows it speaks for only: the label-only run cached targets of `train` alone
    rows = sorted(np.load(f)["logits"].shape[0] for f in tmp_path.glob("teacher_targets_*.npz"))
    assert rows == [len(train), len(train) + len(normal)]


def test_unlabeled_windows_cannot_skip_the_teacher(tmp_path, cinc, models_dir):
    train = cinc2017_windows("train", limit=20)
    w = np.ones(len(train), np.float32)
    w[0] = 0
    bad = replace(train, y=np.where(np.arange(len(train)) == 0, -1, train.y), teacher_weight=w)
    with pytest.raises(DatasetError, match="need a label"):
        distill(models_dir / "reference_teacher.pth", tmp_path / "s.pth", bad, None,
                train_cfg=TrainConfig(epochs=1, out_dir=str(tmp_path / "run")), cache=tmp_path)
    assert not (tmp_path / "s.pth").exists()


def test_selection_is_checked_before_any_work(tmp_path, models_dir):
    train = WindowSet(np.zeros((4, 5000), np.float16), np.zeros(4, np.int64), np.zeros(4, np.int64), ["r"], ("N",),
                      {"N": "NORMAL SINUS RHYTHM"})
    with pytest.raises(ConfigError, match="selection must be"):
        distill(models_dir / "reference_teacher.pth", tmp_path / "s.pth", train, None,
                cfg=DistillConfig(selection="auc"), train_cfg=TrainConfig(epochs=1, out_dir=str(tmp_path / "r")))
    assert not list(tmp_path.iterdir())
