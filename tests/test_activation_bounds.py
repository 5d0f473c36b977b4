"""Activation bounds (quantize.activation_bounds): on real Challenge 2017 windows the bounded student is the
same function where calibration looked, bounds its activations everywhere else, and its int8 file follows it
more closely than the unbounded student's int8 file follows the unbounded one on windows with artefacts."""
import numpy as np
import pytest
import torch

from distill.data import cinc2017_windows
from edge_sdk.errors import ConfigError
from quantize.activation_bounds import activation_ranges, bound_activations, bounds_effect


@pytest.fixture(scope="module")
def shipped(models_dir):
    from distill.checkpoint import load_model

    return load_model(models_dir / "student_qat.pth")[0]


@pytest.fixture(scope="module")
def calib(cinc):
    train = cinc2017_windows("train", limit=300).x
    return np.clip(train[np.linspace(0, len(train) - 1, 256).astype(int)].astype(np.float32), -8, 8)


def with_artefacts(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Real windows with one electrode-pop artefact each: a 40-ms step of 12-20 standard deviations."""
    rng = np.random.default_rng(seed)
    out = x.copy()
    for w in out:
        at = rng.integers(500, len(w) - 520)
        w[at:at + 20] += rng.choice([-1, 1]) * rng.uniform(12, 20)
    return out


def _logits(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)[:, None]).numpy()


def test_the_bounds_are_the_calibration_ranges_and_change_nothing_there(shipped, calib):
    before = {k: v.clone() for k, v in shipped.state_dict().items()}
    bounded, report = bound_activations(shipped, calib)
    assert report["max_abs_logit_change"] == 0.0 and report["windows"] == len(calib)
    assert np.array_equal(_logits(bounded, calib), _logits(shipped, calib))
    assert all(torch.equal(v, shipped.state_dict()[k]) for k, v in before.items())  # the original is untouched
    ranges = activation_ranges(shipped, calib)
    assert [b["block"] for b in report["blocks"]] == list(range(len(shipped.features)))
    for b, r in zip(report["blocks"], ranges):
        assert b["out"] == [0.0, pytest.approx(r["out"][1], abs=1e-5)]
        assert ("branch" in b) == ("branch" in r)  # residual blocks bound their Conv-BN output too
        if "branch" in b:
            assert b["branch"] == [pytest.approx(r["branch"][0], abs=1e-5), pytest.approx(r["branch"][1], abs=1e-5)]
            assert r["branch"][0] < 0 < r["branch"][1]
    assert sum("branch" in b for b in report["blocks"]) == 5  # the shipped student's five residual blocks


def test_artefact_windows_stay_inside_the_bounds(shipped, calib, cinc):
    bounded, _ = bound_activations(shipped, calib)
    x = with_artefacts(cinc2017_windows("test", limit=20).x[:24].astype(np.float32))
    plain, inside = activation_ranges(shipped, x), activation_ranges(bounded, x)
    limits = activation_ranges(shipped, calib)
    assert any(p["out"][1] > lim["out"][1] * 1.05 for p, lim in zip(plain, limits))  # the artefacts go beyond
    for got, lim in zip(inside, limits):
        assert got["out"][1] <= lim["out"][1] + 1e-5
    branch = []  # the Conv-BN output where it meets the shortcut, after its bound
    hooks = [b.branch_bound.register_forward_hook(lambda _m, _i, out: branch.append((float(out.min()), float(out.max()))))
             for b in bounded.features if getattr(b, "branch_bound", None) is not None]
    _logits(bounded, x)
    for h in hooks:
        h.remove()
    lims = [lim["branch"] for lim in limits if "branch" in lim]
    assert len(branch) == len(lims) == 5
    assert all(lo >= lo_l - 1e-5 and hi <= hi_l + 1e-5 for (lo, hi), (lo_l, hi_l) in zip(branch, lims))
    assert any(p["branch"][1] > lim["branch"][1] or p["branch"][0] < lim["branch"][0]
               for p, lim in zip(plain, limits) if "branch" in lim)
    probs = [torch.softmax(torch.from_numpy(_logits(m, x)), 1).numpy() for m in (shipped, bounded)]
    effect = bounds_effect(*probs)
    assert effect["windows"] == len(x) and effect["windows_changed"] > 0 and effect["max_abs_prob_change"] > 0
    assert effect["top_label_same"] == (probs[0].argmax(1) == probs[1].argmax(1)).mean()
    assert bounds_effect(probs[0], probs[0]) == {"windows": len(x), "windows_changed": 0, "max_abs_prob_change": 0.0,
                                                 "top_label_same": 1.0}


def test_bounds_lower_the_int8_error_on_windows_with_artefacts(tmp_path, shipped, calib, cinc):
    """Each student's int8 file (first convolution float, the rest int8, calibrated on the same windows)
    against its own fp32 file, on real windows with artefacts added: the bounded student's int8 file clips
    nothing its float model keeps."""
    from edge_sdk.inference.onnx_backend import OnnxBackend
    from quantize.onnx_export import export_onnx
    from quantize.onnx_int8 import quantize_onnx_int8

    x = with_artefacts(cinc2017_windows("val", limit=40).x[:48].astype(np.float32), seed=1)

    def errors(model, tag):
        fp = export_onnx(model, tmp_path / f"{tag}_fp32.onnx", "softmax")
        quantize_onnx_int8(fp, tmp_path / f"{tag}.onnx", calib, input_range=8.0, float_ops=["conv0"])
        return np.abs(OnnxBackend(tmp_path / f"{tag}.onnx").predict(x) - OnnxBackend(fp).predict(x)).max(1)

    plain, bounded = errors(shipped, "plain"), errors(bound_activations(shipped, calib)[0], "bounded")
    assert np.median(bounded) < 0.7 * np.median(plain)
    assert bounded.max() < plain.max()


def test_a_block_that_is_zero_on_every_window_gets_a_valid_bound(calib):
    from distill.student import EdgeStudent, StudentConfig

    torch.manual_seed(0)
    student = EdgeStudent(StudentConfig(channels=(8, 12), kernels=(9, 5), strides=(4, 2), extra_blocks=(1, 0),
                                        extra_kernels=(3, 3), n_classes=3)).eval()
    with torch.no_grad():
        student.features[0][1].bias.fill_(-1e3)  # the first block's ReLU outputs only zeros
    bounded, report = bound_activations(student, calib[:8])
    assert report["blocks"][0]["out"][1] <= 1e-5 and report["max_abs_logit_change"] == 0.0
    assert np.array_equal(_logits(bounded, calib[:8]), _logits(student, calib[:8]))


def test_other_models_and_no_windows_are_named_errors(models_dir, calib):
    from distill.checkpoint import load_model

    teacher = load_model(models_dir / "reference_teacher.pth")[0]
    with pytest.raises(ConfigError, match="activation bounds apply to the EdgeStudent architecture, not Net1D; "
                                          "set activation_bounds to false"):
        bound_activations(teacher, calib)
    with pytest.raises(ValueError, match=r"need windows \(n, L\) with n >= 1"):
        bound_activations(load_model(models_dir / "student_qat.pth")[0], np.zeros((0, 5000), np.float32))


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_the_recipe_key_is_true_or_false(bad, models_dir, tmp_path):
    from quantize.recipe import QuantizeRecipe, run_recipe

    with pytest.raises(ConfigError, match="activation_bounds is true or false"):  # when the recipe is made
        run_recipe(QuantizeRecipe(student=str(models_dir / "student_qat.pth"), out=str(tmp_path / "b"),
                                  activation_bounds=bad))
    assert not (tmp_path / "b").exists()
