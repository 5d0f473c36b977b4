"""Channel equalization (quantize.equalize): the same float function, evener channel ranges, less int8 error,
on real Challenge 2017 windows; bad strengths and models are named errors."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.data import cinc2017_windows
from distill.student import EdgeStudent, StudentConfig
from edge_sdk.errors import ConfigError
from quantize.equalize import channel_ranges, equalize_channels, stage_blocks


@pytest.fixture(scope="module")
def shipped(models_dir):
    from distill.checkpoint import load_model

    return load_model(models_dir / "student_qat.pth")[0]


@pytest.fixture(scope="module")
def windows(cinc):
    return np.clip(cinc2017_windows("train", limit=40).x[:48].astype(np.float32), -8, 8)


def _logits(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)[:, None]).numpy()


def _small_student(seed: int) -> EdgeStudent:
    torch.manual_seed(seed)
    s = EdgeStudent(StudentConfig(channels=(8, 12, 16), kernels=(9, 5, 3), strides=(4, 2, 1),
                                  extra_blocks=(1, 0, 2), extra_kernels=(3, 3, 5), n_classes=3))
    for m in s.modules():  # uneven channels, as trained BatchNorms leave them
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.05, 3.0)
            m.bias.data.uniform_(-0.2, 0.2)
    return s.eval()


def test_equalized_student_computes_the_same_function(shipped, windows, cinc):
    before = {k: v.clone() for k, v in shipped.state_dict().items()}
    eq, report = equalize_channels(shipped, windows, 0.5)
    x = cinc2017_windows("test", limit=20).x.astype(np.float32)
    ref, got = _logits(shipped, x), _logits(eq, x)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    assert report["max_abs_logit_change"] <= 1e-3 and report["windows"] == len(windows)
    assert all(torch.equal(v, shipped.state_dict()[k]) for k, v in before.items())  # the original is untouched
    changed = [k for k, v in eq.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("head.") for k in changed) and any(".bn." in k or ".1." in k for k in changed)
    # the shipped student's stages: a strided stem and its residual blocks
    assert stage_blocks(shipped) == [[0], [1], [2], [3, 4], [5, 6], [7, 8, 9], [10, 11]]
    assert [s["blocks"] for s in report["stages"]] == stage_blocks(shipped)


def test_full_strength_gives_every_channel_its_stages_largest_range(shipped, windows):
    before = channel_ranges(shipped, windows)
    eq, report = equalize_channels(shipped, windows, 1.0)
    after = channel_ranges(eq, windows)
    for b, a, stage in zip(before, after, report["stages"]):
        assert float(b.max() / b.min()) == pytest.approx(stage["range_spread_before"], rel=1e-2)
        assert float(a.max() / a.min()) < 1.01 and stage["range_spread_after"] < 1.01
        assert float(a.max()) == pytest.approx(float(b.max()), rel=1e-4)  # the stage's range is kept
    assert max(s["range_spread_before"] for s in report["stages"]) > 5  # a trained network's channels are uneven
    unchanged, r0 = equalize_channels(shipped, windows, 0.0)
    assert all(torch.equal(v, shipped.state_dict()[k]) for k, v in unchanged.state_dict().items())
    assert all(s["largest_scale"] == 1.0 for s in r0["stages"])


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), strength=st.floats(0.0, 1.0))
def test_any_strength_keeps_the_function_of_any_student_shape(seed, strength):
    student = _small_student(seed)
    x = np.random.default_rng(seed).standard_normal((6, 2000)).astype(np.float32)
    eq, _ = equalize_channels(student, x, strength)
    ref = _logits(student, x)
    assert np.abs(_logits(eq, x) - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_equalization_lowers_the_int8_error_on_real_windows(tmp_path, shipped, windows, cinc):
    """The measurement behind the recipe's strength, small: first convolution float (the rest int8), 256
    calibration windows from 300 training records, the per-window max probability error on validation
    windows (its 90th percentile and mean: steadier than the max), with and without equalization."""
    from edge_sdk.inference.onnx_backend import OnnxBackend
    from quantize.onnx_export import export_onnx
    from quantize.onnx_int8 import quantize_onnx_int8

    train = cinc2017_windows("train", limit=300).x
    calib = np.clip(train[np.linspace(0, len(train) - 1, 256).astype(int)].astype(np.float32), -8, 8)
    val = cinc2017_windows("val", limit=120).x.astype(np.float32)

    def errors(model, tag):
        fp = export_onnx(model, tmp_path / f"{tag}_fp32.onnx", "softmax")
        quantize_onnx_int8(fp, tmp_path / f"{tag}.onnx", calib, input_range=8.0, float_ops=["conv0"])
        ref = OnnxBackend(fp).predict(val)
        return np.abs(OnnxBackend(tmp_path / f"{tag}.onnx").predict(val) - ref).max(1)

    plain, equalized = errors(shipped, "plain"), errors(equalize_channels(shipped, calib, 0.5)[0], "eq")
    # measured here: 90th percentile 0.0131 -> 0.0094, mean 0.0050 -> 0.0041
    assert np.quantile(equalized, 0.9) < 0.85 * np.quantile(plain, 0.9)
    assert equalized.mean() < 0.9 * plain.mean()


@pytest.mark.parametrize("bad", [-0.1, 1.5, "strong", None, True, float("nan")])
def test_bad_strength_is_a_config_error(bad, windows):
    with pytest.raises(ConfigError, match=r"channel_equalization is a strength in \[0, 1\]"):
        equalize_channels(_small_student(0), windows[:, :2000], bad)


def test_other_models_and_no_windows_are_named_errors(models_dir, windows):
    from distill.checkpoint import load_model

    teacher = load_model(models_dir / "reference_teacher.pth")[0]
    with pytest.raises(ConfigError, match="applies to the EdgeStudent architecture, not Net1D; set "
                                          "channel_equalization to 0"):
        equalize_channels(teacher, windows, 0.5)
    with pytest.raises(ValueError, match=r"needs windows \(n, L\) with n >= 1"):
        equalize_channels(_small_student(0), np.zeros((0, 2000), np.float32), 0.5)
