"""A teacher made of several Net1D checkpoints with the same outputs: the mean of their probabilities.

An ensemble is a small JSON file next to its members (``models/teacher_ensemble.json``)::

    {"format": "ecg-edge teacher ensemble", "version": 1, "combine": "mean_probability",
     "members": [{"path": "reference_teacher.pth", "sha256": "..."}, ...]}

Member paths are relative to the file. Each member's sha256 is checked when the ensemble loads, so the
file's own sha256 identifies the whole teacher (a retrained member is an error until the file is written
again with :func:`write_teacher_ensemble`). Every path that takes a teacher checkpoint (``distill``,
``quantize``, ``bench``) takes an ensemble file too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from edge_sdk.bundle import sha256_of
from edge_sdk.errors import ConfigError, LabelError
from edge_sdk.labels import LabelTable
from edge_sdk.outputs import check_new_file

from .checkpoint import load_net1d_labeled
from .errors import CheckpointError

FORMAT = "ecg-edge teacher ensemble"
COMBINE = "mean_probability"


class TeacherEnsemble(nn.Module):
    """Members ``(batch, 1, samples) -> (batch, n_outputs)`` logits, combined as the logits of their mean
    probability (softmax: ``log(mean(softmax))``; sigmoid: ``logit(mean(sigmoid))``).
    ``forward_features`` concatenates the members' pooled features; ``head`` maps them to the combined logits."""

    def __init__(self, members: Sequence[nn.Module], activation: str):
        super().__init__()
        if activation not in ("softmax", "sigmoid"):
            raise ConfigError(f"ensemble activation must be softmax or sigmoid, not {activation!r}")
        self.members = nn.ModuleList(members)
        self.activation = activation
        self.widths = [m.dense.in_features for m in members]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.forward_features(x) for m in self.members], 1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        logits = [m.dense(f) for m, f in zip(self.members, torch.split(features, self.widths, 1))]
        stacked = torch.stack(logits).float()
        if self.activation == "softmax":
            return torch.logsumexp(torch.log_softmax(stacked, 2), 0) - torch.log(torch.tensor(float(len(logits))))
        p = torch.sigmoid(stacked).mean(0).clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def is_ensemble_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".json"


def write_teacher_ensemble(out: str | Path, members: Sequence[str | Path], force: bool = False) -> dict:
    """Write an ensemble file ``out`` naming ``members`` (Net1D checkpoints with the same label table) and
    their sha256; the members are loaded first, so a bad member writes nothing. Returns the file's content."""
    out = Path(out)
    if len(members) < 2:
        raise ConfigError("an ensemble needs at least two member checkpoints")
    check_new_file(out, force, "teacher ensemble file")
    _check_same_labels([load_net1d_labeled(m)[2] for m in members], members)
    base = out.resolve().parent
    entries = []
    for m in members:
        p = Path(m).resolve()
        try:
            rel = p.relative_to(base)
        except ValueError:
            raise ConfigError(f"member {m} must be in {base} or below it (paths in the file are relative)") from None
        entries.append({"path": rel.as_posix(), "sha256": sha256_of(p)})
    content = {"format": FORMAT, "version": 1, "combine": COMBINE, "members": entries}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    return content


def load_teacher_ensemble(path: str | Path) -> tuple[TeacherEnsemble, LabelTable, dict]:
    """Load an ensemble file: ``(model in eval mode, the members' shared label table, description)``.
    The description (``{"ensemble": [...], "combine": ...}``) lists each member's path, sha256 and config."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"teacher ensemble file {p} not found") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"teacher ensemble file {p} is not valid JSON ({e})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("members"), list):
        raise CheckpointError(f"{p} is not a teacher ensemble file (it needs \"format\": \"{FORMAT}\" and a "
                              "\"members\" list); write one with write_teacher_ensemble")
    if d.get("combine", COMBINE) != COMBINE:
        raise CheckpointError(f"{p}: combine {d.get('combine')!r} is not supported; use {COMBINE!r}")
    models, tables, described = [], [], []
    for entry in d["members"]:
        if not isinstance(entry, dict) or "path" not in entry:
            raise CheckpointError(f"{p}: each member needs a \"path\" (and its \"sha256\"), got {entry!r}")
        mp = p.parent / entry["path"]
        if not mp.is_file():
            raise CheckpointError(f"{p}: member {entry['path']} not found at {mp}")
        sha = sha256_of(mp)
        if entry.get("sha256") and entry["sha256"] != sha:
            raise CheckpointError(f"{p}: member {entry['path']} has changed since the ensemble was written (sha256 "
                                  f"{sha[:12]}... instead of {entry['sha256'][:12]}...); write the ensemble again")
        model, _, table = load_net1d_labeled(mp)
        models.append(model)
        tables.append(table)
        described.append({"path": entry["path"], "sha256": sha, "config": model.config.to_dict()})
    if len(models) < 2:
        raise CheckpointError(f"{p}: an ensemble needs at least two members")
    _check_same_labels(tables, [e["path"] for e in described])
    return TeacherEnsemble(models, tables[0].activation).eval(), tables[0], {"ensemble": described, "combine": COMBINE}


def _check_same_labels(tables: list[LabelTable], members: Sequence) -> None:
    first = tables[0]
    for t, m in zip(tables[1:], members[1:]):
        if t.names != first.names or t.activation != first.activation:
            raise LabelError(f"ensemble member {m} has outputs {t.names} ({t.activation}), the first member "
                             f"{first.names} ({first.activation}); members must share one label table")


@dataclass
class EnsembleRecipe:
    """``configs/teacher_ensemble.json``: ``{"out": ensemble file, "members": [checkpoints]}``, paths relative to
    the recipe file. :meth:`run` writes the ensemble file (see :func:`write_teacher_ensemble`)."""

    out: str = "models/teacher_ensemble.json"
    members: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.members, (list, tuple)) or len(self.members) < 2:
            raise ConfigError(f"an ensemble recipe needs a list of at least two members, got {self.members!r}")
        self.members = [str(m) for m in self.members]

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> "EnsembleRecipe":
        from .recipe import read_recipe_file

        recipe = read_recipe_file(cls, path, ("out",), overrides)
        base = Path(path).parent
        recipe.members = [str(base / m) if not Path(m).is_absolute() else m for m in recipe.members]
        return recipe

    def run(self, force: bool = False) -> dict:
        return write_teacher_ensemble(self.out, self.members, force)
