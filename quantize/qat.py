"""Quantization-aware fine-tuning of an EdgeStudent, for when post-training int8 drifts too far.

The student is prepared with ``torch.ao.quantization`` FX QAT (Conv-BN-ReLU fused, fake-quantized uint8
per-tensor activations and int8 per-channel symmetric weights: the scheme ONNX Runtime's QDQ and TFLite
use), fine-tuned with the distillation loss against the teacher's cached soft targets plus a term that
keeps it close to its own float outputs, then its weights are copied back into a plain float student
(BatchNorm unfolded), which is what gets exported and quantized. The network has learnt to tolerate the
rounding and clipping of int8, so its int8 outputs stay close to its float ones.
"""
from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, QConfig, QConfigMapping
from torch.ao.quantization import default_per_channel_weight_fake_quant
from torch.ao.quantization.quantize_fx import prepare_qat_fx
from tqdm import tqdm

from edge_sdk.preprocessing import WINDOW_SAMPLES

from distill.checkpoint import load_model, save_checkpoint
from distill.distiller import hard_loss, kd_loss
from distill.labels import checkpoint_label_table
from edge_sdk.errors import LabelError
from edge_sdk.outputs import check_new_file
from distill.student import ConvBNReLU, EdgeStudent, ResidualConv
from distill.trainer import WeightedEpochSampler, class_balancing_weights, seed_everything

ACTIVATION_FQ = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                       dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False)
QAT_QCONFIG = QConfig(activation=ACTIVATION_FQ, weight=default_per_channel_weight_fake_quant)
#: The model input (z-scored ECG) is quantized on a fixed range of +-8 standard deviations: wide enough for
#: QRS complexes, narrow enough for a 0.063 step. QAT, ONNX Runtime and TFLite all use this range.
INPUT_RANGE = 8.0


def prepare_qat(student: EdgeStudent, window_samples: int = WINDOW_SAMPLES, input_range: float = INPUT_RANGE) -> nn.Module:
    """FX QAT graph of ``student`` whose input fake-quantizer is fixed to [-input_range, input_range]."""
    mapping = QConfigMapping().set_global(QAT_QCONFIG)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qat = prepare_qat_fx(copy.deepcopy(student).train(), mapping, (torch.zeros(1, 1, window_samples),))
    fq = qat.get_submodule("activation_post_process_0")  # the graph input's fake-quantizer
    fq.activation_post_process.min_val.fill_(-input_range)
    fq.activation_post_process.max_val.fill_(input_range)
    scale, zero_point = fq.calculate_qparams()
    fq.scale.resize_(scale.shape).copy_(scale)
    fq.zero_point.resize_(zero_point.shape).copy_(zero_point)
    fq.disable_observer()
    return qat


def _set_fake_quant(qat: nn.Module, enabled: bool) -> None:
    qat.apply(torch.ao.quantization.enable_fake_quant if enabled else torch.ao.quantization.disable_fake_quant)


@torch.no_grad()
def copy_back(qat: nn.Module, student: EdgeStudent) -> EdgeStudent:
    """Copy fine-tuned weights from the fused QAT graph into a plain float student."""
    for i, block in enumerate(student.features):
        if isinstance(block, ConvBNReLU):
            q = qat.get_submodule(f"features.{i}.0")
            block[0].weight.copy_(q.weight)
            block[1].load_state_dict(q.bn.state_dict())
        elif isinstance(block, ResidualConv):
            q = qat.get_submodule(f"features.{i}.conv")
            block.conv.weight.copy_(q.weight)
            block.bn.load_state_dict(q.bn.state_dict())
        else:
            raise TypeError(f"QAT copy-back does not know {type(block).__name__}")
    student.head.weight.copy_(qat.get_submodule("head").weight)
    student.head.bias.copy_(qat.get_submodule("head").bias)
    return student


def qat_finetune(student_path: str | Path, out: str | Path, x: np.ndarray, y: np.ndarray | None,
                 teacher_logits: np.ndarray | None, epochs: int = 4, samples_per_epoch: int = 8192, batch_size: int = 64,
                 lr: float = 3e-4, temperature: float = 4.0, alpha: float = 0.7, self_weight: float = 1.0,
                 seed: int = 0, threads: int | None = None, supervised: list[int] | None = None,
                 force: bool = False) -> dict:
    """Fine-tune with fake quantization; write the float student to ``out`` and return a summary.

    ``x``: training windows (n, L) z-scored at 500 Hz; ``y``: hard labels as student output indices (-1 or
    ``None`` = none; ``supervised``: the outputs they speak about, for sigmoid students);
    ``teacher_logits``: (n, n_student_outputs) cached teacher outputs for the student's labels, or ``None``
    to distil from the starting student's own float outputs. Loss = KD(targets) (+ hard labels) +
    ``self_weight`` * KL between fake-quantized and float outputs. BatchNorm statistics are frozen; observers
    are frozen for the last epoch. ``out`` is refused if it exists unless ``force``.
    """
    t0 = time.time()
    check_new_file(out, force, "QAT student checkpoint")
    seed_everything(seed)
    if threads:
        torch.set_num_threads(threads)
    student, ckpt = load_model(student_path)
    table = checkpoint_label_table(ckpt, student.head.out_features, where=f"student {Path(student_path).name}")
    activation = table.activation
    targets = "teacher"
    if teacher_logits is None:
        from distill.torch_dataset import predict

        teacher_logits, targets = predict(student, x), "student (float, before QAT)"
    if teacher_logits.shape != (len(x), len(table)):
        raise LabelError(f"teacher targets have shape {teacher_logits.shape}, expected {(len(x), len(table))}: "
                         "select the teacher outputs of the student's labels")
    y = np.full(len(x), -1, np.int64) if y is None else np.asarray(y, np.int64)
    sup = torch.tensor(supervised, dtype=torch.long) if supervised else None
    qat = prepare_qat(student)
    qat.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
    opt = torch.optim.AdamW(qat.parameters(), lr=lr, weight_decay=1e-5)
    sampler = WeightedEpochSampler(class_balancing_weights(y), samples_per_epoch, seed)
    history = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        qat.train()
        if epoch == epochs - 1 and epochs > 1:
            qat.apply(torch.ao.quantization.disable_observer)
        idx = np.fromiter(iter(sampler), dtype=np.int64)
        total = 0.0
        bar = tqdm(range(0, len(idx) - batch_size + 1, batch_size), desc=f"QAT epoch {epoch + 1}/{epochs}",
                   unit="batch", leave=False)
        for s in bar:
            b = np.sort(idx[s:s + batch_size])
            xb = torch.from_numpy(x[b].astype(np.float32))[:, None]
            yb = torch.from_numpy(y[b])
            t_logits = torch.from_numpy(teacher_logits[b])
            outputs = []
            for fake_quant in (True, False):
                _set_fake_quant(qat, fake_quant)
                outputs.append(qat(xb))
            _set_fake_quant(qat, True)
            loss = 0.0
            for logits in outputs:
                task = alpha * kd_loss(logits, t_logits, temperature, activation)
                if alpha < 1 and bool((yb >= 0).any()):
                    task = task + (1 - alpha) * hard_loss(logits, yb, activation, sup)
                loss = loss + 0.5 * task
            loss = loss + self_weight * kd_loss(outputs[0], outputs[1], 1.0, activation)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            bar.set_postfix(loss=f"{total / (s // batch_size + 1):.4f}")
        history.append({"epoch": epoch + 1, "loss": total / max(1, len(idx) // batch_size)})
    student = copy_back(qat, student).eval()
    meta = dict(ckpt.get("meta") or {})
    meta["qat"] = {"epochs": epochs, "input_range": INPUT_RANGE, "targets": targets, "samples_per_epoch": samples_per_epoch, "lr": lr, "self_weight": self_weight,
                   "from_checkpoint": Path(student_path).name, "history": history,
                   "seconds": round(time.time() - t0, 1)}
    save_checkpoint(out, student, ckpt.get("arch", "edge_student"), ckpt.get("config") or {}, table, meta)
    return meta["qat"]
