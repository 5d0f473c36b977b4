"""Train the project's reference teacher: a Net1D (ECGFounder architecture) on Challenge 2017.

The official ECGFounder weights cannot be downloaded here, so this gives a teacher with real skill to
distill from. Its head maps to ECGFounder's vocabulary where it can (``NORMAL SINUS RHYTHM``,
``ATRIAL FIBRILLATION``) plus what the data needs (``OTHER RHYTHM``, ``NOISE``). Trained on the train part
of the project's fixed record-level split, selected on validation, never on the test part.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import save_checkpoint
from .data import SPLIT_SEED, cinc2017_windows
from .metrics import evaluate
from .net1d import Net1D, Net1DConfig
from .trainer import TrainConfig, class_balancing_weights, fit
from .windows_dataset import WindowDataset, predict

#: Output labels of the reference teacher and students, in output order (Challenge classes N, A, O, ~).
REFERENCE_LABELS = ["NORMAL SINUS RHYTHM", "ATRIAL FIBRILLATION", "OTHER RHYTHM", "NOISE"]
#: Index of each label in ECGFounder's 150-label vocabulary (tasks.txt), None where it has none.
ECGFOUNDER_VOCAB_INDEX = [1, 5, None, None]

#: Reduced-width Net1D used on CPU: the widths of the official reduced reference (16..128 filters, same
#: block counts, grouped convs, SE), with BatchNorm on (helps training from scratch), 4 outputs.
REDUCED_TEACHER = Net1DConfig(base_filters=16, filter_list=(16, 32, 32, 64, 64, 128, 128),
                              m_blocks_list=(2, 2, 2, 3, 3, 4, 4), use_bn=True, n_classes=4)
#: Full ECGFounder width with the 4-class head (for GPU runs).
FULL_TEACHER = Net1DConfig(use_bn=True, n_classes=4)


def train_reference_teacher(out: str | Path, config: Net1DConfig = REDUCED_TEACHER,
                            train_cfg: TrainConfig | None = None, limit: int | None = None) -> dict:
    """Train, select on validation, evaluate on test; writes ``out`` (fp16 checkpoint) and returns metrics."""
    train_cfg = train_cfg or TrainConfig(out_dir=str(Path(out).parent / "teacher_run"))
    t0 = time.time()
    train = cinc2017_windows("train", limit=limit)
    val = cinc2017_windows("val", limit=limit)
    model = Net1D(config)

    def loss_fn(net, batch):
        return F.cross_entropy(net(batch["x"]), batch["y"], label_smoothing=0.05)

    def eval_fn(m):
        probs = torch.softmax(torch.from_numpy(predict(m, val.x, device=next(m.parameters()).device)), 1).numpy()
        return {"val_" + k: v for k, v in evaluate(probs, val.record_idx, val.record_labels()).items() if k != "n_records"}

    def save_best(m, metrics):
        save_checkpoint(out, m, "net1d", config.to_dict(), REFERENCE_LABELS,
                        {"role": "reference_teacher", "activation": "softmax", "val": metrics,
                         "ecgfounder_vocab_index": ECGFOUNDER_VOCAB_INDEX, "split_seed": SPLIT_SEED,
                         "train_config": asdict(train_cfg), "width": "reduced" if config != FULL_TEACHER else "full"},
                        half=True)

    result = fit(model, WindowDataset(train.x, train.y), class_balancing_weights(train.y), loss_fn, eval_fn,
                 "val_af_auroc", train_cfg, save_best)
    result["train_seconds"] = round(time.time() - t0, 1)
    Path(out).with_suffix(".history.json").write_text(json.dumps(result, indent=1))
    return result
