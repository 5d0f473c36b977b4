"""Rebuild the shipped models from the committed recipes, in order: teacher (optional: the two ensemble
members, about 35 min and, without a GPU, a few hours on 2 CPU cores; then the ensemble file), student,
bundle. ``ecg-edge rebuild`` calls :func:`rebuild`; every stage refuses to overwrite its outputs unless
``force``, and every checkpoint stores the recipe it was built from."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from edge_sdk.errors import ConfigError

#: Stage -> its recipe file in ``configs/``.
RECIPES = {"teacher": "reference_teacher.json", "student": "default_student.json", "bundle": "default_bundle.json"}
#: More recipe files of the teacher stage: the second ensemble member, then the ensemble file naming both.
TEACHER_EXTRA = ("reference_teacher_gpu.json", "teacher_ensemble.json")
DEFAULT_STAGES = ("student", "bundle")


def rebuild(configs: str | Path, stages: Sequence[str] = DEFAULT_STAGES, force: bool = False,
            readme: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Run the recipes of ``stages`` (a subset of teacher, student, bundle, run in that order) from the folder
    ``configs``; returns ``{stage: result}`` (the bundle's result is its model card). With ``readme``, its
    result tables (see :mod:`quantize.results_table`) are rewritten from the new card."""
    from .results_table import BEGIN, update_readme

    from distill.recipe import DistillRecipe, run_distill_recipe
    from distill.ensemble import EnsembleRecipe
    from distill.teacher import TeacherRecipe, run_teacher_recipe

    from .recipe import QuantizeRecipe, run_recipe

    unknown = [s for s in stages if s not in RECIPES]
    if unknown or not stages:
        raise ConfigError(f"unknown stages {unknown or list(stages)}; choose from {list(RECIPES)}")
    folder = Path(configs)
    paths = {s: folder / RECIPES[s] for s in RECIPES if s in stages}
    extra = [folder / f for f in TEACHER_EXTRA] if "teacher" in stages else []
    missing = [str(p) for p in [*paths.values(), *extra] if not p.is_file()]
    if missing:
        raise ConfigError(f"recipe files not found: {missing}")
    recipes = {"teacher": TeacherRecipe, "student": DistillRecipe, "bundle": QuantizeRecipe}
    loaded = {s: recipes[s].from_file(p) for s, p in paths.items()}  # every file is checked before any work
    second, ensemble = (TeacherRecipe.from_file(extra[0]), EnsembleRecipe.from_file(extra[1])) if extra else (None, None)
    if readme is not None:
        if not Path(readme).is_file():
            raise ConfigError(f"--readme {readme} is not a file; give the README whose result tables to rewrite")
        if BEGIN not in Path(readme).read_text(encoding="utf-8"):
            raise ConfigError(f"{readme} has no '{BEGIN}' marker for the result tables")
    check_stage_outputs(loaded, second, ensemble, force)  # a late stage's refusal must not come after hours
    results = {}
    if "teacher" in loaded:
        log(f"[rebuild] teacher from {paths['teacher']}")
        results["teacher"] = run_teacher_recipe(loaded["teacher"], force=force)
        log(f"[rebuild] second ensemble member from {extra[0]} (GPU advised)")
        results["teacher_gpu"] = run_teacher_recipe(second, force=force)
        log(f"[rebuild] teacher ensemble from {extra[1]}")
        results["teacher_ensemble"] = ensemble.run(force=force)
    if "student" in loaded:
        log(f"[rebuild] student from {paths['student']}")
        results["student"] = run_distill_recipe(loaded["student"], force=force, log=log)
    if "bundle" in loaded:
        log(f"[rebuild] bundle from {paths['bundle']}")
        results["bundle"] = run_recipe(loaded["bundle"], force=force, log=log)
        if readme is not None:
            bundle = Path(results["bundle"]["recipe"]["bundle"])
            shown = bundle.relative_to(Path(readme).resolve().parent) if bundle.is_absolute() and \
                bundle.is_relative_to(Path(readme).resolve().parent) else bundle
            changed = update_readme(readme, results["bundle"], str(shown))
            log(f"[rebuild] result tables in {readme} {'rewritten' if changed else 'unchanged'}")
    return results


def check_stage_outputs(loaded: dict, second=None, ensemble=None, force: bool = False) -> None:
    """Every output the stages in ``loaded`` (stage -> recipe) will write is free (or ``force``), checked
    before the first stage starts: :class:`~edge_sdk.errors.OutputExistsError` or
    :class:`~edge_sdk.errors.OutputPathError` otherwise."""
    from distill.recipe import student_run_dir
    from distill.teacher import teacher_run_dir
    from distill.trainer import check_training_outputs
    from edge_sdk.outputs import check_new_file

    from .recipe import check_bundle_outputs

    for recipe in ([loaded["teacher"], second] if "teacher" in loaded else []):
        check_training_outputs(Path(recipe.out), teacher_run_dir(recipe.out), force, False, "teacher checkpoint")
    if "teacher" in loaded and ensemble is not None:
        check_new_file(ensemble.out, force, "teacher ensemble file")
    if "student" in loaded and loaded["student"].out:
        out = Path(loaded["student"].out)
        check_training_outputs(out, student_run_dir(out), force, False, "student checkpoint")
    if "bundle" in loaded and loaded["bundle"].out:
        check_bundle_outputs(loaded["bundle"], Path(loaded["bundle"].out), force)
