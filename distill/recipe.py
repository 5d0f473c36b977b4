"""The distill recipe: every choice behind a student checkpoint, as a JSON file and one library call.

:class:`DistillRecipe` mirrors the options of ``ecg-edge distill``; a JSON file per shipped student lives in
``configs/`` (``configs/default_student.json``; paths in it are relative to that file). :func:`run_distill_recipe`
checks the teacher, the label choice and the output first, then loads the data and distils. The whole
recipe is stored in the student checkpoint (``meta["recipe"]``), so a checkpoint says how to rebuild it.
:func:`read_recipe_file` is the JSON reader shared with :mod:`quantize.recipe`.
"""
from __future__ import annotations

import json
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

from edge_sdk.errors import ConfigError, DatasetError

R = TypeVar("R")


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON-loaded ``value`` fits the type ``hint`` of a recipe field (bool is not a number; a float
    field takes ints; NaN and infinity are not numbers here)."""
    origin = typing.get_origin(hint)
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    if hint is list or origin is list:
        args = typing.get_args(hint)
        return isinstance(value, list) and (not args or all(_matches(v, args[0]) for v in value))
    return True


def _type_name(hint: Any) -> str:
    """The type of a recipe field in words: ``list[str] | None`` -> 'a list of strings or null'."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is list or hint is list:
        args = typing.get_args(hint)
        return f"a list of {_type_name(args[0]).split(' ', 1)[1]}s" if args else "a list"
    return {type(None): "null", bool: "true or false", int: "a whole number", float: "a finite number",
            str: "a string", dict: "a dict"}.get(hint, str(hint))


def check_recipe_fields(recipe: Any) -> None:
    """:class:`ConfigError` for a field of a recipe dataclass whose value does not fit its annotation, or is
    outside the range the class states in ``RANGES`` (field -> (low, high, what); None: unbounded; the low
    end excluded when ``what`` starts "> " or "in ("). Runs before any data is read."""
    hints = typing.get_type_hints(type(recipe))
    for f in fields(recipe):
        value = getattr(recipe, f.name)
        if not _matches(value, hints[f.name]):
            raise ConfigError(f"{type(recipe).__name__}: {f.name} is {_type_name(hints[f.name])}, not {value!r}")
    for name, (low, high, what) in getattr(recipe, "RANGES", {}).items():
        value = getattr(recipe, name)
        if value is None:
            continue
        exclusive = what.startswith("> ") or what.startswith("in (")
        if (low is not None and (value <= low if exclusive else value < low)) or \
                (high is not None and value > high):
            raise ConfigError(f"{type(recipe).__name__}: {name} must be {what}, got {value!r}")


def read_recipe_file(cls: type[R], path: str | Path, path_keys: tuple[str, ...], overrides: dict[str, Any]) -> R:
    """Read a JSON recipe into ``cls``; ``path_keys`` and the ``data`` record paths are taken relative to the
    file's folder; ``overrides`` that are not None replace the file's values. Unknown keys, a missing file or
    bad JSON are a :class:`~edge_sdk.errors.ConfigError`; a key that ``cls.RENAMED_KEYS`` (old name -> what
    to write instead) knows says what replaced it."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"recipe {p} not found") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"recipe {p} is not valid JSON ({e})") from e
    known = {f.name for f in fields(cls)}
    if not isinstance(d, dict):
        raise ConfigError(f"recipe {p} must hold a JSON object with keys among {sorted(known)}")
    unknown = sorted(set(d) - known)
    renamed = getattr(cls, "RENAMED_KEYS", {})
    hints = [f"{k!r} is now {renamed[k]}" for k in unknown if k in renamed]
    if unknown:
        raise ConfigError(f"recipe {p}: unknown keys {unknown}; " + "".join(h + "; " for h in hints)
                          + f"known: {sorted(known)}")
    base = p.parent

    def rel(v):
        return os.path.normpath(base / v) if isinstance(v, str) and not Path(v).is_absolute() else v

    for k in path_keys:
        if d.get(k):
            d[k] = rel(d[k])
    if "data" in known:
        data = dict(d.get("data") or {})
        for k in ("records", "val_records"):
            if data.get(k):
                data[k] = [rel(r) for r in data[k]]
        if data.get("record_labels"):
            data["record_labels"] = rel(data["record_labels"])
        d["data"] = data
    d.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**d)


@dataclass
class DistillRecipe:
    """Every choice behind a student. ``out`` None: ``runs/distill-<time>/student.pth``. ``labels`` None: all
    teacher outputs. ``data``: :class:`~distill.data.DataSpec` fields ({} = Challenge 2017; ``chest_lead`` adds
    the MIT-BIH chest-lead training records). Training windows are cut every ``train_hop`` seconds.
    ``augment``: :class:`~distill.augment.WearableAugment` settings applied to every training batch ({} = its
    defaults; None = no augmentation); the teacher's targets stay those of the unaugmented windows."""

    teacher: str = "models/reference_teacher.pth"
    out: str | None = None
    teacher_config: dict | None = None
    teacher_labels: list[str] | None = None
    labels: list[str] | None = None
    data: dict = field(default_factory=dict)
    hard_labels: bool = True
    unmapped_labels: str = "error"
    train_hop: float = 2.5
    epochs: int = 30
    batch_size: int = 64
    lr: float = 4e-3
    samples_per_epoch: int = 16384
    temperature: float = 4.0
    alpha: float = 0.7
    hint_weight: float = 0.1
    selection: str = "mean_auroc"
    average_last: int = 0  # > 0: the checkpoint is the average of the weights after each of the last N epochs
    augment: dict | None = None
    device: str = "auto"
    seed: int = 0

    RANGES: ClassVar[dict] = {"train_hop": (0, None, "> 0 seconds"), "lr": (0, None, "> 0"),
                              "temperature": (0, None, "> 0"), "alpha": (0, 1, "in [0, 1]"),
                              "hint_weight": (0, None, ">= 0"), "seed": (0, None, ">= 0")}

    def __post_init__(self) -> None:
        from .data import DataSpec

        check_recipe_fields(self)
        DataSpec.from_dict(self.data, f"{type(self).__name__} data")

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "DistillRecipe":
        return read_recipe_file(cls, path, ("teacher", "out"), overrides)

    def to_dict(self) -> dict:
        return asdict(self)


def student_run_dir(out: Path) -> Path:
    """The folder of a student run's resumable state (``last.pt``): ``<out name>_run`` beside ``out``."""
    return out.parent / f"{out.stem}_run"


def run_distill_recipe(recipe: DistillRecipe, force: bool = False, resume: bool = False,
                       log: Callable[[str], None] = print) -> dict:
    """Check the teacher, labels and output, then distil; returns :func:`distill.distiller.distill`'s result
    with ``out`` added. The recipe goes into the checkpoint's ``meta["recipe"]``."""
    from edge_sdk.outputs import new_run_dir

    from .augment import WearableAugment
    from .data import DataSpec, cache_dir, load_split
    from .distiller import DistillConfig, distill, load_teacher, select_student_labels
    from .trainer import TrainConfig, check_training_outputs, check_training_sizes

    spec = DataSpec.from_dict(recipe.data)
    out = Path(recipe.out) if recipe.out else None
    if out is None:  # every torchrun rank must agree on the folder: rank 0's start time via the env
        stamp = os.environ.get("TORCHELASTIC_RUN_ID")
        out = (Path("runs") / f"distill-{stamp}" / "student.pth") if stamp and stamp != "none" and \
            int(os.environ.get("WORLD_SIZE", "1")) > 1 else new_run_dir("distill") / "student.pth"
    check_training_outputs(out, student_run_dir(out), force, resume, "student checkpoint")
    if recipe.unmapped_labels not in ("error", "unlabeled"):
        raise ConfigError(f"unmapped_labels must be error or unlabeled, not {recipe.unmapped_labels!r}")
    check_training_sizes(recipe.epochs, recipe.batch_size, recipe.samples_per_epoch)
    n = recipe.average_last
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= recipe.epochs:
        raise ConfigError(f"average_last is a number of final epochs between 0 and epochs ({recipe.epochs}), "
                          f"not {n!r}")
    if recipe.augment is not None:
        if not isinstance(recipe.augment, dict):
            raise ConfigError(f"augment is a dict of WearableAugment settings ({{}} = its defaults) or null, "
                              f"not {recipe.augment!r}")
        WearableAugment.from_dict(recipe.augment)  # ConfigError for an unknown key or a bad value, before any work
    teacher = load_teacher(recipe.teacher, recipe.teacher_config, recipe.teacher_labels)
    student_labels, _ = select_student_labels(teacher.labels, recipe.labels)
    del teacher
    log(f"student outputs ({len(student_labels)}): {', '.join(student_labels.names[:10])}"
        f"{' ...' if len(student_labels) > 10 else ''}; data: {spec.describe()}")
    train = load_split(spec, "train", hop_s=recipe.train_hop)
    if train is None:
        raise DatasetError("no training records; give records")
    val = load_split(spec, "val")
    hard = recipe.hard_labels and train.labeled
    cfg = TrainConfig(epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                      samples_per_epoch=recipe.samples_per_epoch, device=recipe.device, seed=recipe.seed,
                      average_last=recipe.average_last, augment=recipe.augment, resume=resume,
                      out_dir=str(student_run_dir(out)))
    dcfg = DistillConfig(temperature=recipe.temperature, alpha=recipe.alpha if hard else 1.0,
                         hint_weight=recipe.hint_weight, selection=recipe.selection)
    result = distill(recipe.teacher, out, train if hard else train.unlabeled(), val, cfg=dcfg, train_cfg=cfg,
                     teacher_config=recipe.teacher_config, labels=student_labels.names,
                     teacher_labels=recipe.teacher_labels, cache=cache_dir(), unmapped=recipe.unmapped_labels,
                     force=force, recipe=recipe.to_dict())
    return {**result, "out": str(out)}
