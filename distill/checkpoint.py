"""Load and save Net1D / student checkpoints.

Accepted formats (always read with ``torch.load(weights_only=True)``):

* the official ECGFounder format ``{'state_dict': {...}}`` - the architecture config is then taken from
  the ``config`` argument (default: the ECGFounder single-lead config);
* this project's format ``{'state_dict', 'arch', 'config', 'labels', 'meta'}`` written by :func:`save_checkpoint`
  (``labels``: the label table as a list of dicts, see :mod:`edge_sdk.labels`);
* a bare state_dict.

A ``module.`` prefix (from DataParallel/DDP) is stripped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_sdk.bundle import sha256_of
from edge_sdk.labels import LabelTable

from .errors import CheckpointError
from .labels import checkpoint_label_table
from .net1d import ECGFOUNDER_1LEAD, Net1D, Net1DConfig


def _strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Return the checkpoint as a dict with at least ``state_dict``."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files
        raise CheckpointError(f"{p} is not a readable torch checkpoint ({e.__class__.__name__}: {e}); "
                              "expected a file saved with torch.save({'state_dict': ...})") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p} holds a {type(obj).__name__}, expected a dict with 'state_dict'")
    if "state_dict" not in obj:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            obj = {"state_dict": obj}
        else:
            raise CheckpointError(f"{p} has keys {sorted(map(str, obj))[:8]} but no 'state_dict'")
    _check_tensors(obj["state_dict"], p)
    for key, kind in (("meta", dict), ("labels", list)):
        if obj.get(key) is not None and not isinstance(obj[key], kind):
            raise CheckpointError(f"{p}: '{key}' is a {type(obj[key]).__name__}, expected a {kind.__name__} (or "
                                  f"none); the checkpoint was not written by this SDK or the official code: save "
                                  "{'state_dict': model.state_dict()} alone")
    obj["state_dict"] = _strip_prefix(obj["state_dict"])
    return obj


def _check_tensors(sd: Any, path: str | Path) -> None:
    """Every state_dict value is a tensor and every float tensor is finite (NaN weights give NaN outputs)."""
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{path}: 'state_dict' must map parameter names to tensors")
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: weights {bad[:5]} hold NaN or inf; the checkpoint is corrupt or training "
                              "diverged - use another checkpoint")


def load_net1d(path: str | Path, config: Net1DConfig | dict | None = None) -> tuple[Net1D, dict[str, Any]]:
    """Load a Net1D teacher with ``strict=True``; returns ``(model in eval mode, checkpoint dict)``.

    ``config`` overrides the one stored in the checkpoint; official checkpoints store none, so the
    ECGFounder single-lead config is assumed unless given.
    """
    ckpt = read_checkpoint(path)
    if ckpt.get("arch", "net1d") != "net1d":
        raise CheckpointError(f"{path} holds a {ckpt['arch']!r} model, not a Net1D; use load_model instead")
    if config is None:
        config = ckpt.get("config") or ECGFOUNDER_1LEAD
    try:
        if isinstance(config, dict):
            config = Net1DConfig.from_dict(config)
        if not isinstance(config, Net1DConfig):
            raise TypeError(f"expected a dict, got {type(config).__name__}")
        model = Net1D(config)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as e:
        raise CheckpointError(f"Net1D config for {path} is not usable ({e.__class__.__name__}: {e}); pass the "
                              "config the checkpoint was trained with (--teacher-config JSON)") from e
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not match the Net1D config {config.to_dict()}: {str(e)[:600]}; "
                              "pass the config the checkpoint was trained with (--teacher-config JSON)") from e
    model.eval()
    return model, ckpt


def load_net1d_labeled(path: str | Path, config: Net1DConfig | dict | None = None,
                       label_names=None) -> tuple[Net1D, dict[str, Any], LabelTable]:
    """:func:`load_net1d` plus the checkpoint's label table (:func:`distill.labels.checkpoint_label_table`;
    ``label_names`` for checkpoints that store none)."""
    model, ckpt = load_net1d(path, config)
    return model, ckpt, checkpoint_label_table(ckpt, model.config.n_classes, label_names,
                                               where=f"teacher {Path(path).name}")


def read_net1d_config(path: str | Path) -> dict:
    """A Net1D config from a JSON file: the config object itself or ``{"config": {...}}`` (as the official
    ``net1d_small_config.json``). :class:`CheckpointError` when it is not a readable JSON object."""
    try:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"Net1D config {path}: not a readable JSON file ({e})") from e
    if isinstance(cfg, dict) and "config" in cfg:
        cfg = cfg["config"]
    if not isinstance(cfg, dict):
        raise CheckpointError(f"Net1D config {path} holds a {type(cfg).__name__}, expected a JSON object")
    return cfg


def find_recorded_checkpoint(recorded: list[str | None], sha256: str | None,
                             search_dirs: list[Path]) -> Path | None:
    """The checkpoint a student or card recorded by path/name, if it is found as given or under one of
    ``search_dirs`` with the recorded ``sha256`` (any file of that name when none was recorded)."""
    for name in recorded:
        if not name:
            continue
        for cand in [Path(name), *(d / Path(name).name for d in search_dirs)]:
            if cand.is_file() and (sha256 is None or sha256_of(cand) == sha256):
                return cand
    return None


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load any checkpoint written by :func:`save_checkpoint` (Net1D teacher or student) in eval mode."""
    ckpt = read_checkpoint(path)
    if ckpt.get("arch", "net1d") == "net1d":
        return load_net1d(path)
    return student_from_checkpoint(ckpt, path), ckpt


def student_from_checkpoint(ckpt: dict[str, Any], path: str | Path) -> nn.Module:
    """The student (eval mode) of a checkpoint dict already read by :func:`read_checkpoint` from ``path``."""
    from .student import build_student  # students live beside the teacher

    arch = ckpt.get("arch")
    try:
        model = build_student(arch, **(ckpt.get("config") or {}))
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: student config {ckpt.get('config')!r} is not usable "
                              f"({e.__class__.__name__}: {e})") from e
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit a {arch} with config {ckpt.get('config')}: {str(e)[:400]}") from e
    return model.eval()


def save_checkpoint(path: str | Path, model: nn.Module, arch: str, config: dict, labels: LabelTable,
                    meta: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Save ``{'state_dict', 'arch', 'config', 'labels', 'meta'}``; ``half`` stores float tensors as fp16.

    ``labels`` is the model's label table, stored as a list of plain dicts. Only plain types are stored so
    that ``torch.load(weights_only=True)`` reads it back.
    """
    if not isinstance(labels, LabelTable):
        raise TypeError("save_checkpoint needs a LabelTable (edge_sdk.labels), not a list of names")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
          for k, v in model.state_dict().items()}
    meta = json.loads(json.dumps(meta or {}))  # plain JSON types only
    torch.save({"state_dict": sd, "arch": arch, "config": config, "labels": labels.to_list(), "meta": meta}, p)
    return p
