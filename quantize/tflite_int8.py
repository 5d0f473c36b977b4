"""int8 TFLite student: a Keras mirror of :class:`distill.student.EdgeStudent` with BatchNorm folded (and
the activation bounds and input clip of :mod:`quantize.activation_bounds`, where set), converted with TensorFlow's
TFLiteConverter and a representative data set of real windows.

Full-integer (int8 in and out) when every op is quantized; with ``float_ops`` (op ids such as ``conv0``,
``add1``, ``head``: :mod:`quantize.float_ops`) those parts stay float through TensorFlow's selective
quantization (the quantization debugger's ``denylisted_nodes``), and the model takes and returns float32.

TensorFlow is needed only here, at build time (the ``[train]`` extra); devices run the ``.tflite`` file with
``ai-edge-litert``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from edge_sdk.preprocessing import WINDOW_SAMPLES

from .float_ops import check_float_ops, sort_ops, tflite_float_nodes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _fold(conv: nn.Conv1d, bn: nn.BatchNorm1d) -> tuple[np.ndarray, np.ndarray]:
    """Conv + BN (eval statistics) -> Keras Conv1D kernel (k, in, out) and bias (out,), folded by torch's own
    ``fuse_conv_bn_weights`` (in float64, then float32)."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    d = torch.float64
    w, b = fuse_conv_bn_weights(conv.weight.detach().to(d), None if conv.bias is None else conv.bias.detach().to(d),
                                bn.running_mean.to(d), bn.running_var.to(d), bn.eps, bn.weight.detach().to(d),
                                bn.bias.detach().to(d))
    return (w.detach().numpy().transpose(2, 1, 0).astype(np.float32), b.detach().numpy().astype(np.float32))


def keras_student(student: nn.Module, activation: str, window_samples: int = WINDOW_SAMPLES):
    """Build the Keras mirror; input (1, window_samples, 1) channels-last, output probabilities (1, C).

    The layer ending ``student.features[i]`` is named ``block{i}``, then ``pool`` and ``head``, so a test can
    compare the two definitions block by block (``tests/test_tflite_mirror.py``)."""
    import tensorflow as tf
    from distill.student import ConvBNReLU, ResidualConv

    L = tf.keras.layers

    class Clip(L.Layer):
        """``nn.Hardtanh(lo, hi)`` of a residual block's Conv-BN output (TFLite: MINIMUM, MAXIMUM)."""

        def __init__(self, lo: float, hi: float, **kwargs):
            super().__init__(**kwargs)
            self.lo, self.hi = float(lo), float(hi)

        def call(self, t):
            return tf.keras.ops.clip(t, self.lo, self.hi)

    def relu(act: nn.Module, name: str):
        """The block's ReLU, with the upper bound of an ``nn.Hardtanh(0, hi)`` (:mod:`quantize.activation_bounds`)."""
        if isinstance(act, nn.Hardtanh):
            if act.min_val != 0.0:
                raise TypeError(f"no Keras mirror for a block output bounded below at {act.min_val}, not 0")
            return L.ReLU(max_value=float(act.max_val), name=name)
        return L.ReLU(name=name)

    inp = L.Input((window_samples, 1), batch_size=1, name="ecg")
    x = inp
    bound = getattr(student, "input_bound", None)
    if bound is not None:  # the input clip of quantize.activation_bounds.bound_input
        if not isinstance(bound, nn.Hardtanh):
            raise TypeError(f"no Keras mirror for an input bound of type {type(bound).__name__}")
        x = Clip(bound.min_val, bound.max_val, name="input_clip")(x)
    weights = []
    for i, block in enumerate(student.features):
        if isinstance(block, ConvBNReLU):
            conv, bn = block[0], block[1]
            k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
            x = L.ZeroPadding1D((p, p))(x)
            if isinstance(block[2], nn.Hardtanh):
                layer = L.Conv1D(conv.out_channels, k, strides=s, padding="valid")
                x = relu(block[2], f"block{i}")(layer(x))
            else:  # the ReLU fused into the convolution, as trained
                layer = L.Conv1D(conv.out_channels, k, strides=s, padding="valid", activation="relu", name=f"block{i}")
                x = layer(x)
            weights.append((layer, _fold(conv, bn)))
        elif isinstance(block, ResidualConv):
            k, p = block.conv.kernel_size[0], block.conv.padding[0]
            y = L.ZeroPadding1D((p, p))(x)
            layer = L.Conv1D(block.conv.out_channels, k, padding="valid")
            y = layer(y)
            weights.append((layer, _fold(block.conv, block.bn)))
            if block.branch_bound is not None:
                y = Clip(block.branch_bound.min_val, block.branch_bound.max_val)(y)
            x = relu(block.act, f"block{i}")(L.Add()([y, x]))
        else:
            raise TypeError(f"no Keras mirror for {type(block).__name__}")
    x = L.GlobalAveragePooling1D(name="pool")(x)
    dense = L.Dense(student.head.out_features, activation="softmax" if activation == "softmax" else "sigmoid",
                    name="head")
    out = dense(x)
    model = tf.keras.Model(inp, out)
    for layer, (w, b) in weights:
        layer.set_weights([w, b])
    dense.set_weights([student.head.weight.detach().numpy().T, student.head.bias.detach().numpy()])
    return model


def convert_tflite_int8(student: nn.Module, activation: str, path: str | Path, calibration_windows: np.ndarray,
                        window_samples: int = WINDOW_SAMPLES, activation_bits: int = 8,
                        float_ops: Sequence[str] = ()) -> dict:
    """Write an int8 TFLite model; return its quantization parameters.

    Without ``float_ops``: full-integer (int8 in, int8 out, int8 ops). ``float_ops``: op ids of the parts that
    stay float (the same ids as the ONNX model's, see :func:`quantize.onnx_int8.quantize_onnx_int8`); the
    model then takes and returns float32. ValueError for an id the model lacks. ``activation_bits=16``:
    TFLite's 16x8 mode instead (int16 activations, int8 weights, float input and output; reference kernels,
    for measurements such as :mod:`quantize.precision_study`)."""
    import tensorflow as tf

    model = keras_student(student.eval(), activation, window_samples)
    calib = np.asarray(calibration_windows, np.float32)

    def representative():
        for w in calib:
            yield [w.reshape(1, window_samples, 1)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    float_ops = sort_ops(float_ops)
    float_nodes: list[str] = []
    if activation_bits not in (8, 16):
        raise ValueError(f"activation_bits must be 8 or 16, not {activation_bits}")
    if activation_bits == 16 and float_ops:
        raise ValueError("float_ops applies to int8 activations (activation_bits=8) only")
    if activation_bits == 16:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        data = conv.convert()
    elif float_ops:
        debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=representative)
        available = tflite_float_nodes(debugger.calibrated_model)
        float_ops = check_float_ops(float_ops, list(available), "the TFLite student")
        float_nodes = [n for op in float_ops for n in available[op]]
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=float_nodes)
        data = debugger.get_nondebug_quantized_model()
    else:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        data = conv.convert()
    Path(path).write_bytes(data)
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    fmt = "16x8" if activation_bits == 16 else "int8, float ops" if float_ops else "full-integer"
    return {"format": fmt,
            "ops": "ACTIVATIONS_INT16_WEIGHTS_INT8" if activation_bits == 16 else
                   "TFLITE_BUILTINS (int8, float where denylisted)" if float_ops else "TFLITE_BUILTINS_INT8",
            "float_ops": float_ops, "float_nodes": float_nodes,
            **_io("input", inp), **_io("output", out), "calibration_windows": int(len(calib)),
            "converter": f"tensorflow {tf.__version__}"}


def _io(side: str, detail: dict) -> dict:
    """``{side}_dtype``, and for an integer tensor its ``{side}_scale`` and ``{side}_zero_point``."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return {f"{side}_dtype": dtype.name}
    return {f"{side}_dtype": dtype.name, f"{side}_scale": float(detail["quantization"][0]),
            f"{side}_zero_point": int(detail["quantization"][1])}
