"""Train the project's reference teacher: a Net1D (ECGFounder architecture) on Challenge 2017.

The official ECGFounder weights cannot be downloaded here, so this gives a teacher with real skill to
distill from. Its head maps to ECGFounder's vocabulary where it can (``NORMAL SINUS RHYTHM``,
``ATRIAL FIBRILLATION``) plus what the data needs (``OTHER RHYTHM``, ``NOISE``). Trained on the train part
of the project's fixed record-level split, selected on validation, never on the test part.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from .augment import WearableAugment
from .checkpoint import save_checkpoint
from .data import SPLIT_SEED, cinc2017_windows
from .labels import hard_targets
from .metrics import evaluate_by_name, flat_metrics
from .net1d import Net1D, Net1DConfig
from .trainer import (TrainConfig, check_training_outputs, check_training_sizes, class_balancing_weights, fit,
                      seed_everything)
from .torch_dataset import WindowDataset, predict
from edge_sdk.labels import LabelTable

#: Outputs of the reference teacher: one per Challenge 2017 class (N, A, O, ~ through CINC2017_LABEL_MAP),
#: softmax; ECGFounder's vocabulary index where it has the label (NORMAL SINUS RHYTHM, ATRIAL FIBRILLATION).
REFERENCE_LABELS = LabelTable.from_names(["NORMAL SINUS RHYTHM", "ATRIAL FIBRILLATION", "OTHER RHYTHM", "NOISE"],
                                         "softmax")

#: Reduced-width Net1D used on CPU: the widths of the official reduced reference (16..128 filters, same
#: block counts, grouped convs, SE), with BatchNorm on (helps training from scratch), the reference outputs.
REDUCED_TEACHER = Net1DConfig(base_filters=16, filter_list=(16, 32, 32, 64, 64, 128, 128),
                              m_blocks_list=(2, 2, 2, 3, 3, 4, 4), use_bn=True,
                              n_classes=len(REFERENCE_LABELS))
#: Full ECGFounder width with the reference head (one output per REFERENCE_LABELS entry; for GPU runs).
FULL_TEACHER = Net1DConfig(use_bn=True, n_classes=len(REFERENCE_LABELS))


@dataclass
class TeacherRecipe:
    """Every choice behind the reference teacher (``configs/reference_teacher.json``; ``out`` relative to the
    file). ``width``: ``reduced`` (CPU) or ``full`` (ECGFounder width, GPU advised). ``augment``: settings of
    :class:`~distill.augment.WearableAugment` (``{}`` = its defaults; ``None`` = no augmentation)."""

    out: str = "models/reference_teacher.pth"
    width: str = "reduced"
    epochs: int = 14
    batch_size: int = 64
    lr: float = 3e-3
    samples_per_epoch: int = 12288
    device: str = "auto"
    seed: int = 0
    augment: dict | None = None

    RANGES: ClassVar[dict] = {"lr": (0, None, "> 0"), "seed": (0, None, ">= 0")}

    def __post_init__(self) -> None:
        from .recipe import check_recipe_fields

        check_recipe_fields(self)

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> "TeacherRecipe":
        from .recipe import read_recipe_file

        return read_recipe_file(cls, path, ("out",), overrides)


def teacher_run_dir(out: str | Path) -> Path:
    """The folder of a teacher run's resumable state (``last.pt``): ``teacher_run`` beside ``out``."""
    return Path(out).parent / "teacher_run"


def run_teacher_recipe(recipe: TeacherRecipe, force: bool = False, resume: bool = False, limit: int | None = None) -> dict:
    """Train the reference teacher as ``recipe`` says; the recipe is stored in the checkpoint."""
    from edge_sdk.errors import ConfigError

    if recipe.width not in ("reduced", "full"):
        raise ConfigError(f"teacher width must be reduced or full, not {recipe.width!r}")
    check_training_sizes(recipe.epochs, recipe.batch_size, recipe.samples_per_epoch)
    if recipe.augment is not None:
        WearableAugment.from_dict(recipe.augment)  # bad settings fail before any data is read
    out = Path(recipe.out)
    cfg = TrainConfig(epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                      samples_per_epoch=recipe.samples_per_epoch, device=recipe.device, seed=recipe.seed,
                      resume=resume, out_dir=str(teacher_run_dir(out)), augment=recipe.augment)
    return train_reference_teacher(out, FULL_TEACHER if recipe.width == "full" else REDUCED_TEACHER, cfg,
                                   limit=limit, force=force, recipe=asdict(recipe))


def train_reference_teacher(out: str | Path, config: Net1DConfig = REDUCED_TEACHER,
                            train_cfg: TrainConfig | None = None, limit: int | None = None, force: bool = False,
                            recipe: dict | None = None) -> dict:
    """Train, select on validation (mean record-level AUROC of the four outputs); writes ``out`` (fp16
    checkpoint, refused if it exists unless ``force`` or resuming) and returns metrics. ``recipe`` is
    stored in the checkpoint's meta."""
    train_cfg = train_cfg or TrainConfig(out_dir=str(teacher_run_dir(out)))
    check_training_outputs(out, train_cfg.out_dir, force, train_cfg.resume, "teacher checkpoint")
    t0 = time.time()
    train = cinc2017_windows("train", limit=limit)
    val = cinc2017_windows("val", limit=limit)
    seed_everything(train_cfg.seed)  # the initial weights depend on the seed alone, not on what ran before
    model = Net1D(config)
    y, _ = hard_targets(train.y, train.classes, train.label_map, REFERENCE_LABELS, where=train.description)

    def loss_fn(net, batch):
        return F.cross_entropy(net(batch["x"]), batch["y"], label_smoothing=0.05)

    def eval_fn(m):
        probs = torch.softmax(torch.from_numpy(predict(m, val.x, device=next(m.parameters()).device)), 1).numpy()
        return flat_metrics(evaluate_by_name(probs, REFERENCE_LABELS.names, val.record_idx, val.y, val.classes,
                                             val.label_map, "softmax"), "val_")

    def save_best(m, metrics):
        save_checkpoint(out, m, "net1d", config.to_dict(), REFERENCE_LABELS,
                        {"role": "reference_teacher", "activation": "softmax", "val": metrics, "split_seed": SPLIT_SEED,
                         "train_config": asdict(train_cfg), "width": "reduced" if config != FULL_TEACHER else "full",
                         "recipe": recipe},
                        half=True)

    result = fit(model, WindowDataset(train.x, y), class_balancing_weights(y), loss_fn, eval_fn,
                 "val_mean_auroc", train_cfg, save_best)
    result["train_seconds"] = round(time.time() - t0, 1)
    Path(out).with_suffix(".history.json").write_text(json.dumps(result, indent=1))
    return result
