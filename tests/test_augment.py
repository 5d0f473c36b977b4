"""Wearable augmentation (distill.augment) on real Challenge 2017 windows."""
import numpy as np
import pytest
import torch
from scipy.signal import find_peaks, welch

from distill.augment import WearableAugment
from edge_sdk.errors import ConfigError
from edge_sdk.windowing import record_windows

OFF = dict(p_time_scale=0.0, p_noise=0.0, p_wander=0.0)


@pytest.fixture(scope="module")
def windows(cinc) -> torch.Tensor:
    x = np.concatenate([record_windows(cinc.read(n).signal_mv, 300.0, 5.0)[:2] for n in ("A00001", "A00002", "A00005")])
    return torch.from_numpy(x[:, None].astype(np.float32))


def _median_rr(w: np.ndarray) -> float:
    sig = w if np.abs(w.max()) >= np.abs(w.min()) else -w
    peaks, _ = find_peaks(sig, height=2.0, distance=150)  # R peaks of a z-scored window, >= 0.3 s apart
    return float(np.median(np.diff(peaks)))


def test_all_effects_off_is_identity_up_to_zscore(windows):
    out = WearableAugment(**OFF)(windows, torch.Generator().manual_seed(0))
    assert out.shape == windows.shape
    np.testing.assert_allclose(out.numpy(), windows.numpy(), atol=1e-3)


@pytest.mark.parametrize("scale", [0.87, 1.15])
def test_time_scale_changes_heart_rate_by_the_factor(windows, scale):
    regular = windows[:4]  # A00001 and A00002: normal sinus rhythm, so the median RR interval is well defined
    out = WearableAugment(**{**OFF, "p_time_scale": 1.0}, time_scale=(scale, scale))(regular, torch.Generator().manual_seed(1))
    for before, after in zip(regular[:, 0].numpy(), out[:, 0].numpy()):
        assert _median_rr(after) == pytest.approx(_median_rr(before) / scale, rel=0.06)


def test_noise_is_in_band_and_of_the_asked_size(windows):
    aug = WearableAugment(**{**OFF, "p_noise": 1.0}, noise_std=(0.2, 0.2))
    out = aug(windows, torch.Generator().manual_seed(2)).numpy()
    added = out[:, 0] * np.sqrt(1 + 0.2 ** 2) - windows[:, 0].numpy()  # undo the re-z-scoring (approximately)
    assert np.std(added) == pytest.approx(0.2, rel=0.2)
    f, p = welch(added, fs=500.0, nperseg=1024)
    assert p[:, f > 80].sum() / p.sum() < 0.1  # moving-average low-pass: little power above the ECG band


def test_output_is_zscored_seeded_and_changes_the_window(windows):
    aug = WearableAugment()
    a = aug(windows, torch.Generator().manual_seed(3))
    b = aug(windows, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    np.testing.assert_allclose(a.mean(dim=2).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(a.std(dim=2).numpy(), 1, atol=1e-3)
    assert torch.isfinite(a).all()
    assert not torch.allclose(a, windows, atol=1e-2)


@pytest.mark.parametrize("bad", [dict(time_scale=(0.0, 1.1)), dict(noise_std=(0.3, 0.1)), dict(p_noise=1.5),
                                 dict(wander=(-0.1, 0.2))])
def test_bad_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        WearableAugment(**bad)
    with pytest.raises(ConfigError, match="unknown augmentation keys"):
        WearableAugment.from_dict({"gain": 2.0})


def test_teacher_recipe_checks_augment_before_reading_data(tmp_path):
    from distill.teacher import TeacherRecipe, run_teacher_recipe

    with pytest.raises(ConfigError, match="unknown augmentation keys"):
        run_teacher_recipe(TeacherRecipe(out=str(tmp_path / "t.pth"), augment={"gain": 2}))
    with pytest.raises(ConfigError, match="epochs is a whole number"):  # it used to "train" and write nothing
        run_teacher_recipe(TeacherRecipe(out=str(tmp_path / "t.pth"), epochs=0))
    with pytest.raises(ConfigError, match="less than one batch"):
        run_teacher_recipe(TeacherRecipe(out=str(tmp_path / "t.pth"), batch_size=64, samples_per_epoch=10))
    assert not (tmp_path / "t.pth").exists()


def test_resumed_augmented_training_draws_what_an_unbroken_run_draws(windows, tmp_path):
    """The augmentation generator is seeded per epoch: a run stopped after epoch 1 and resumed ends with the
    same weights as one that never stopped (real Challenge windows, a one-layer model, CPU)."""
    from distill.torch_dataset import WindowDataset
    from distill.trainer import TrainConfig, fit

    x = windows[:, 0].numpy()
    data = WindowDataset(x)
    weights = np.full(len(x), 1 / len(x))

    def loss_fn(net, batch):
        return net(batch["x"]).square().mean()

    def run(out, stop_after=None, resume=False):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 9), torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten())
        epochs_done = {"n": 0}

        def evaluate(m):
            epochs_done["n"] += 1
            if stop_after is not None and epochs_done["n"] > stop_after:
                raise KeyboardInterrupt("simulated stop")
            return {}

        cfg = TrainConfig(epochs=3, batch_size=2, samples_per_epoch=6, lr=1e-2, device="cpu", out_dir=str(out),
                          resume=resume, augment={})
        fit(model, data, weights, loss_fn, evaluate, "neg_train_loss", cfg, lambda m, metrics: None)
        return model

    unbroken = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", stop_after=1)
    torch.manual_seed(123)  # the global generator's state does not matter to a resumed run
    resumed = run(tmp_path / "b", resume=True)
    for p, q in zip(unbroken.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p, q)
