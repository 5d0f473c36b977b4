"""The TFLite student is converted from a Keras mirror of the torch student: prove the two definitions equal,
block by block, on real windows, for the shipped student (as trained, channel-equalized, with activation
bounds, and with the input clip, as the bundle's files are made) and for a freshly initialised one of another shape."""
import numpy as np
import pytest
import torch

pytest.importorskip("tensorflow")

from distill.checkpoint import load_model  # noqa: E402
from distill.student import EdgeStudent, StudentConfig  # noqa: E402
from quantize.tflite_int8 import keras_student  # noqa: E402


def _torch_blocks(student, x):
    outs = []
    with torch.no_grad():
        h = torch.from_numpy(x[:, None])
        if getattr(student, "input_bound", None) is not None:
            h = student.input_bound(h)
        for block in student.features:
            h = block(h)
            outs.append(h.numpy().transpose(0, 2, 1))  # (n, C, T) -> channels-last (n, T, C)
        pooled = h.mean(2)
        outs += [pooled.numpy(), torch.softmax(student.head(pooled), 1).numpy()]
    return outs


def _keras_blocks(model, n_blocks, x):
    import tensorflow as tf

    names = [f"block{i}" for i in range(n_blocks)] + ["pool", "head"]
    probe = tf.keras.Model(model.input, [model.get_layer(n).output for n in names])
    return [[np.asarray(t) for t in probe(x[i:i + 1, :, None])] for i in range(len(x))], names


@pytest.mark.parametrize("which", ["shipped", "equalized", "bounded", "clipped", "random"])
def test_keras_mirror_equals_torch_student_block_by_block(which, models_dir, cinc):
    from distill.data import cinc2017_windows

    x = cinc2017_windows("test", limit=3).x[:4].astype(np.float32)
    if which == "clipped":  # the input clip (quantize.activation_bounds.bound_input)
        from quantize.activation_bounds import bound_input

        unclipped = load_model(models_dir / "student_qat.pth")[0].eval()
        student = bound_input(unclipped, 8.0)
        x[2, 1000:1020] -= 18.0  # an artefact beyond the clip
        assert not np.allclose(_torch_blocks(unclipped, x)[0], _torch_blocks(student, x)[0])  # the clip is at work
    elif which in ("shipped", "equalized", "bounded"):
        student, _ = load_model(models_dir / "student_qat.pth")
        if which in ("equalized", "bounded"):  # the bundle's files come from the channel-equalized student
            from quantize.equalize import equalize_channels

            calib = np.clip(cinc2017_windows("train", limit=10).x[:16].astype(np.float32), -8, 8)
            student = equalize_channels(student, calib, 0.5)[0]
        if which == "bounded":  # ... with its activations bounded (quantize.activation_bounds)
            from quantize.activation_bounds import bound_activations

            unbounded = student
            student = bound_activations(student, calib)[0]
            x[1, 2000:2020] += 15.0  # an artefact that goes beyond the bounds
            plain, inside = _torch_blocks(unbounded.eval(), x), _torch_blocks(student.eval(), x)
            assert sum(not np.allclose(a, b) for a, b in zip(plain, inside)) >= 3  # the bounds are at work
    else:
        torch.manual_seed(3)
        student = EdgeStudent(StudentConfig(channels=(8, 12, 16), kernels=(9, 5, 3), strides=(4, 2, 1),
                                            extra_blocks=(1, 0, 2), extra_kernels=(3, 3, 5), n_classes=3))
        for m in student.modules():  # non-trivial BatchNorm statistics, so folding is exercised
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
    student.eval()
    ref = _torch_blocks(student, x)
    per_window, names = _keras_blocks(keras_student(student, "softmax"), len(student.features), x)
    for j, name in enumerate(names):
        got = np.concatenate([w[j] for w in per_window])
        assert got.shape == ref[j].shape, name
        scale = max(1.0, float(np.abs(ref[j]).max()))
        assert np.abs(got - ref[j]).max() <= 1e-4 * scale, name
