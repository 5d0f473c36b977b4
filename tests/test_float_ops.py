"""Op ids (conv<i>, add<i>, head) name the same parts of the student in torch, ONNX and TFLite."""
import argparse

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantize.float_ops import (check_float_ops, compact, onnx_float_nodes, parse_float_ops, sort_ops,
                                tflite_float_nodes, torch_float_ops)

STUDENT_OPS = [f"conv{i}" for i in range(12)] + [f"add{i}" for i in range(5)] + ["head"]


def test_the_committed_student_has_the_same_op_ids_in_torch_onnx_and_tflite(models_dir, bundle_dir):
    """The ids the plan measures on the ONNX model select the same layers in the TFLite file: both lists
    come from the committed student, and each id covers the ops of that layer in graph order."""
    from distill.checkpoint import load_model

    student, _ = load_model(models_dir / "student_qat.pth")
    onnx_nodes = onnx_float_nodes(onnx.load(str(bundle_dir / "student_fp32.onnx")).graph)
    tfl_nodes = tflite_float_nodes((bundle_dir / "student_int8.tflite").read_bytes())
    assert torch_float_ops(student) == sort_ops(onnx_nodes) == sort_ops(tfl_nodes) == STUDENT_OPS
    # ids follow graph order: conv4 is the first residual block's convolution, add0 its Add
    assert onnx_nodes["conv4"] == ["/model/features/features.4/conv/Conv"]
    assert onnx_nodes["add0"] == ["/model/features/features.4/Add"]
    assert onnx_nodes["head"] == ["/model/ReduceMean", "/model/head/Gemm"]
    assert all("block4" in n or "conv1d" in n or "zero_padding1d" in n for n in tfl_nodes["conv4"])
    assert any("add_1/Add" in n for n in tfl_nodes["add0"])  # Keras names the first Add add_1
    assert len(tfl_nodes["head"]) == 3  # MEAN, FULLY_CONNECTED, SOFTMAX
    # each TFLite op belongs to one id: a convolution's PAD, expand RESHAPE, CONV_2D and squeeze RESHAPE
    named = [n for op in STUDENT_OPS for n in tfl_nodes[op]]
    assert len(named) == len(set(named))
    assert all(len(tfl_nodes[f"conv{i}"]) == 4 for i in range(12))
    assert all(n.endswith("/Pad") for n in (tfl_nodes[f"conv{i}"][0] for i in range(12)))


def test_op_ids_parse_sort_and_print_compactly():
    assert parse_float_ops("head, conv1,conv0 ,add2") == ["conv0", "conv1", "add2", "head"]
    assert parse_float_ops("none") == [] and parse_float_ops("AUTO") == "auto"
    assert compact(["conv0", "conv1", "conv2", "conv3", "conv7", "conv9", "add1", "head"]) == \
        "conv0-3, conv7, conv9, add1, head"
    assert compact([]) == "none"
    for bad in ("conv", "0,1", "input", "conv-1"):
        with pytest.raises(ValueError, match="not an op id"):
            parse_float_ops(bad)
    with pytest.raises(ValueError, match=r"\['add5'\] are not in student.pth, whose ops are conv0..conv11, "
                                         r"add0..add4, head"):
        check_float_ops(["conv0", "add5"], STUDENT_OPS, "student.pth")


@given(st.lists(st.sampled_from(STUDENT_OPS), max_size=20))
def test_any_choice_survives_the_command_line(ops):
    """What `--float-ops` reads back equals the choice, in canonical order, whatever the order given."""
    from ecg_edge.cli import _float_ops

    text = ",".join(ops) or "none"
    assert _float_ops(text) == sort_ops(ops) == check_float_ops(ops, STUDENT_OPS)
    assert compact(ops).count(",") <= len(set(ops))


def test_the_command_line_names_bad_op_ids():
    from ecg_edge.cli import _float_ops

    with pytest.raises(argparse.ArgumentTypeError, match="conv0,conv1,head"):
        _float_ops("0,1")
    assert np.array_equal(_float_ops("conv3,conv0"), ["conv0", "conv3"])
