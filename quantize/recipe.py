"""The quantize recipe: student + teacher + data -> (QAT) -> app bundle, as one library call.

:class:`QuantizeRecipe` holds every choice (a JSON file per shipped bundle lives in ``configs/``; paths in
it are relative to that file). :func:`run_recipe` checks every input and output first, then samples
calibration windows, computes the teacher's targets for the student's labels, fine-tunes with QAT and
builds the bundle. The CLI and the demo call it; nothing here prints more than progress.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from distill.data import DataSpec, WindowSet, cache_dir, load_split
from distill.distiller import Teacher, load_teacher, teacher_targets
from distill.checkpoint import find_recorded_checkpoint, read_checkpoint, student_from_checkpoint
from distill.labels import checkpoint_label_table, hard_targets
from distill.errors import CheckpointError
from distill.recipe import check_recipe_fields, read_recipe_file
from distill.record_rule_fit import check_record_rule, check_record_rule_data
from edge_sdk.errors import ConfigError, DatasetError, EdgeSDKError
from edge_sdk.outputs import check_new_dir, check_new_file, check_writable_parent, new_run_dir
from edge_sdk.paths import datasets_available

from .build import build_bundle
from .equalize import check_strength
from .float_ops import check_float_ops, torch_float_ops
from .onnx_int8 import CALIBRATION_METHODS


@dataclass
class QuantizeRecipe:
    """Every choice behind a bundle. ``teacher`` None: the teacher recorded in the student checkpoint, when
    that file is found with the same sha256 (otherwise QAT distils from the student's own float outputs and
    the card has no teacher figures). ``out`` None: a new ``runs/quantize-<time>/bundle`` folder; ``qat_out``
    None: ``student_qat.pth`` beside the bundle folder."""

    student: str
    out: str | None = None
    teacher: str | None = None
    teacher_config: dict | None = None
    teacher_labels: list[str] | None = None
    data: dict = field(default_factory=dict)  # DataSpec fields; {} = Challenge 2017
    calibration_windows: int = 256
    calibration_method: str = "minmax"
    channel_equalization: float = 0.0  # strength in [0, 1] of quantize.equalize (0: off)
    activation_bounds: bool = False  # clamp the float student's activations to their calibrated ranges
    input_clip: bool = False  # clip the float student's input to the QAT input range, as the int8 input is
    qat_epochs: int = 4
    qat_self_weight: float = 4.0
    qat_samples_per_epoch: int = 8192
    qat_out: str | None = None
    # several: one QAT run per seed, the one kept whose int8 model errs least on unseen training records
    # (quantize.qat_select); None: one run with ``seed``
    qat_seeds: list[int] | None = None
    tflite: bool = True
    float_ops: list[str] | str = field(default_factory=lambda: ["conv0"])  # or "auto": chosen by measurement
    precision_target: float = 0.03
    # training windows (never the calibration ones) the precision plan measures on besides the validation windows
    precision_train_windows: int = 0
    record_rule: str = "mean"  # or "logistic": edge_sdk.record_rule, fitted by distill.record_rule_fit
    include_teacher: bool = False
    hop_seconds: float = 5.0
    seed: int = 0

    RANGES: ClassVar[dict] = {"calibration_windows": (1, None, ">= 1"),
                              "qat_epochs": (0, None, ">= 0"), "qat_self_weight": (0, None, ">= 0"),
                              "qat_samples_per_epoch": (1, None, ">= 1"), "precision_target": (0, 1, "in (0, 1]"),
                              "precision_train_windows": (0, None, ">= 0"), "hop_seconds": (0, None, "> 0 seconds"),
                              "seed": (0, None, ">= 0")}

    def __post_init__(self) -> None:
        check_recipe_fields(self)
        DataSpec.from_dict(self.data, f"{type(self).__name__} data")

    #: Keys of older recipes, and what replaced them.
    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "float_convs": "'float_ops', with op ids instead of indices: [0, 1] -> [\"conv0\", \"conv1\"] "
                       "(or \"auto\")"}

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "QuantizeRecipe":
        """Read a JSON recipe; relative paths in it are taken relative to the file's folder."""
        return read_recipe_file(cls, path, ("student", "out", "teacher", "qat_out"), overrides)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_teacher(recipe: QuantizeRecipe, student_ckpt: dict, student_path: Path) -> tuple[Teacher | None, str]:
    """The teacher to use and a note on where it came from."""
    if recipe.teacher:
        return load_teacher(recipe.teacher, recipe.teacher_config, recipe.teacher_labels), f"given: {recipe.teacher}"
    ident = (student_ckpt.get("meta") or {}).get("teacher") or {}
    found = find_recorded_checkpoint([ident.get("path"), ident.get("name")], ident.get("sha256"), [student_path.parent])
    if found is not None:
        cfg = recipe.teacher_config or (ident.get("config") if isinstance(ident.get("config"), dict) else None)
        return load_teacher(found, cfg, recipe.teacher_labels), f"recorded in the student: {found}"
    return None, "none: the teacher recorded in the student checkpoint was not found; QAT distils from the " \
                 "student's own float outputs and the card has no teacher comparison"


def calibration_indices(n_train: int, n: int, seed: int = 0) -> np.ndarray:
    """Indices of the ``n`` calibration windows among ``n_train`` training windows (seeded, sorted)."""
    return np.sort(np.random.default_rng(seed).choice(n_train, min(n, n_train), replace=False))


def sample_calibration(train: WindowSet, n: int, seed: int = 0) -> np.ndarray:
    """``n`` training windows drawn without replacement (seeded), float32 ``(n, 5000)``."""
    if len(train) == 0:
        raise DatasetError("no training windows to calibrate on")
    return train.x[calibration_indices(len(train), n, seed)].astype(np.float32)


def plan_window_indices(n_train: int, n: int, n_calibration: int, seed: int = 0) -> np.ndarray:
    """Indices of the ``n`` precision-plan windows among ``n_train`` training windows, none of them among the
    :func:`calibration_indices` of ``n_calibration`` and ``seed`` (drawn with ``seed + 1``, sorted); fewer
    when fewer are left."""
    rest = np.setdiff1d(np.arange(n_train), calibration_indices(n_train, n_calibration, seed))
    return np.sort(np.random.default_rng(seed + 1).choice(rest, min(n, len(rest)), replace=False))


def sample_plan_windows(train: WindowSet, n: int, n_calibration: int, seed: int = 0) -> np.ndarray:
    """``n`` training windows for the precision plan to measure on, none of them among the calibration windows
    that :func:`sample_calibration` draws with ``n_calibration`` and ``seed`` (:func:`plan_window_indices`),
    float32 ``(n, 5000)``; fewer when the training split has fewer windows left."""
    return train.x[plan_window_indices(len(train), n, n_calibration, seed)].astype(np.float32)


def check_bundle_outputs(recipe: QuantizeRecipe, out: Path, force: bool = False) -> Path:
    """The bundle folder ``out`` and (with QAT) the QAT checkpoint are free (or ``force``) and writable, and the
    QAT checkpoint is not the student; returns the QAT checkpoint's path (``qat_out``, else
    ``<out>_student_qat.pth`` beside the folder). Named errors only, nothing written but parent folders."""
    qat_out = Path(recipe.qat_out) if recipe.qat_out else out.parent / f"{out.name}_student_qat.pth"
    check_new_dir(out, force, "bundle folder")
    check_writable_parent(out, "bundle folder")
    if recipe.qat_epochs > 0:
        check_new_file(qat_out, force, "QAT student checkpoint")
        check_writable_parent(qat_out, "QAT student checkpoint")
        if qat_out.resolve() == Path(recipe.student).resolve():
            raise EdgeSDKError(f"qat_out {qat_out} is the student itself; choose another path")
    return qat_out


def run_recipe(recipe: QuantizeRecipe, force: bool = False, log=print) -> dict:
    """Check inputs, then QAT (if ``qat_epochs``) and build the bundle; returns the model card.

    Nothing is written before every input (student, teacher, data) loads and every output path is free
    (or ``force``).
    """
    from quantize.qat import qat_finetune

    from .qat_select import check_seeds

    fo = recipe.float_ops
    if fo != "auto" and not (isinstance(fo, list) and all(isinstance(op, str) for op in fo)):
        raise ConfigError(f"float_ops must be 'auto' or a list of op ids such as [\"conv0\", \"head\"], not {fo!r}")
    if not 0 < recipe.precision_target < 1:
        raise ConfigError(f"precision_target is a probability error in (0, 1), not {recipe.precision_target!r}")
    n_plan = recipe.precision_train_windows
    if isinstance(n_plan, bool) or not isinstance(n_plan, int) or n_plan < 0:
        raise ConfigError(f"precision_train_windows is a number of training windows (0 or more), not {n_plan!r}")
    check_strength(recipe.channel_equalization)
    if not isinstance(recipe.activation_bounds, bool):
        raise ConfigError(f"activation_bounds is true or false, not {recipe.activation_bounds!r}")
    if not isinstance(recipe.input_clip, bool):
        raise ConfigError(f"input_clip is true or false, not {recipe.input_clip!r}")
    if recipe.calibration_method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration_method must be one of {', '.join(CALIBRATION_METHODS)}, "
                          f"not {recipe.calibration_method!r}")
    n_cal = recipe.calibration_windows
    if isinstance(n_cal, bool) or not isinstance(n_cal, int) or n_cal < 1:
        raise ConfigError(f"calibration_windows is a number of training windows (1 or more), not {n_cal!r}")
    qat_seeds = check_seeds(recipe.qat_seeds if recipe.qat_seeds is not None else [recipe.seed], recipe.qat_epochs)
    student_path = Path(recipe.student)
    s_ckpt = read_checkpoint(student_path)
    if s_ckpt.get("arch", "net1d") == "net1d":
        raise CheckpointError(f"{student_path} holds a Net1D; quantize expects a student from `ecg-edge distill`")
    qat_range = ((s_ckpt.get("meta") or {}).get("qat") or {}).get("input_range")
    if recipe.input_clip and recipe.qat_epochs <= 0 and not qat_range:
        raise ConfigError(f"input_clip clips the float student's input to the QAT input range, and "
                          f"{student_path.name} was not fine-tuned with QAT: set qat_epochs > 0 or input_clip to false")
    if fo != "auto":
        try:
            check_float_ops(fo, torch_float_ops(student_from_checkpoint(s_ckpt, student_path)), student_path.name)
        except ValueError as e:
            raise ConfigError(f"float_ops: {e}") from None
    if recipe.out:
        out = Path(recipe.out)
    else:
        out = new_run_dir("quantize") / "bundle"
    qat_out = check_bundle_outputs(recipe, out, force)
    n_out = len(s_ckpt["state_dict"]["head.bias"]) if "head.bias" in s_ckpt["state_dict"] else None
    table = checkpoint_label_table(s_ckpt, n_out or 0, where=f"student {student_path.name}")
    check_record_rule(recipe.record_rule, table.activation)
    teacher, teacher_note = resolve_teacher(recipe, s_ckpt, student_path)
    if teacher is not None:
        teacher.labels.indices(table.names)
    spec = DataSpec.from_dict(recipe.data)
    log(f"data: {spec.describe()}; teacher: {teacher_note}")
    train = load_split(spec, "train")
    val = load_split(spec, "val")
    test = load_split(spec, "test") or val or train
    if train is None:
        raise DatasetError("no training records for calibration; give more records")
    calib = sample_calibration(train, recipe.calibration_windows, recipe.seed)
    plan_windows = (sample_plan_windows(train, n_plan, recipe.calibration_windows, recipe.seed)
                    if fo == "auto" and n_plan else None)
    # the record rule learns from whole recordings of one label: the chest-lead additions are long Holter
    # records of several rhythms, played at several speeds, so it is fitted on the recipe's own records
    record_train = (load_split(replace(spec, chest_lead=None), "train") if spec.chest_lead else train) \
        if recipe.record_rule == "logistic" else None
    check_record_rule_data(recipe.record_rule, record_train, val)
    student = str(student_path)
    chest = None
    if datasets_available("mitdb"):
        from distill.chest_lead import mitdb_side_windows

        chest = mitdb_side_windows("test")
        log(f"chest-lead evaluation: {len(chest)} MIT-BIH windows of the held-out side ({chest.description[:60]}...)")
    else:
        log("chest-lead evaluation skipped: MIT-BIH not found (set ECG_EDGE_SHARED to a folder with data/mitdb)")
    if recipe.qat_epochs > 0:
        t_logits = None
        if train.teacher_weight is not None:
            log("[quantize] the training data hold windows the teacher does not speak for: QAT keeps the "
                "student's own float outputs as targets")
        elif teacher is not None:
            t_logits = teacher_targets(teacher.model, train.x, teacher.sha256, cache_dir())[0][:, teacher.labels.indices(table.names)]
        y, supervised = (hard_targets(train.y, train.classes, train.label_map, table, "unlabeled")
                         if train.labeled else (None, None))

        def finetune(path: Path, seed: int) -> None:
            r = qat_finetune(student, path, train.x, y, t_logits, epochs=recipe.qat_epochs,
                             samples_per_epoch=recipe.qat_samples_per_epoch, self_weight=recipe.qat_self_weight,
                             seed=seed, supervised=supervised, force=force)
            log(f"[quantize] quantization-aware fine-tuning (seed {seed}): {recipe.qat_epochs} epochs, "
                f"{r['seconds']} s -> {path}")
        if len(qat_seeds) == 1:
            finetune(qat_out, qat_seeds[0])
        else:
            choose_among_qat_runs(recipe, qat_seeds, finetune, train, val, calib, plan_windows, qat_out, log)
        student = str(qat_out)
    card = build_bundle(student, out, calib, test, val, teacher, tflite=recipe.tflite, hop_seconds=recipe.hop_seconds,
                        calibration_method=recipe.calibration_method, float_ops=recipe.float_ops,
                        precision_target=recipe.precision_target, plan_windows=plan_windows,
                        channel_equalization=recipe.channel_equalization,
                        activation_bounds=recipe.activation_bounds, input_clip=recipe.input_clip,
                        record_rule=recipe.record_rule, record_train=record_train,
                        include_teacher=recipe.include_teacher, force=force,
                        recipe={**recipe.to_dict(), "teacher_resolved": teacher_note, "bundle": str(out)}, chest=chest)
    return card


def choose_among_qat_runs(recipe: QuantizeRecipe, seeds: list[int], finetune, train: WindowSet,
                          val: WindowSet | None, calib: np.ndarray, plan_windows: np.ndarray | None, qat_out: Path,
                          log=print) -> dict:
    """One QAT run per seed (``finetune(path, seed)``), each measured by :func:`quantize.qat_select.select_qat_run`
    on the training records with no calibration or plan window, split by record; the run kept is written to
    ``qat_out`` with the selection in ``meta.qat.selection``, which is returned."""
    import tempfile

    from .build import precision_plan_windows
    from .plan_check import unseen_indices
    from .qat_select import select_qat_run, split_by_record, write_chosen

    n_plan = len(plan_windows) if plan_windows is not None else 0
    unseen = unseen_indices(train.record_idx, recipe.calibration_windows, n_plan, recipe.seed)
    n_unseen_records = len(np.unique(train.record_idx[unseen]))
    if n_unseen_records < 2:
        raise DatasetError(f"qat_seeds {seeds}: {n_unseen_records} training records gave no "
                           "calibration or plan window, and choosing a QAT run needs at least 2 (one to choose on, "
                           "one to check on); give more training records, fewer calibration or plan windows, or "
                           "one seed")
    choose, check = split_by_record(unseen, train.record_idx, recipe.seed)
    described = {name: f"{len(i):,} windows of {len(np.unique(train.record_idx[i])):,} training records that no "
                       f"calibration or plan window came from ({name} half, split by record)"
                 for name, i in (("choose", choose), ("check", check))}
    log(f"[quantize] {len(seeds)} QAT runs, one kept by the int8 error on the {described['choose']}")
    has_plan_windows = (val is not None and len(val)) or (plan_windows is not None and len(plan_windows))
    # without validation or plan windows the build plans on the calibration windows (clipped): None says so
    plan_x = precision_plan_windows(val, plan_windows, calib)[0] if recipe.float_ops == "auto" and has_plan_windows \
        else None
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for seed in seeds:
            runs[seed] = Path(tmp) / f"qat_seed{seed}.pth"
            finetune(runs[seed], seed)
        selection = select_qat_run(runs, calib, plan_x, train.x[choose], train.x[check], described,
                                   recipe.precision_target, log,
                                   records={"choose": train.record_idx[choose], "check": train.record_idx[check]},
                                   float_ops=recipe.float_ops,
                                   calibration_method=recipe.calibration_method, input_clip=recipe.input_clip,
                                   channel_equalization=recipe.channel_equalization,
                                   activation_bounds=recipe.activation_bounds)
        write_chosen(runs[selection["chosen_seed"]], qat_out, selection)
    return selection
