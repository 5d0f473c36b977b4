"""One training loop for teacher training and distillation: CPU or GPU, AMP on CUDA, DDP under ``torchrun``,
resumable checkpoints, seeds and a tqdm progress bar.

Launch several GPUs with ``torchrun --nproc_per_node=N -m distill ...``; the loop reads ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` from the environment torchrun sets and wraps the model in
``DistributedDataParallel``. Only rank 0 evaluates, saves and prints.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from edge_sdk.errors import ConfigError, EdgeSDKError

from .augment import WearableAugment


@dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    samples_per_epoch: int = 16384
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when present, else cpu
    amp: bool = True  # mixed precision on CUDA only
    num_workers: int = 0
    out_dir: str = "runs/train"
    resume: bool = False
    threads: int = 0  # CPU threads for torch (0 = torch default)
    augment: dict | None = None  # WearableAugment settings (distill.augment); None = no augmentation
    average_last: int = 0  # > 0: the result is the average of the weights after each of the last N epochs


def augmentation_seed(seed: int, rank: int, epoch: int) -> int:
    """Seed of the augmentation generator for one rank's epoch."""
    return (seed * 7919 + rank) * 100_003 + epoch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def distributed_context() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initialises the process group when run under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


class WeightedEpochSampler(Sampler[int]):
    """Draws ``num_samples`` indices with replacement by ``weights``, new draw each epoch, sharded over ranks."""

    def __init__(self, weights: np.ndarray, num_samples: int, seed: int = 0, rank: int = 0, world: int = 1):
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.num_samples = num_samples
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        idx = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g)
        return iter(idx[self.rank::self.world].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world))


def check_training_sizes(epochs: int, batch_size: int, samples_per_epoch: int) -> None:
    """:class:`~edge_sdk.errors.ConfigError` unless each is a whole number >= 1 and an epoch holds at least one
    batch (batches are full: a smaller epoch would train on nothing and write no checkpoint)."""
    for key, v in (("epochs", epochs), ("batch_size", batch_size), ("samples_per_epoch", samples_per_epoch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{key} is a whole number of at least 1, not {v!r}")
    if samples_per_epoch < batch_size:
        raise ConfigError(f"samples_per_epoch ({samples_per_epoch}) is less than one batch ({batch_size}): an "
                          "epoch would train on nothing; raise it or lower batch_size")


def check_training_outputs(out: str | Path, run_dir: str | Path, force: bool = False, resume: bool = False,
                           what: str = "checkpoint") -> None:
    """Before any data is read: a training run may write ``out``, its ``<out>.history.json`` and its run folder
    ``run_dir`` (``last.pt``, resumable state).

    A new run refuses any of them that exists (:class:`~edge_sdk.errors.OutputExistsError`) unless ``force``;
    ``resume`` needs a readable ``run_dir/last.pt`` (:class:`ConfigError` without one, unless ``force``: then
    the run starts fresh); a folder that cannot be created is an :class:`~edge_sdk.errors.OutputPathError`."""
    from edge_sdk.outputs import check_new_dir, check_new_file, check_writable_parent

    out, run_dir = Path(out), Path(run_dir)
    last = run_dir / "last.pt"
    if resume and not force:
        if not last.is_file():
            raise ConfigError(f"--resume: there is no {last} to continue from; run without --resume to start a new "
                              f"run (or add --force to start one over {out})")
        try:
            # mmap: the keys are checked here and the tensors read once, by fit() when it resumes
            state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # noqa: BLE001 - torch raises pickle, zip and runtime errors for a bad file
            raise ConfigError(f"--resume: {last} cannot be read ({type(exc).__name__}); it is not a training state "
                              "this SDK wrote: start a new run in another --out folder") from None
        if not isinstance(state, dict) or not {"trainable", "opt", "epoch", "history"} <= set(state):
            raise ConfigError(f"--resume: {last} is not a training state this SDK wrote; start a new run in another "
                              "--out folder")
    elif not resume:
        check_new_file(out, force, what)
        check_new_file(out.with_suffix(".history.json"), force, f"training history of {out.name}")
        check_new_dir(run_dir, force, "training run folder (resumable state)")
    check_writable_parent(out, what)


def running_mean(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor | int) -> torch.Tensor:
    """One step of the weight average of ``fit(average_last=N)``: the mean of the ``num_averaged`` tensors so far
    and ``current``. Integer buffers (BatchNorm's ``num_batches_tracked``, a counter that eval mode never
    reads) take the current value: torch's own multi-tensor average divides them as integers, which CUDA
    builds of torch 2.11 refuse (``RuntimeError: Integer division with addcdiv is no longer supported``)."""
    if not (averaged.is_floating_point() or averaged.is_complex()):
        return current.detach().clone()
    return averaged + (current.detach() - averaged) / (num_averaged + 1)


def class_balancing_weights(y: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Per-sample weights ~ freq(class)^-power (0.5: square-root balancing); unknown labels (-1) weigh 1/mean."""
    known = y >= 0
    counts = np.bincount(y[known]) if known.any() else np.ones(1)
    w = np.ones(len(y), np.float64)
    w[known] = counts[y[known]].astype(np.float64) ** (-power)
    w[~known] = w[known].mean() if known.any() else 1.0
    return w / w.sum()


def fit(model: nn.Module, train_set: Dataset, sample_weights: np.ndarray,
        loss_fn: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor],
        evaluate: Callable[[nn.Module], dict[str, float]], score_key: str, cfg: TrainConfig,
        save_best: Callable[[nn.Module, dict], None], extra_modules: nn.Module | None = None) -> dict:
    """Train ``model`` with AdamW + one-cycle cosine LR; keep the epoch with the best ``evaluate()[score_key]``,
    or with ``cfg.average_last`` = N > 0 the average of the weights (BatchNorm statistics included) after each
    of the last N epochs: one model instead of a choice among epochs whose validation figures move by noise.
    The average is evaluated and saved after the last epoch; its metrics are the history's last entry
    (``"epoch": "average of N"``).

    ``loss_fn(model, batch)`` gets the (DDP-wrapped) model and a dict batch on the device. ``extra_modules``
    (e.g. a feature-hint projection) are trained alongside. ``cfg.augment`` turns on
    :class:`~distill.augment.WearableAugment` on each training batch (on the training device, its generator
    seeded per epoch and rank, so a resumed run draws the same augmentations as an unbroken one).
    ``save_best(model, metrics)`` is called on rank 0.
    Returns the history: one dict of metrics per epoch. ``cfg.resume`` continues from ``out_dir/last.pt``.
    """
    rank, world, local_rank = distributed_context()
    device = pick_device(cfg.device, local_rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + rank)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.to(device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed window length: let cuDNN pick its kernels
    trainable = nn.ModuleList([model] + ([extra_modules.to(device)] if extra_modules is not None else []))
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    sampler = WeightedEpochSampler(sample_weights, cfg.samples_per_epoch, cfg.seed, rank, world)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        drop_last=True, pin_memory=device.type == "cuda")
    opt = torch.optim.AdamW(trainable.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1), pct_start=0.15)
    augment = WearableAugment.from_dict(cfg.augment) if cfg.augment is not None else None
    aug_gen = torch.Generator(device=device) if augment else None
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: list[dict] = []
    best = -math.inf
    start_epoch = 0
    last = out / "last.pt"
    if not 0 <= cfg.average_last <= cfg.epochs:
        raise EdgeSDKError(f"average_last must be between 0 and epochs ({cfg.epochs}), not {cfg.average_last}")
    averaged = (torch.optim.swa_utils.AveragedModel(model, avg_fn=running_mean, use_buffers=True)
                if cfg.average_last else None)
    if cfg.resume and last.exists():
        state = torch.load(last, map_location=device, weights_only=True)
        saved = state.get("config", {})
        if (saved.get("epochs"), saved.get("samples_per_epoch"), saved.get("batch_size"),
                saved.get("average_last", 0)) != (cfg.epochs, cfg.samples_per_epoch, cfg.batch_size, cfg.average_last):
            raise EdgeSDKError(f"{last} was written by a run with epochs={saved.get('epochs')}, "
                               f"samples_per_epoch={saved.get('samples_per_epoch')}, "
                               f"batch_size={saved.get('batch_size')}, average_last={saved.get('average_last', 0)}; "
                               "resume with the same values (the learning-rate schedule and the average depend on "
                               "them) or start a new run in another --out folder")
        try:
            trainable.load_state_dict(state["trainable"])
        except RuntimeError as exc:  # another architecture or label set: size mismatches
            raise EdgeSDKError(f"{last} was written for another model ({str(exc).splitlines()[0]}...); resume with the "
                               "recipe that wrote it, or start a new run in another --out folder") from None
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        if averaged is not None and state.get("averaged") is not None:
            averaged.load_state_dict(state["averaged"])
        if rank == 0:
            print(f"resumed from {last} at epoch {start_epoch}")
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        if aug_gen is not None:  # seeded per (seed, rank, epoch): a resumed run draws what an unbroken one does
            aug_gen.manual_seed(augmentation_seed(cfg.seed, rank, epoch))
        trainable.train()
        t0 = time.time()
        total, n = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=rank != 0, unit="batch", leave=False)
        for batch in bar:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            if augment is not None:
                batch["x"] = augment(batch["x"], aug_gen)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                loss = loss_fn(net, batch)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            total += float(loss.detach())
            n += 1
            bar.set_postfix(loss=f"{total / n:.4f}")
        if rank == 0:
            model.eval()
            metrics = {"epoch": epoch + 1, "loss": total / max(n, 1), "seconds": round(time.time() - t0, 1),
                       **evaluate(model)}
            if score_key == "neg_train_loss":  # no validation data: keep the epoch that fits training best
                metrics[score_key] = -metrics["loss"]
            history.append(metrics)
            improved = metrics[score_key] > best
            if improved:
                best = metrics[score_key]
                save_best(model, metrics)
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
                  + ("  *best*" if improved else ""), flush=True)
            if averaged is not None and epoch >= cfg.epochs - cfg.average_last:
                averaged.update_parameters(model)
            torch.save({"trainable": trainable.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "scaler": scaler.state_dict(), "epoch": epoch, "best": best, "history": history,
                        "config": asdict(cfg), "averaged": averaged.state_dict() if averaged is not None else None},
                       last)
        if world > 1:
            dist.barrier()
    if averaged is not None and rank == 0:  # also when a finished run is resumed: last.pt holds the average so far
        mean_model = averaged.module.eval()
        metrics = {"epoch": f"average of {cfg.average_last}", **evaluate(mean_model)}
        if score_key == "neg_train_loss":
            metrics[score_key] = history[-1][score_key]  # no validation data: the last epoch's figure
        history.append(metrics)
        best = metrics[score_key]
        save_best(mean_model, metrics)
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
              + "  *saved*", flush=True)
    if world > 1:
        dist.destroy_process_group()
    return {"history": history, "best": best}
