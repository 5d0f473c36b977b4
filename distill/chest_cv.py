"""Cross-validation of a student recipe on the training side of the chest-lead split, by subject.

The held-out side of :data:`distill.chest_lead.MITDB_SPLIT` is for reporting only. To choose chest-lead
settings (augmentation, sampling weight, ...) without looking at it, the *training side* is cut into the
subject folds of :data:`CV_FOLDS`: three folds, each holding one atrial-fibrillation subject (201 + 202, 203,
219) and about a third of the clean sinus windows. :func:`run_fold` trains one student with that fold's
records left out of its chest-lead data (``data.chest_lead.holdout_records``) and scores it on the fold's
windows as recorded (time scale 1.0, hop 5 s), top output by name (:func:`~distill.chest_lead.chest_lead_report`).
Pooled over the folds (:func:`summarize`), every training-side window is scored once by a student that never
saw its record or its subject. The Challenge 2017 side is unchanged: each fold's student is still chosen on
the Challenge 2017 validation records, and its figures there are reported next to the chest-lead ones.

    ecg-edge chest-cv --config configs/default_student.json --out runs/chest_cv/default
    ecg-edge chest-cv --config configs/chest_cv/augment.json --out runs/chest_cv/augment --folds A
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_sdk.errors import ConfigError, DatasetError
from edge_sdk.outputs import check_new_file

from .chest_lead import (ECTOPY_GROUPS, MITDB_SPLIT, REPORT_KEYS, chest_lead_report, mitdb_side_windows,
                         window_ectopic_beats)
from .recipe import DistillRecipe

#: Subject folds of the training side of :data:`MITDB_SPLIT` (every record in exactly one fold; 201 and 202,
#: one subject, together). Rule: one AF subject per fold; the other records dealt so that each fold holds
#: 900-1,300 clean sinus windows and some "other" rhythm (counts at hop 5 s, time scale 1.0: A 1,250 sinus /
#: 223 AF / 139 other, B 1,291 / 255 / 359, C 886 / 267 / 212). 102, 109 and 118 yield no window (no MLII
#: lead; bundle-branch-block beats are not clean sinus) and are dealt for completeness.
CV_FOLDS: dict[str, tuple[str, ...]] = {
    "A": ("201", "202", "101", "108", "220", "124", "208", "230", "102"),
    "B": ("203", "112", "114", "205", "122", "107", "109"),
    "C": ("219", "115", "106", "119", "207", "209", "223", "118"),
}
#: Name of each fold's result file inside ``<out>/<fold>/``, and of the pooled summary inside ``<out>``.
FOLD_FILE = "cv_fold.json"
SUMMARY_FILE = "chest_cv.json"
#: Window hop (s) of the scored windows: as the held-out side is reported.
SCORE_HOP_S = 5.0


def check_folds(folds: dict[str, Sequence[str]] = CV_FOLDS) -> None:
    """:class:`ConfigError` unless ``folds`` partition the training side and keep 201 and 202 together."""
    seen = [r for recs in folds.values() for r in recs]
    if sorted(seen) != sorted(MITDB_SPLIT["train"]):
        raise ConfigError(f"chest-lead CV folds must hold every training-side record once; they hold {sorted(seen)}")
    if not any({"201", "202"} <= set(recs) for recs in folds.values()):
        raise ConfigError("records 201 and 202 come from one subject and must share a fold")


def _fold_names(folds: Sequence[str] | None) -> list[str]:
    names = list(CV_FOLDS) if not folds else list(folds)
    unknown = [f for f in names if f not in CV_FOLDS]
    if unknown:
        raise ConfigError(f"unknown chest-lead CV folds {unknown}; the folds are {', '.join(CV_FOLDS)}")
    return names


def fold_recipe(recipe: DistillRecipe, fold: str, out_dir: str | Path) -> DistillRecipe:
    """``recipe`` with fold ``fold``'s records left out of its chest-lead data, writing
    ``<out_dir>/<fold>/student.pth``. A recipe without chest-lead data, or one that already holds records
    out, is a :class:`ConfigError`."""
    (fold,) = _fold_names([fold])
    chest = (recipe.data or {}).get("chest_lead")
    if not chest:
        raise ConfigError("the recipe has no data.chest_lead: there is nothing to cross-validate on the chest "
                          "lead; add it (e.g. ecg-edge distill --chest-lead) or use configs/default_student.json")
    if chest.get("holdout_records"):
        raise ConfigError(f"the recipe already holds out chest-lead records {chest['holdout_records']}; remove "
                          "data.chest_lead.holdout_records: each fold sets its own")
    data = {**recipe.data, "chest_lead": {**chest, "holdout_records": list(CV_FOLDS[fold])}}
    return replace(recipe, data=data, out=str(Path(out_dir) / fold / "student.pth"))


def score_student(student_path: str | Path, records: Sequence[str], device: str = "cpu") -> dict:
    """:func:`~distill.chest_lead.chest_lead_report` of the student checkpoint at ``student_path`` on the
    training-side windows of ``records`` (time scale 1.0, hop :data:`SCORE_HOP_S`), with each section's
    ``by_ectopic_beats``."""
    from .checkpoint import read_checkpoint, student_from_checkpoint
    from .distiller import activate
    from .labels import checkpoint_label_table
    from .torch_dataset import predict

    ckpt = read_checkpoint(student_path)
    model = student_from_checkpoint(ckpt, student_path)
    labels = checkpoint_label_table(ckpt, model.head.out_features, where=f"student {Path(student_path).name}")
    side = mitdb_side_windows("train", hop_s=SCORE_HOP_S)
    windows = side.select_records([r for r in side.records if r in set(records)],
                                  f"MIT-BIH MLII training side, records {', '.join(records)} (held out)")
    # counted over the whole side, one cache entry for every fold (mitdb_pack.py builds it on a lent GPU)
    ectopic = window_ectopic_beats(side.records, hop_s=SCORE_HOP_S)
    ectopic = ectopic[np.isin(side.record_idx, [side.records.index(r) for r in windows.records])]
    probs = activate(predict(model, windows.x, device=device), labels.activation)
    report = chest_lead_report(probs, labels.names, windows, ectopic_beats=ectopic)
    report["validation"] = {k: v for k, v in (ckpt.get("meta") or {}).get("val", {}).items()
                            if isinstance(v, (int, float))}
    return report


def run_fold(recipe: DistillRecipe, fold: str, out_dir: str | Path, force: bool = False,
             log: Callable[[str], None] = print) -> dict:
    """Train fold ``fold``'s student (:func:`fold_recipe`) and score it on the fold's records; writes and
    returns ``<out_dir>/<fold>/cv_fold.json`` (``fold``, ``records``, ``recipe``, ``report``, ``seconds``)."""
    from .recipe import run_distill_recipe
    from .trainer import pick_device

    check_folds()
    r = fold_recipe(recipe, fold, out_dir)
    result_path = Path(out_dir) / fold / FOLD_FILE
    check_new_file(result_path, force, "chest-lead CV fold result")
    log(f"fold {fold}: chest-lead records {', '.join(CV_FOLDS[fold])} held out")
    trained = run_distill_recipe(r, force=force, log=log)
    report = score_student(r.out, CV_FOLDS[fold], device=str(pick_device(r.device)))
    out = {"fold": fold, "records": list(CV_FOLDS[fold]), "recipe": r.to_dict(), "report": report,
           "seconds": trained.get("seconds")}
    result_path.write_text(json.dumps(out, indent=1))
    return out


def rescore_fold(out_dir: str | Path, fold: str, device: str = "cpu") -> dict:
    """Score fold ``fold``'s trained student under ``out_dir`` again with this version's
    :func:`score_student` (e.g. to add a figure the scoring has gained) and rewrite its ``cv_fold.json``,
    keeping its recipe and training time. :class:`DatasetError` when the fold has no result or student."""
    result_path = Path(out_dir) / fold / FOLD_FILE
    if not result_path.is_file():
        raise DatasetError(f"{result_path} not found: run ecg-edge chest-cv for fold {fold} first")
    old = json.loads(result_path.read_text())
    student = Path(out_dir) / fold / "student.pth"
    if not student.is_file():
        raise DatasetError(f"{student} not found: the fold's student is needed to score it again")
    out = {**old, "report": score_student(student, CV_FOLDS[fold], device=device)}
    result_path.write_text(json.dumps(out, indent=1))
    return out


def summarize(out_dir: str | Path, write: bool = True) -> dict:
    """Pool the fold results under ``out_dir``: per window kind (``clean_sinus``, ``af``, ``other``) the
    windows whose top output is the expected one, over all scored windows, and per record; the Challenge 2017
    validation figures of the fold students (mean and per fold). :class:`DatasetError` when no fold result
    is there. With ``write``, also writes ``<out_dir>/chest_cv.json``."""
    root = Path(out_dir)
    folds = {}
    for fold in CV_FOLDS:
        path = root / fold / FOLD_FILE
        if path.exists():
            folds[fold] = json.loads(path.read_text())
    if not folds:
        raise DatasetError(f"no chest-lead CV fold results ({FOLD_FILE}) under {root}; run ecg-edge chest-cv first")
    pooled: dict = {}
    for key in REPORT_KEYS.values():
        sections = [f["report"][key] for f in folds.values()
                    if f["report"].get(key) and "expected_top_fraction" in f["report"][key]]
        total = _pool(sections)
        if total:
            per_record = {}
            for sec in sections:
                per_record.update(sec["per_record_expected_fraction"])
            pooled[key] = {**total,
                           "per_record_expected_fraction": {k: round(v, 4) for k, v in sorted(per_record.items())}}
            groups = [f["report"][key].get("by_ectopic_beats") for f in folds.values() if f["report"].get(key)]
            if groups and all(g is not None for g in groups):  # pooled only where every fold was scored so
                pooled[key]["by_ectopic_beats"] = _pool_groups(groups)
    val_keys = sorted({k for f in folds.values() for k in f["report"].get("validation", {})} - {"epoch"})
    validation = {k: round(float(np.mean([f["report"]["validation"][k] for f in folds.values()
                                           if k in f["report"].get("validation", {})])), 4) for k in val_keys}
    recipe = dict(next(iter(folds.values()))["recipe"])  # the recipe cross-validated: no fold's hold-out or out
    recipe.pop("out", None)
    if "chest_lead" in recipe.get("data", {}):
        chest = {k: v for k, v in recipe["data"]["chest_lead"].items() if k != "holdout_records"}
        recipe["data"] = {**recipe["data"], "chest_lead": chest}
    summary = {"folds": sorted(folds), "complete": sorted(folds) == sorted(CV_FOLDS),
               "recipe": recipe, "chest_lead": pooled,
               "validation_mean": validation,
               "validation_per_fold": {k: f["report"].get("validation", {}) for k, f in folds.items()}}
    if write:
        (root / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    return summary


def _pool(sections: list[dict]) -> dict | None:
    """Sections ``{"n_windows", "expected_top_fraction", ...}`` pooled by window counts (not a mean of
    fractions); ``None`` when they hold no window."""
    total = sum(sec["n_windows"] for sec in sections)
    if not total:
        return None
    hit = sum(sec["expected_top_fraction"] * sec["n_windows"] for sec in sections)
    return {"n_windows": total, "expected_top_fraction": round(hit / total, 4)}


def _pool_groups(groups: list[dict]) -> dict:
    """Pool per-fold ``by_ectopic_beats`` sections by window counts."""
    pooled = {name: _pool([g[name] for g in groups if name in g]) for name, _, _ in ECTOPY_GROUPS}
    return {name: p for name, p in pooled.items() if p}


def run_chest_cv(recipe: DistillRecipe, out_dir: str | Path, folds: Sequence[str] | None = None,
                 force: bool = False, log: Callable[[str], None] = print, rescore: bool = False) -> dict:
    """:func:`run_fold` for each fold in ``folds`` (default all), then :func:`summarize`. Every fold's recipe
    and output are checked before the first one trains. With ``rescore``, nothing is trained: each fold's
    existing student is scored again (:func:`rescore_fold`) on the recipe's device."""
    from .trainer import pick_device

    names = _fold_names(folds)
    if rescore:
        for f in names:
            rescore_fold(out_dir, f, device=str(pick_device(recipe.device)))
            log(f"fold {f}: scored again")
        return summarize(out_dir)
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"{out_dir} is a file; give a folder for the fold students and results")
    for f in names:
        fold_recipe(recipe, f, out_dir)
        check_new_file(Path(out_dir) / f / FOLD_FILE, force, "chest-lead CV fold result")
        check_new_file(Path(out_dir) / f / "student.pth", force, "student checkpoint")
    for f in names:
        run_fold(recipe, f, out_dir, force=force, log=log)
    return summarize(out_dir)


def markdown_table(summaries: dict[str, dict]) -> str:
    """One row per recipe (``{name: summarize(...)}``): pooled chest-lead fractions and the fold students'
    mean Challenge 2017 validation figures."""
    head = ("| recipe | folds | clean sinus: top = NSR | AF: top = AF | other: top = OTHER | "
            "val Challenge F1 (mean of folds) | val mean AUROC |\n|---|---|---:|---:|---:|---:|---:|")
    rows = []
    for name, s in summaries.items():
        c = s["chest_lead"]

        def pct(key: str) -> str:
            return f"{100 * c[key]['expected_top_fraction']:.1f} % of {c[key]['n_windows']:,}" if key in c else "-"

        v = s["validation_mean"]
        f1 = f"{v['val_challenge2017_f1']:.3f}" if "val_challenge2017_f1" in v else "-"
        auc = f"{v['val_mean_auroc']:.4f}" if "val_mean_auroc" in v else "-"
        rows.append(f"| {name} | {', '.join(s['folds'])} | {pct('clean_sinus')} | {pct('af')} | {pct('other')} "
                    f"| {f1} | {auc} |")
    return "\n".join([head, *rows])


def ectopy_table(summaries: dict[str, dict]) -> str:
    """One row per recipe (``{name: summarize(...)}``) whose folds were all scored by ectopic beats: the pooled
    fraction of AF windows whose top output is ATRIAL FIBRILLATION, by non-``N`` beats in the window."""
    names = [g for g, _, _ in ECTOPY_GROUPS]
    head = ("| recipe | folds | " + " | ".join(f"AF, {g} ectopic beats: top = AF" for g in names) + " |\n|---|---|"
            + "---:|" * len(names))
    rows = []
    for name, s in summaries.items():
        groups = s["chest_lead"].get("af", {}).get("by_ectopic_beats")
        if groups:
            cells = [f"{100 * groups[g]['expected_top_fraction']:.1f} % of {groups[g]['n_windows']:,}"
                     if g in groups else "-" for g in names]
            rows.append(f"| {name} | {', '.join(s['folds'])} | " + " | ".join(cells) + " |")
    return "\n".join([head, *rows]) if rows else ""


#: When a recipe replaces the shipped one, set before the first CV runs: over the same seeds, its mean pooled
#: AF (percentage points) at least ``af_gain_min`` higher, its mean clean sinus at most ``sinus_loss_max`` lower
#: and its fold students' mean validation Challenge 2017 F1 at most ``val_f1_loss_max`` lower.
ADOPTION_RULE = {"af_gain_min": 1.0, "sinus_loss_max": 1.0, "val_f1_loss_max": 0.005}


def seed_means(summaries: dict[str, dict], recipes: dict[str, str]) -> dict[str, dict]:
    """Per recipe, its runs' figures over seeds: ``summaries`` holds one :func:`summarize` per run, ``recipes``
    names each run's recipe (runs of one recipe with different ``--seed``). For ``clean_sinus``, ``af``,
    ``other`` (pooled top-label fraction, percent), ``val_challenge2017_f1`` and each AF ectopy group
    (percent): ``{"mean", "min", "max"}``; and ``runs``. Only runs with every fold count."""
    out: dict[str, dict] = {}
    for recipe in dict.fromkeys(recipes.values()):
        runs = [n for n, r in recipes.items() if r == recipe and n in summaries and summaries[n]["complete"]]
        if not runs:
            continue
        values: dict[str, list[float]] = {}
        for n in runs:
            pooled = summaries[n]["chest_lead"]
            for key in REPORT_KEYS.values():
                if key in pooled:
                    values.setdefault(key, []).append(100 * pooled[key]["expected_top_fraction"])
            f1 = summaries[n]["validation_mean"].get("val_challenge2017_f1")
            if f1 is not None:
                values.setdefault("val_challenge2017_f1", []).append(f1)
            for g, sec in pooled.get("af", {}).get("by_ectopic_beats", {}).items():
                values.setdefault(f"af_{g}_ectopic", []).append(100 * sec["expected_top_fraction"])
        out[recipe] = {"runs": runs, **{k: {"mean": round(float(np.mean(v)), 4), "min": round(min(v), 4),
                                            "max": round(max(v), 4)}
                                        for k, v in values.items() if len(v) == len(runs)}}
    return out


def adoption_check(baseline: dict, variant: dict, rule: dict = ADOPTION_RULE) -> dict:
    """``variant`` against ``baseline`` (two :func:`seed_means` entries) under ``rule`` (:data:`ADOPTION_RULE`):
    the changes in mean AF and clean sinus (points) and validation F1, and whether all three pass."""
    af = variant["af"]["mean"] - baseline["af"]["mean"]
    sinus = variant["clean_sinus"]["mean"] - baseline["clean_sinus"]["mean"]
    f1 = variant["val_challenge2017_f1"]["mean"] - baseline["val_challenge2017_f1"]["mean"]
    return {"af_change": round(af, 2), "sinus_change": round(sinus, 2), "val_f1_change": round(f1, 4),
            "meets": bool(af >= rule["af_gain_min"] and sinus >= -rule["sinus_loss_max"]
                          and f1 >= -rule["val_f1_loss_max"])}


def seed_mean_table(means: dict[str, dict], baseline: str) -> str:
    """One row per recipe of :func:`seed_means`, ``baseline`` (e.g. the shipped one) first: mean (min-max) over
    its seeds, and :func:`adoption_check` against ``baseline``."""
    def cell(m: dict, key: str, pct: bool = True) -> str:
        if key not in m:
            return "-"
        v = m[key]
        return (f"{v['mean']:.1f} % ({v['min']:.1f}-{v['max']:.1f})" if pct
                else f"{v['mean']:.3f} ({v['min']:.3f}-{v['max']:.3f})")

    head = ("| recipe | seeds | clean sinus: top = NSR | AF: top = AF | other: top = OTHER | val Challenge F1 | "
            "AF, 1-3 ectopic beats | AF, 4+ ectopic beats | against the baseline (first row) |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---|")
    if baseline not in means:
        raise ConfigError(f"baseline {baseline!r} has no complete run; the recipes are {', '.join(means)}")
    rows = []
    for recipe in [baseline, *(r for r in means if r != baseline)]:
        m = means[recipe]
        if recipe == baseline:
            verdict = "(the baseline)"
        else:
            c = adoption_check(means[baseline], m)
            verdict = (f"AF {c['af_change']:+.1f}, sinus {c['sinus_change']:+.1f}, F1 {c['val_f1_change']:+.3f}: "
                       + ("meets the rule" if c["meets"] else "does not meet the rule"))
        rows.append(f"| {recipe} | {len(m['runs'])} | {cell(m, 'clean_sinus')} | {cell(m, 'af')} | "
                    f"{cell(m, 'other')} | {cell(m, 'val_challenge2017_f1', pct=False)} | "
                    f"{cell(m, 'af_1-3_ectopic')} | {cell(m, 'af_4+_ectopic')} | {verdict} |")
    return "\n".join([head, *rows])


def compare_runs(groups: dict[str, Sequence[str | Path]]) -> tuple[dict[str, dict], str]:
    """Recipes over seeds from finished ``ecg-edge chest-cv`` runs: ``groups`` maps a recipe's name to its runs'
    ``--out`` folders (one per seed); the first recipe is the baseline. Returns (:func:`seed_means`,
    :func:`seed_mean_table`). :class:`ConfigError` for a run that misses a fold, a folder given twice, or a
    group whose runs differ in more than the seed and device (they would not be one recipe)."""
    if len(groups) < 1 or any(not runs for runs in groups.values()):
        raise ConfigError("give each recipe at least one chest-cv run folder")
    seen: set[Path] = set()
    summaries, recipes = {}, {}
    for name, runs in groups.items():
        first = None
        for run in runs:
            path = Path(run)
            if path.resolve() in seen:
                raise ConfigError(f"{path} is given twice; each chest-cv run belongs to one recipe once")
            seen.add(path.resolve())
            s = summarize(path, write=False)
            if not s["complete"]:
                missing = sorted(set(CV_FOLDS) - set(s["folds"]))
                raise ConfigError(f"{path} has folds {', '.join(s['folds'])} only; finish it (ecg-edge chest-cv "
                                  f"--folds {','.join(missing)}) or leave it out")
            recipe = {k: v for k, v in s["recipe"].items() if k not in ("seed", "device")}
            if first is None:
                first = (path, recipe)
            elif recipe != first[1]:
                keys = sorted(k for k in set(recipe) | set(first[1]) if recipe.get(k) != first[1].get(k))
                raise ConfigError(f"{path} and {first[0]} are both under {name!r} but their recipes differ in "
                                  f"{', '.join(keys)}, not only the seed")
            key = f"{name}: {path}"
            summaries[key], recipes[key] = s, name
    means = seed_means(summaries, recipes)
    return means, seed_mean_table(means, next(iter(groups)))
