"""The parts of a model that an int8 file can keep in float, named the same way for every runtime.

An op id names one part of the graph, counted in graph order:

* ``conv<i>``: the i-th convolution (``conv0`` = the first), with its BatchNorm (folded) and ReLU;
* ``add<i>``: the i-th Add (in the student: the residual shortcut, with the ReLU after it);
* ``head``: the global average pooling and the final linear layer (the output activation is always float).

:func:`torch_float_ops`, :func:`onnx_float_nodes` and :func:`tflite_float_nodes` list the ids of one model in
its torch, ONNX and TFLite form; for the student the three agree (``tests/test_float_ops.py``), so a choice
made by measuring the ONNX model (:mod:`quantize.precision_plan`) means the same layers in the TFLite file.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

HEAD = "head"
#: How tables and READMEs explain the op ids to a reader.
LEGEND = "convN: the N-th convolution, conv0 = the first; addN: the N-th residual Add; head: pooling and linear layer"
#: TFLite ops of a ReLU or of activation bounds, which belong to the convolution or Add before them.
_BOUNDS = ("RELU", "MINIMUM", "MAXIMUM")
_ID = re.compile(r"^(conv|add)(\d+)$|^head$")


def sort_ops(ops: Iterable[str]) -> list[str]:
    """Unique op ids in a stable order: convolutions, then Adds (each by index), then ``head``."""
    def key(op: str) -> tuple[int, int]:
        m = _ID.match(op)
        if not m:
            raise ValueError(f"{op!r} is not an op id (conv<i>, add<i> or head)")
        return ({"conv": 0, "add": 1}.get(m.group(1), 2), int(m.group(2) or 0))
    return sorted(set(ops), key=key)


def parse_float_ops(text: str) -> list[str] | str:
    """``"conv0,conv1,head"`` -> ``["conv0", "conv1", "head"]``; ``"none"`` -> ``[]``; ``"auto"`` -> ``"auto"``.
    Raises ValueError on anything else."""
    t = text.strip().lower()
    if t in ("none", "auto"):
        return [] if t == "none" else "auto"
    return sort_ops(s.strip() for s in t.split(",") if s.strip())


def check_float_ops(ops: Sequence[str], available: Sequence[str], where: str = "the model") -> list[str]:
    """``ops`` in canonical order when each is among ``available``; ValueError naming the valid ids otherwise."""
    ops = sort_ops(ops)
    bad = [o for o in ops if o not in available]
    if bad:
        raise ValueError(f"float ops {bad} are not in {where}, whose ops are {describe(available)}")
    return ops


def _indices(ops: Sequence[str], kind: str) -> list[int]:
    """The indices of the ``kind`` ("conv" or "add") ids among ``ops``, in their order."""
    return [int(o[len(kind):]) for o in ops if o.startswith(kind)]


def _joined(parts: list[str], ops: Sequence[str]) -> str:
    return ", ".join(parts + ([HEAD] if HEAD in ops else [])) or "none"


def describe(ops: Sequence[str]) -> str:
    """``conv0..conv11, add0..add4, head`` for a list of op ids."""
    parts = []
    for kind in ("conv", "add"):
        idx = _indices(ops, kind)
        if idx:
            parts.append(f"{kind}0..{kind}{max(idx)}" if len(idx) > 1 else f"{kind}{idx[0]}")
    return _joined(parts, ops)


def compact(ops: Sequence[str]) -> str:
    """Short text of op ids, consecutive indices as ranges: ``conv0-3, conv7, add1, head``; ``none`` if empty."""
    ops = sort_ops(ops)
    parts = []
    for kind in ("conv", "add"):
        runs: list[list[int]] = []
        for i in _indices(ops, kind):
            if runs and i == runs[-1][-1] + 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        parts += [f"{kind}{r[0]}" if len(r) == 1 else f"{kind}{r[0]}-{r[-1]}" for r in runs]
    return _joined(parts, ops)


def torch_float_ops(model) -> list[str]:
    """Op ids of an :class:`~distill.student.EdgeStudent`: its Conv1d modules, its residual blocks and the head."""
    from torch import nn

    from distill.student import ResidualConv

    convs = sum(1 for m in model.modules() if isinstance(m, nn.Conv1d))
    adds = sum(1 for m in model.modules() if isinstance(m, ResidualConv))
    return [f"conv{i}" for i in range(convs)] + [f"add{i}" for i in range(adds)] + [HEAD]


def onnx_float_nodes(graph) -> dict[str, list[str]]:
    """Op id -> names of the ONNX nodes it covers (``graph``: an ``onnx.GraphProto``). A convolution that reads
    the graph input through a ``Clip`` (the input clip of :func:`quantize.activation_bounds.bound_input`)
    covers that ``Clip`` too. ``head`` is the Gemm / MatMul feeding the output activation and the pooling
    (ReduceMean / GlobalAveragePool) before it."""
    nodes = list(graph.node)
    out: dict[str, list[str]] = {}
    for kind, op_type in (("conv", "Conv"), ("add", "Add")):
        for i, n in enumerate(n for n in nodes if n.op_type == op_type):
            out[f"{kind}{i}"] = [n.name]
    producer = {o: n for n in nodes for o in n.output}
    inputs = {i.name for i in graph.input}
    for i, conv in enumerate(n for n in nodes if n.op_type == "Conv"):
        clip = producer.get(conv.input[0])
        if clip is not None and clip.op_type == "Clip" and clip.input[0] in inputs:
            out[f"conv{i}"] = [clip.name, conv.name]  # the input clip (activation_bounds.bound_input) goes with it
    final = producer.get(graph.output[0].name)
    if final is not None and final.op_type in ("Softmax", "Sigmoid"):  # walk back from the output activation
        head, node = [], producer.get(final.input[0])
        for op_types in (("Gemm", "MatMul"), ("ReduceMean", "GlobalAveragePool")):
            if node is None or node.op_type not in op_types:
                break
            head.insert(0, node.name)
            node = producer.get(node.input[0])
        if head:
            out[HEAD] = head
    return out


def tflite_float_nodes(model: bytes) -> dict[str, list[str]]:
    """Op id -> output tensor names of the TFLite ops it covers, for the quantization debugger's
    ``denylisted_nodes``: a convolution's PAD and RESHAPE (expand) before it (and for the first one, the input
    clip's MINIMUM / MAXIMUM before those), itself, its RELU / MINIMUM /
    MAXIMUM (a ReLU or the bounds of :mod:`quantize.activation_bounds`, where not fused into it) and the
    RESHAPE (squeeze) after it; an ADD and its RELU / MINIMUM / MAXIMUM; the head's MEAN, FULLY_CONNECTED and
    SOFTMAX."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    ops = it._get_ops_details()  # the op list, as TensorFlow's own quantization debugger reads it
    names = [it._get_tensor_details(op["outputs"][0], 0)["name"] for op in ops]
    kinds = [op["op_name"] for op in ops]
    out: dict[str, list[str]] = {}
    n_conv = n_add = 0
    for j, kind in enumerate(kinds):
        if kind == "CONV_2D":
            start, end = j, j + 1
            # its own RESHAPE (expand) and PAD just before it, never the previous convolution's squeeze,
            # which directly precedes them when no QUANTIZE / DEQUANTIZE op separates the two
            for before in ("RESHAPE", "PAD"):
                if start > 0 and kinds[start - 1] == before:
                    start -= 1
            while n_conv == 0 and start > 0 and kinds[start - 1] in ("MINIMUM", "MAXIMUM"):
                start -= 1  # the input clip (quantize.activation_bounds.bound_input) goes with the first one
            while end < len(kinds) and kinds[end] in _BOUNDS:  # its ReLU / bounds, when not fused
                end += 1
            if end < len(kinds) and kinds[end] == "RESHAPE":
                end += 1
            out[f"conv{n_conv}"] = names[start:end]
            n_conv += 1
        elif kind == "ADD":
            end = j + 1
            while end < len(kinds) and kinds[end] in _BOUNDS:
                end += 1
            out[f"add{n_add}"] = names[j:end]
            n_add += 1
    head = []  # the head ends the graph: the last MEAN, then FULLY_CONNECTED, then SOFTMAX / LOGISTIC
    for wanted in (("MEAN",), ("FULLY_CONNECTED",), ("SOFTMAX", "LOGISTIC")):
        last = [j for j, kind in enumerate(kinds) if kind in wanted]
        if last and (not head or last[-1] > head[-1]):
            head.append(last[-1])
    if head:
        out[HEAD] = [names[j] for j in head]
    return out
