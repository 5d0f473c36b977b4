"""Knowledge distillation: teacher (official ECGFounder checkpoint or any Net1D) -> compact student.

Loss = ``alpha * T^2 * KD(student/T, teacher/T)`` + ``(1 - alpha) * hard-label loss`` (only on windows
with a label) + ``hint_weight * MSE(proj(student features), teacher features)``. KD is KL divergence of
softmax outputs for single-label teachers (the reference teacher) and binary cross-entropy against
sigmoid targets for multi-label teachers (ECGFounder's 150 labels). Unlabeled windows are fine: with no
labels the loss is pure distillation.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_sdk.bundle import sha256_of

from .checkpoint import load_net1d, save_checkpoint
from .data import WindowSet, save_npz_atomic
from .metrics import evaluate
from .student import EdgeStudent, StudentConfig, count_macs, count_params
from .trainer import TrainConfig, class_balancing_weights, distributed_context, fit, pick_device
from .windows_dataset import WindowDataset, predict


@dataclass
class DistillConfig:
    temperature: float = 4.0
    alpha: float = 0.7  # weight of the soft (teacher) term; 1.0 = no hard labels
    hint_weight: float = 0.1  # feature-hint MSE weight; 0 disables
    activation: str = "auto"  # softmax | sigmoid | auto (from the teacher checkpoint)


def teacher_activation(ckpt: dict) -> str:
    """softmax for this project's single-label teachers, sigmoid for ECGFounder's multi-label head."""
    return (ckpt.get("meta") or {}).get("activation", "sigmoid")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, activation: str) -> torch.Tensor:
    t = temperature
    if activation == "softmax":
        return F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1),
                        reduction="batchmean") * t * t
    return F.binary_cross_entropy_with_logits(student_logits / t, torch.sigmoid(teacher_logits / t)) * t * t


def hard_loss(logits: torch.Tensor, y: torch.Tensor, activation: str) -> torch.Tensor:
    known = y >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    if activation == "softmax":
        return F.cross_entropy(logits[known], y[known])
    target = F.one_hot(y[known], logits.shape[1]).float()
    return F.binary_cross_entropy_with_logits(logits[known], target)


def teacher_targets(teacher: nn.Module, x: np.ndarray, teacher_id: str, cache: Path | None = None,
                    device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Teacher logits and pooled features for windows ``x``, computed once and cached by teacher and data."""
    key = hashlib.sha256(teacher_id.encode() + x[:: max(1, len(x) // 64)].tobytes() + str(x.shape).encode()).hexdigest()[:16]
    path = cache / f"teacher_targets_{key}.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as z:
            return z["logits"], z["features"]
    dev = pick_device(device)
    logits, feats = predict(teacher, x, batch_size=256, device=dev, features=True, desc="teacher soft targets")
    if path is not None:
        save_npz_atomic(path, logits=logits, features=feats)
    return logits, feats


def distill(teacher_path: str | Path, out: str | Path, train: WindowSet, val: WindowSet | None = None,
            student_config: StudentConfig | None = None, cfg: DistillConfig = DistillConfig(),
            train_cfg: TrainConfig | None = None, teacher_config: dict | None = None,
            labels: list[str] | None = None, cache: Path | None = None) -> dict:
    """Distill the teacher at ``teacher_path`` into a student written to ``out`` (checkpoint, fp32).

    ``train``/``val`` are preprocessed windows (labels optional: ``y == -1`` means unlabeled). With a
    labeled 4-class ``val`` the best epoch is chosen by record-level AF AUROC, otherwise by agreement
    (negative KD loss) with the teacher on ``val``. Returns metrics, sizes and timings.
    """
    t0 = time.time()
    train_cfg = train_cfg or TrainConfig(out_dir=str(Path(out).parent / "distill_run"))
    rank, _, _ = distributed_context()
    teacher, ckpt = load_net1d(teacher_path, teacher_config)
    activation = teacher_activation(ckpt) if cfg.activation == "auto" else cfg.activation
    n_classes = teacher.config.n_classes
    labels = labels or ckpt.get("labels") or [f"class_{i}" for i in range(n_classes)]
    sc = student_config or StudentConfig(n_classes=n_classes)
    if sc.n_classes != n_classes:
        sc = StudentConfig(**{**asdict(sc), "n_classes": n_classes})
    teacher_id = sha256_of(teacher_path)
    t_logits, t_feats = teacher_targets(teacher, train.x, teacher_id, cache, train_cfg.device)
    feat_scale = t_feats.std(0, keepdims=True) + 1e-6
    t_feats_n = (t_feats / feat_scale).astype(np.float32)
    v_logits = teacher_targets(teacher, val.x, teacher_id, cache, train_cfg.device)[0] if val is not None else None
    del teacher

    student = EdgeStudent(sc)
    proj = nn.Linear(sc.channels[-1], t_feats.shape[1]) if cfg.hint_weight > 0 else None

    def loss_fn(net, batch):
        if proj is not None:
            logits, f = _forward_with_features(net, batch["x"])
            hint = F.mse_loss(proj(f), batch["teacher_features"])
        else:
            logits, hint = net(batch["x"]), 0.0
        loss = cfg.alpha * kd_loss(logits, batch["teacher_logits"], cfg.temperature, activation)
        if cfg.alpha < 1.0:
            loss = loss + (1 - cfg.alpha) * hard_loss(logits, batch["y"], activation)
        return loss + cfg.hint_weight * hint

    labeled_val = val is not None and n_classes == 4 and bool((val.y >= 0).all())

    def eval_fn(m):
        if val is None:
            return {}
        dev = next(m.parameters()).device
        s_logits = predict(m, val.x, device=dev)
        with torch.no_grad():
            agree = -float(kd_loss(torch.from_numpy(s_logits), torch.from_numpy(v_logits), cfg.temperature, activation))
        out = {"val_agreement": agree}
        if labeled_val:
            probs = torch.softmax(torch.from_numpy(s_logits), 1).numpy()
            out.update({"val_" + k: v for k, v in evaluate(probs, val.record_idx, val.record_labels()).items()
                        if k != "n_records"})
        return out

    meta = {"role": "student", "activation": activation, "teacher": {"path": Path(teacher_path).name,
            "sha256": teacher_id, "config": ckpt.get("config") or (teacher_config or "ecgfounder_1lead"),
            "meta": {k: v for k, v in (ckpt.get("meta") or {}).items() if k in ("role", "width", "val")}},
            "distill_config": asdict(cfg), "train_config": asdict(train_cfg),
            "params": count_params(student), "macs_per_window": count_macs(student)}

    def save_best(m, metrics):
        save_checkpoint(out, m, "edge_student", sc.to_dict(), labels, {**meta, "val": metrics})

    data = WindowDataset(train.x, train.y, teacher_logits=t_logits, teacher_features=t_feats_n)
    weights = class_balancing_weights(train.y) if (train.y >= 0).any() else np.full(len(train.y), 1 / len(train.y))
    result = fit(student, data, weights, loss_fn, eval_fn, "val_af_auroc" if labeled_val else "val_agreement",
                 train_cfg, save_best, extra_modules=proj)
    result.update({"params": meta["params"], "macs_per_window": meta["macs_per_window"],
                   "seconds": round(time.time() - t0, 1)})
    if rank == 0:
        Path(out).with_suffix(".history.json").write_text(json.dumps(result, indent=1))
    return result


def _forward_with_features(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and pooled features through a plain or DDP-wrapped student (one forward pass)."""
    inner = net.module if hasattr(net, "module") else net
    inner.return_features = True
    try:
        return net(x)
    finally:
        inner.return_features = False
