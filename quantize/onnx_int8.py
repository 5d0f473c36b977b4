"""ONNX Runtime static int8 quantization (QDQ, per-channel weights) calibrated on real windows."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from .float_ops import check_float_ops, onnx_float_nodes
from .onnx_export import INPUT_NAME


#: ``quantize_onnx_int8(method=...)``: ONNX Runtime's calibrators by name.
CALIBRATION_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                       "percentile": CalibrationMethod.Percentile}


class WindowReader(CalibrationDataReader):
    """Feeds preprocessed windows ``(n, L)`` to the calibrator in batches of ``batch``."""

    def __init__(self, windows: np.ndarray, batch: int = 32):
        self.windows = np.asarray(windows, np.float32)
        self.batch = batch
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.windows):
            return None
        x = self.windows[self.pos:self.pos + self.batch][:, None, :]
        self.pos += self.batch
        return {INPUT_NAME: x}

    def rewind(self) -> None:
        self.pos = 0


def clip_input(windows: np.ndarray, input_range: float | None) -> np.ndarray:
    """Calibration windows ``(n, L)`` for a model whose input is quantized on [-input_range, input_range]
    (the QAT student's z-score range): clipped to it, as the int8 input clips them; unchanged for None."""
    return np.clip(windows, -input_range, input_range) if input_range else windows


def quantize_onnx_int8(fp32_path: str | Path, int8_path: str | Path, calibration_windows: np.ndarray,
                       method: str = "minmax", input_range: float | None = None,
                       float_ops: Sequence[str] = (), activation_bits: int = 8) -> dict:
    """Quantize ``fp32_path`` to ``int8_path``: QDQ, per-channel int8 weights, uint8 activations.

    The output activation (Softmax/Sigmoid) stays in float so probabilities are not rounded to 1/256.
    ``input_range``: quantize the model input on [-input_range, input_range] (the range the student was
    fine-tuned for, see :mod:`quantize.qat`) instead of its calibrated min/max. ``float_ops``: the parts
    kept in float, as op ids (``conv0``, ``add2``, ``head``: :mod:`quantize.float_ops`); with ``conv0`` among
    them the z-scored input is never rounded to 8 bits (:mod:`quantize.precision_plan` chooses them by
    measurement). ValueError for an id the model lacks.
    ``activation_bits=16``: every quantized activation of a Conv/Add/Relu at 16 bits (weights stay int8; for
    measurements such as :mod:`quantize.precision_study`: ONNX Runtime's CPU provider runs it in float).
    Returns the quantization parameters for the model card.
    """
    if activation_bits not in (8, 16):
        raise ValueError(f"activation_bits must be 8 or 16, not {activation_bits}")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        graph = onnx.load(str(pre)).graph
        extra = {}
        if input_range:
            extra["TensorQuantOverrides"] = {INPUT_NAME: [{"rmin": np.array(-input_range, np.float32), "rmax": np.array(input_range, np.float32)}]}
        exclude = [n.name for n in graph.node if n.op_type in ("Softmax", "Sigmoid") and n.output[0] == graph.output[0].name]
        available = onnx_float_nodes(graph)
        float_ops = check_float_ops(float_ops, list(available), Path(fp32_path).name)
        exclude += [n for op in float_ops for n in available[op]]
        if activation_bits == 16:
            overrides = extra.setdefault("TensorQuantOverrides", {})
            for n in graph.node:
                if n.op_type in ("Conv", "Add", "Relu") and n.name not in exclude:
                    overrides[n.output[0]] = [{"quant_type": QuantType.QUInt16}]
            extra["UseQDQContribOps"] = True
        quantize_static(str(pre), str(int8_path), WindowReader(calibration_windows), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CALIBRATION_METHODS[method], nodes_to_exclude=exclude, extra_options=extra)
    return {"format": "QDQ", "weights": "int8 symmetric per-channel",
            "activations": "uint8 per-tensor" if activation_bits == 8 else "uint16 per-tensor",
            "calibration": method, "calibration_windows": int(len(calibration_windows)),
            "float_ops": float_ops, "float_nodes": exclude, "input_range": input_range}
