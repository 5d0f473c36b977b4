"""The input clip (quantize.activation_bounds.bound_input): on real Challenge 2017 windows the clipped student is
the same function inside the int8 input's range and clips beyond it, in torch, ONNX and TFLite alike; with the
first convolution float the clip stays float with it; and the int8 file follows its float model more closely
on windows with artefacts than the unclipped student's does."""
import numpy as np
import pytest
import torch

from distill.data import cinc2017_windows
from edge_sdk.errors import ConfigError
from quantize.activation_bounds import bound_input

from test_activation_bounds import _logits, calib, shipped, with_artefacts  # noqa: F401 (fixtures)


def test_the_clipped_student_is_the_same_inside_the_range_and_clips_beyond_it(shipped, calib):  # noqa: F811
    before = {k: v.clone() for k, v in shipped.state_dict().items()}
    clipped = bound_input(shipped, 8.0)
    assert shipped.input_bound is None and all(torch.equal(v, shipped.state_dict()[k]) for k, v in before.items())
    assert np.array_equal(_logits(clipped, calib), _logits(shipped, calib))  # calibration windows: within +-8
    x = with_artefacts(calib[:16], seed=2)
    assert np.abs(x).max() > 12
    assert np.allclose(_logits(clipped, x), _logits(shipped, np.clip(x, -8, 8)), atol=1e-5)
    assert not np.allclose(_logits(clipped, x), _logits(shipped, x), atol=1e-3)


def test_onnx_keeps_the_clip_float_with_the_first_convolution(tmp_path, shipped, calib, cinc):  # noqa: F811
    import onnx

    from edge_sdk.inference.onnx_backend import OnnxBackend
    from quantize.float_ops import onnx_float_nodes
    from quantize.onnx_export import export_onnx
    from quantize.onnx_int8 import quantize_onnx_int8

    x = with_artefacts(cinc2017_windows("val", limit=40).x[:48].astype(np.float32), seed=1)
    fp = export_onnx(bound_input(shipped, 8.0), tmp_path / "fp32.onnx", "softmax")
    nodes = onnx_float_nodes(onnx.load(str(fp)).graph)
    assert [n.split("/")[-1] for n in nodes["conv0"]] == ["Clip", "Conv"] and len(nodes["conv1"]) == 1
    np.testing.assert_allclose(OnnxBackend(fp).predict(x),
                               torch.softmax(torch.from_numpy(_logits(shipped, np.clip(x, -8, 8))), 1).numpy(),
                               atol=1e-5)
    int8 = quantize_onnx_int8(fp, tmp_path / "int8.onnx", calib, input_range=8.0, float_ops=["conv0"])
    assert any(n.endswith("Clip") for n in int8["float_nodes"])
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    first = [n for n in graph.node if "ecg" in n.input]
    assert [n.op_type for n in first] == ["Clip"]  # the input is never rounded to 8 bits

    def errors(model, tag):
        f = export_onnx(model, tmp_path / f"{tag}_fp32.onnx", "softmax")
        quantize_onnx_int8(f, tmp_path / f"{tag}.onnx", calib, input_range=8.0, float_ops=["conv0", "conv1", "head"])
        return np.abs(OnnxBackend(tmp_path / f"{tag}.onnx").predict(x) - OnnxBackend(f).predict(x)).max(1)

    plain, clipped = errors(shipped, "plain"), errors(bound_input(shipped, 8.0), "clipped")
    assert clipped.max() < plain.max() and np.median(clipped) < np.median(plain)


def test_tflite_keeps_the_clip_float_with_the_first_convolution(tmp_path, shipped, calib, cinc):  # noqa: F811
    pytest.importorskip("tensorflow")
    from edge_sdk.inference.tflite_backend import TFLiteBackend
    from quantize.tflite_int8 import convert_tflite_int8

    x = with_artefacts(cinc2017_windows("val", limit=10).x[:8].astype(np.float32), seed=3)
    clipped = bound_input(shipped, 8.0)
    convert_tflite_int8(clipped, "softmax", tmp_path / "m.tflite", calib[:64], float_ops=["conv0", "head"])
    from ai_edge_litert.interpreter import Interpreter

    ops = [o["op_name"] for o in Interpreter(model_path=str(tmp_path / "m.tflite"))._get_ops_details()]
    assert ops[:2] in (["MINIMUM", "MAXIMUM"], ["MAXIMUM", "MINIMUM"])  # float, before any QUANTIZE
    ref = torch.softmax(torch.from_numpy(_logits(clipped, x)), 1).numpy()
    assert np.abs(TFLiteBackend(tmp_path / "m.tflite").predict(x) - ref).max() < 0.1


def test_bad_ranges_other_models_and_students_without_qat_are_named_errors(models_dir, shipped, tmp_path):  # noqa: F811
    from distill.checkpoint import load_model
    from quantize.recipe import QuantizeRecipe, run_recipe

    for bad in (0, -8.0, True, "8"):
        with pytest.raises(ValueError, match="positive number of standard deviations"):
            bound_input(shipped, bad)
    with pytest.raises(ConfigError, match="the input clip applies to the EdgeStudent architecture, not Net1D"):
        bound_input(load_model(models_dir / "reference_teacher.pth")[0], 8.0)
    with pytest.raises(ConfigError, match="input_clip is true or false"):
        run_recipe(QuantizeRecipe(student=str(models_dir / "student_qat.pth"), out=str(tmp_path / "b"), input_clip="yes"))
    with pytest.raises(ConfigError, match="student.pth was not fine-tuned with QAT: set qat_epochs > 0"):
        run_recipe(QuantizeRecipe(student=str(models_dir / "student.pth"), out=str(tmp_path / "b"), input_clip=True,
                                  qat_epochs=0))
    assert not (tmp_path / "b").exists()
