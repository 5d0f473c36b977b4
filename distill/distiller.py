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
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_sdk.bundle import sha256_of
from edge_sdk.errors import ConfigError, DatasetError
from edge_sdk.labels import LabelTable, parse_label_list

from .checkpoint import load_net1d_labeled, save_checkpoint
from .data import WindowSet, save_npz_atomic
from .ensemble import is_ensemble_file, load_teacher_ensemble
from .labels import challenge2017_f1, hard_targets, is_cinc2017_labeled
from .metrics import evaluate_by_name, flat_metrics, record_classes, scorable_outputs
from .net1d import ECGFOUNDER_1LEAD, Net1DConfig
from .student import EdgeStudent, StudentConfig, count_macs, count_params
from .trainer import (TrainConfig, check_training_outputs, class_balancing_weights, distributed_context, fit,
                      pick_device, seed_everything)
from .torch_dataset import WindowDataset, predict

#: Validation figures that can pick the best epoch: mean record-level AUROC of the scorable outputs, macro-F1
#: of the top label (softmax students), or the Challenge 2017 score (mean F1 of N, A, O; Challenge-labeled
#: validation records).
SELECTIONS = ("mean_auroc", "macro_f1", "challenge2017_f1")


@dataclass
class DistillConfig:
    temperature: float = 4.0
    alpha: float = 0.7  # weight of the soft (teacher) term; 1.0 = no hard labels
    hint_weight: float = 0.1  # feature-hint MSE weight; 0 disables
    activation: str = "auto"  # softmax | sigmoid | auto (from the teacher's label table)
    selection: str = "mean_auroc"  # validation figure that picks the best epoch: one of SELECTIONS


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, activation: str,
            weights: torch.Tensor | None = None) -> torch.Tensor:
    """Distillation loss (scaled by ``temperature**2``), averaged over the batch, or weighted per window by
    ``weights`` (batch,) (0 = this window does not learn from the teacher) and divided by the batch size."""
    t = temperature
    if weights is None:
        if activation == "softmax":
            return F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1),
                            reduction="batchmean") * t * t
        return F.binary_cross_entropy_with_logits(student_logits / t, torch.sigmoid(teacher_logits / t)) * t * t
    if activation == "softmax":
        per = F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="none").sum(1)
    else:
        per = F.binary_cross_entropy_with_logits(student_logits / t, torch.sigmoid(teacher_logits / t),
                                                 reduction="none").mean(1)
    return (per * weights).sum() / len(per) * t * t


def hard_loss(logits: torch.Tensor, y: torch.Tensor, activation: str,
              supervised: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Loss of the hard labels ``y`` (output index, -1 = none).

    softmax: cross-entropy over all outputs. sigmoid: binary cross-entropy of a one-hot target on the
    ``supervised`` outputs only (the outputs the data set's labels name; default all): a label says nothing
    about the other outputs of a multi-label model. Averaged over the labeled windows, or with ``weights``
    (batch,) weighted per window and divided by the batch size.
    """
    known = y >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    if activation == "softmax":
        if weights is None:
            return F.cross_entropy(logits[known], y[known])
        per = F.cross_entropy(logits[known], y[known], reduction="none")
    else:
        target = F.one_hot(y[known], logits.shape[1]).float()
        lo = logits[known]
        if supervised is not None:
            lo, target = lo[:, supervised], target[:, supervised]
        if weights is None:
            return F.binary_cross_entropy_with_logits(lo, target)
        per = F.binary_cross_entropy_with_logits(lo, target, reduction="none").mean(1)
    return (per * weights[known]).sum() / len(y)


def teacher_targets(teacher: nn.Module, x: np.ndarray, teacher_id: str, cache: Path | None = None,
                    device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Teacher logits (all its outputs) and pooled features for windows ``x``, computed once and cached by
    teacher and data."""
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


def _teacher_targets_where_used(teacher: "Teacher", train: WindowSet, cache: Path | None,
                                device: str) -> tuple[np.ndarray, np.ndarray]:
    """Teacher logits and features of the training windows; windows with teacher weight 0 (which learn from
    their label alone) are not run through the teacher and get zeros, which the loss never reads."""
    if train.teacher_weight is None or bool((train.teacher_weight > 0).all()):
        return teacher_targets(teacher.model, train.x, teacher.sha256, cache, device)
    used = np.flatnonzero(train.teacher_weight > 0)
    if not len(used):
        n_out = len(teacher.labels)
        return np.zeros((len(train), n_out), np.float32), np.zeros((len(train), 1), np.float32)
    lo, fe = teacher_targets(teacher.model, train.x[used], teacher.sha256, cache, device)
    logits = np.zeros((len(train), lo.shape[1]), lo.dtype)
    feats = np.zeros((len(train), fe.shape[1]), fe.dtype)
    logits[used], feats[used] = lo, fe
    return logits, feats


@dataclass
class Teacher:
    """A loaded teacher: model (eval mode), checkpoint dict, label table, sha256 and identity for cards."""

    model: nn.Module
    ckpt: dict
    labels: LabelTable
    sha256: str
    path: Path
    config: dict

    def identity(self, selected: list[str] | None = None) -> dict:
        """What a student checkpoint and a model card record about this teacher."""
        cfg = self.config
        if isinstance(cfg, dict) and "ensemble" in cfg:
            width = f"ensemble of {len(cfg['ensemble'])}"
        else:
            full = Net1DConfig.from_dict({**cfg, "n_classes": ECGFOUNDER_1LEAD.n_classes}) == ECGFOUNDER_1LEAD \
                if isinstance(cfg, dict) else False
            width = "full" if full else "reduced"
        return {"path": str(self.path), "name": self.path.name, "sha256": self.sha256, "config": cfg,
                "width": width, "params": count_params(self.model),
                "n_outputs": len(self.labels), "label_vocabulary": self.labels.vocabulary,
                "outputs_used": selected if selected is not None else self.labels.names,
                "meta": {k: v for k, v in (self.ckpt.get("meta") or {}).items() if k in ("role", "width", "val")}}


def load_teacher(path: str | Path, config: dict | None = None, label_names: Sequence[str] | str | None = None) -> Teacher:
    """Load a Net1D teacher (official ``{'state_dict'}`` or this project's format) with its label table.

    ``config`` (Net1D config dict) is needed for official checkpoints of another width than ECGFounder's;
    ``label_names`` for checkpoints that store no names and do not have ECGFounder's 150 outputs.
    A ``.json`` path is a teacher ensemble (:mod:`distill.ensemble`): its members carry their own configs
    and names, so ``config`` must be ``None`` or the ensemble description a card recorded.
    """
    if is_ensemble_file(path):
        if (config is not None and "ensemble" not in config) or label_names is not None:
            raise ConfigError(f"{Path(path).name} is a teacher ensemble: its members carry their own Net1D configs "
                              "and output names; leave out the teacher config and teacher labels")
        model, table, description = load_teacher_ensemble(path)
        return Teacher(model, {"meta": {"role": "teacher_ensemble"}}, table, sha256_of(path), Path(path), description)
    model, ckpt, table = load_net1d_labeled(path, config, label_names)
    return Teacher(model, ckpt, table, sha256_of(path), Path(path), model.config.to_dict())


def select_student_labels(teacher: LabelTable, labels: Sequence[str] | str | None) -> tuple[LabelTable, list[int]]:
    """The student's label table (``labels`` of the teacher's, in the given order; all when ``None``) and the
    teacher output index of each. Unknown names raise :class:`LabelError` with close matches."""
    if labels is None:
        table = teacher
    else:
        table = teacher.subset(parse_label_list(labels) if isinstance(labels, str) else list(labels))
    return table.with_default_thresholds(), teacher.indices(table.names)


def distill(teacher_path: str | Path, out: str | Path, train: WindowSet, val: WindowSet | None = None,
            student_config: StudentConfig | None = None, cfg: DistillConfig = DistillConfig(),
            train_cfg: TrainConfig | None = None, teacher_config: dict | None = None,
            labels: Sequence[str] | str | None = None, teacher_labels: Sequence[str] | str | None = None,
            cache: Path | None = None, unmapped: str = "error", force: bool = False, recipe: dict | None = None) -> dict:
    """Distill the teacher at ``teacher_path`` into a student written to ``out`` (checkpoint, fp32).

    ``labels``: the teacher outputs the student gets, by name, in the student's output order (default all);
    the student learns each from the teacher's matching output. ``train``/``val`` are preprocessed windows;
    labeled windows add a hard-label term through the data set's label map (a dataset label with no student
    output is a :class:`LabelError` unless ``unmapped="unlabeled"``). The best epoch is chosen by mean
    record-level AUROC over the outputs labeled ``val`` data can score, else by agreement with the teacher on
    ``val``, else by training loss (``cfg.selection`` picks macro-F1 or the Challenge 2017 score instead of
    AUROC). ``teacher_weight`` and ``sampling_weight`` of ``train`` (see :class:`~distill.data.WindowSet`) are
    honoured. The student's initial weights come from ``train_cfg.seed``. ``recipe`` (the whole
    configuration, see :mod:`distill.recipe`) is stored in the checkpoint's meta. ``out`` must not exist
    unless ``force`` or ``train_cfg.resume``.
    Returns metrics, sizes and timings.
    """
    t0 = time.time()
    if cfg.selection not in SELECTIONS:
        raise ConfigError(f"selection must be one of {', '.join(SELECTIONS)}, not {cfg.selection!r}")
    train_cfg = train_cfg or TrainConfig(out_dir=str(Path(out).parent / "distill_run"))
    check_training_outputs(out, train_cfg.out_dir, force, train_cfg.resume, "student checkpoint")
    rank, _, _ = distributed_context()
    teacher = load_teacher(teacher_path, teacher_config, teacher_labels)
    student_labels, sel = select_student_labels(teacher.labels, labels)
    activation = student_labels.activation if cfg.activation == "auto" else cfg.activation
    n_out = len(student_labels)
    sc = student_config or StudentConfig(n_classes=n_out)
    if sc.n_classes != n_out:
        sc = StudentConfig(**{**asdict(sc), "n_classes": n_out})
    y_train = np.full(len(train), -1, np.int64)
    supervised: list[int] = []
    trust = train.teacher_weight is not None
    if trust and bool(((train.teacher_weight < 1) & (train.y < 0)).any()):
        raise DatasetError(f"{train.description or 'training data'}: windows with a teacher weight below 1 need a "
                           "label (they learn from it instead of the teacher); label them or give them weight 1")
    if (cfg.alpha < 1.0 or trust) and train.labeled:
        y_train, supervised = hard_targets(train.y, train.classes, train.label_map, student_labels, unmapped,
                                           where=train.description or "training data")
    t_logits, t_feats = _teacher_targets_where_used(teacher, train, cache, train_cfg.device)
    t_logits = np.ascontiguousarray(t_logits[:, sel])
    spoken = train.teacher_weight > 0 if trust and bool((train.teacher_weight > 0).any()) else slice(None)
    feat_scale = t_feats[spoken].std(0, keepdims=True) + 1e-6  # over the windows the teacher speaks for
    t_feats_n = (t_feats / feat_scale).astype(np.float32)
    v_logits = None
    if val is not None and len(val):
        v_logits = np.ascontiguousarray(teacher_targets(teacher.model, val.x, teacher.sha256, cache,
                                                        train_cfg.device)[0][:, sel])
    identity = teacher.identity(student_labels.names)
    del teacher

    seed_everything(train_cfg.seed)  # the initial weights depend on the seed alone, not on what ran before
    student = EdgeStudent(sc)
    proj = nn.Linear(sc.channels[-1], t_feats.shape[1]) if cfg.hint_weight > 0 else None
    sup = torch.tensor(supervised, dtype=torch.long) if supervised else None

    def loss_fn(net, batch):
        w = batch["teacher_weight"] if trust else None
        if proj is not None:
            logits, f = _forward_with_features(net, batch["x"])
            hint = F.mse_loss(proj(f), batch["teacher_features"], reduction="none").mean(1)
            hint = hint.mean() if w is None else (hint * w).mean()
        else:
            logits, hint = net(batch["x"]), 0.0
        supv = sup.to(logits.device) if sup is not None else None
        if w is None:
            loss = cfg.alpha * kd_loss(logits, batch["teacher_logits"], cfg.temperature, activation)
            if cfg.alpha < 1.0:
                loss = loss + (1 - cfg.alpha) * hard_loss(logits, batch["y"], activation, supv)
        else:  # a window the teacher does not speak for learns from its label alone, at full weight
            loss = cfg.alpha * kd_loss(logits, batch["teacher_logits"], cfg.temperature, activation, w)
            loss = loss + hard_loss(logits, batch["y"], activation, supv, 1 - cfg.alpha * w)
        return loss + cfg.hint_weight * hint

    scored = v_logits is not None and val.labeled and bool(scorable_outputs(
        student_labels.names, val.classes, val.label_map, record_classes(val.y, val.record_idx, len(val.records)))[0])

    def eval_fn(m):
        if v_logits is None:
            return {}
        dev = next(m.parameters()).device
        s_logits = predict(m, val.x, device=dev)
        with torch.no_grad():
            agree = -float(kd_loss(torch.from_numpy(s_logits), torch.from_numpy(v_logits), cfg.temperature, activation))
        out = {"val_agreement": agree}
        if scored:
            probs = activate(s_logits, activation)
            r = evaluate_by_name(probs, student_labels.names, val.record_idx, val.y, val.classes, val.label_map,
                                 activation)
            out.update(flat_metrics(r, "val_"))
            if "f1" in r and is_cinc2017_labeled(val.classes, val.label_map):
                out["val_challenge2017_f1"] = challenge2017_f1(r["f1"])
        return out

    if scored and cfg.selection != "mean_auroc" and (activation != "softmax" or any(
            val.label_map.get(c, c) not in student_labels.names for c in val.classes)):
        raise ConfigError(f"selection {cfg.selection} needs a softmax student with an output for every label of "
                          "the validation data; use selection mean_auroc")
    if scored and cfg.selection == "challenge2017_f1" and not is_cinc2017_labeled(val.classes, val.label_map):
        raise ConfigError("selection challenge2017_f1 needs Challenge 2017 labels (N, A, O) on the validation "
                          "records; use selection macro_f1 or mean_auroc")
    score_key = f"val_{cfg.selection}" if scored else ("val_agreement" if v_logits is not None else "neg_train_loss")
    meta = {"role": "student", "activation": activation, "teacher": identity,
            "data": {"train": train.description, "val": val.description if val is not None else None,
                     "hard_labels": bool(supervised), "label_map": train.label_map if supervised else None,
                     "label_only_windows": int((train.teacher_weight == 0).sum()) if trust else 0,
                     "selection": score_key},
            "distill_config": asdict(cfg), "train_config": asdict(train_cfg), "recipe": recipe,
            "params": count_params(student), "macs_per_window": count_macs(student)}

    def save_best(m, metrics):
        save_checkpoint(out, m, "edge_student", sc.to_dict(), student_labels, {**meta, "val": metrics})

    extra = {"teacher_weight": train.teacher_weight.astype(np.float32)} if trust else {}
    data = WindowDataset(train.x, y_train, teacher_logits=t_logits, teacher_features=t_feats_n, **extra)
    weights = class_balancing_weights(y_train) if (y_train >= 0).any() else np.full(len(y_train), 1 / len(y_train))
    if train.sampling_weight is not None:
        weights = weights * train.sampling_weight
        weights = weights / weights.sum()
    result = fit(student, data, weights, loss_fn, eval_fn, score_key, train_cfg, save_best, extra_modules=proj)
    result.update({"params": meta["params"], "macs_per_window": meta["macs_per_window"], "labels": student_labels.names,
                   "selection": score_key, "seconds": round(time.time() - t0, 1)})
    if rank == 0:
        Path(out).with_suffix(".history.json").write_text(json.dumps(result, indent=1))
    return result


def activate(logits: np.ndarray, activation: str) -> np.ndarray:
    """Logits (n, C) -> probabilities: softmax over outputs or an independent sigmoid per output."""
    t = torch.from_numpy(np.asarray(logits, np.float32))
    return (torch.softmax(t, 1) if activation == "softmax" else torch.sigmoid(t)).numpy()


def _forward_with_features(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and pooled features through a plain or DDP-wrapped student (one forward pass)."""
    inner = net.module if hasattr(net, "module") else net
    inner.return_features = True
    try:
        return net(x)
    finally:
        inner.return_features = False
