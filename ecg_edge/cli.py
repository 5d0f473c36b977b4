"""``ecg-edge``: one command line for the whole pipeline. Each subcommand has its own ``--help``."""
from __future__ import annotations

import argparse
import signal
import sys
import threading


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help shows each option's default where it has one and the help text does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _parser(sub, name: str, **kw):
    return sub.add_parser(name, formatter_class=_HelpFormatter, **kw)


def _recipe(cls, config: str | None, overrides: dict):
    """A recipe from the ``--config`` file with the options given on the command line replacing its values, or
    from those options alone (``None`` = not given: the recipe's default)."""
    if config:
        return cls.from_file(config, **overrides)
    return cls(**{k: v for k, v in overrides.items() if v is not None})


def _add_teacher_train(sub) -> None:
    p = _parser(sub, "train-teacher", help="train the reference Net1D teacher on Challenge 2017 (train split)",
                description="Train a Net1D (ECGFounder architecture) on the Challenge 2017 train split, "
                            "select on validation, write an fp16 checkpoint. Reduced width by default; "
                            "--full for the 30.9 M-parameter width (GPU advised).")
    p.add_argument("--config", default=None, metavar="JSON",
                   help="recipe file (configs/reference_teacher.json is the committed teacher's); options given "
                        "here replace its values")
    p.add_argument("--out", default=None, help="checkpoint to write (default: runs/teacher-<time>/reference_teacher.pth)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--full", action="store_true", default=None, help="full ECGFounder width instead of the reduced one")
    p.add_argument("--epochs", type=int, default=None, help="training epochs [default: 14]")
    p.add_argument("--batch-size", type=int, default=None, help="windows per batch [default: 64]")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (one-cycle) [default: 0.003]")
    p.add_argument("--samples-per-epoch", type=int, default=None,
                   help="windows drawn (class-balanced) per epoch [default: 12288]")
    p.add_argument("--device", default=None, help="auto (cuda when present), cpu, cuda, cuda:1 ... [default: auto]")
    p.add_argument("--seed", type=int, default=None, help="random seed [default: 0]")
    p.add_argument("--resume", action="store_true", help="continue from <out dir>/teacher_run/last.pt")
    p.add_argument("--limit", type=int, default=None, help="use only the first N records of each split (smoke runs)")
    p.set_defaults(func=_run_train_teacher)


def _run_train_teacher(a) -> int:
    from distill.teacher import TeacherRecipe, run_teacher_recipe
    from edge_sdk.outputs import new_run_dir

    overrides = dict(out=a.out, width="full" if a.full else None, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                     samples_per_epoch=a.samples_per_epoch, device=a.device, seed=a.seed)
    if not a.config:
        overrides["out"] = overrides["out"] or str(new_run_dir("teacher") / "reference_teacher.pth")
    recipe = _recipe(TeacherRecipe, a.config, overrides)
    r = run_teacher_recipe(recipe, force=a.force, resume=a.resume, limit=a.limit)
    print(f"best validation mean AUROC {r['best']:.4f}; {r['train_seconds']} s; checkpoint {recipe.out}")
    return 0


def _add_rebuild(sub) -> None:
    p = _parser(
        sub, "rebuild", help="rebuild the shipped student and bundle (and with --teacher the teacher) from configs/",
        description="Run the committed recipes in order: with --teacher the ensemble's members "
                    "configs/reference_teacher.json (about 35 min on 2 CPU cores) and configs/reference_teacher_gpu.json "
                    "(4 min on an H200; hours on 2 CPU cores) and configs/teacher_ensemble.json; then "
                    "configs/default_student.json (models/student.pth), "
                    "configs/default_bundle.json (QAT -> models/student_qat.pth, bundles/default). Each checkpoint "
                    "stores the recipe it was built from; existing outputs are kept unless --force.\n\n"
                    "the committed models: ecg-edge rebuild --force")
    p.add_argument("--configs", default=None, metavar="DIR", help="folder with the recipes [default: the repo's configs/]")
    p.add_argument("--teacher", action="store_true", help="also retrain the teacher ensemble's members and rewrite the ensemble file first")
    p.add_argument("--stages", default=None, metavar="LIST",
                   help="comma-separated stages to run, of teacher,student,bundle [default: student,bundle; with "
                        "--teacher: teacher,student,bundle]")
    p.add_argument("--force", action="store_true", help="replace the recipes' existing outputs")
    p.add_argument("--readme", default=None, metavar="FILE",
                   help="README whose result tables (between the results markers) are rewritten from the new card "
                        "[default: the repo's README.md]; 'none' leaves every README alone")
    p.set_defaults(func=_run_rebuild)


def _run_rebuild(a) -> int:
    from pathlib import Path

    from quantize.build import print_report
    from quantize.rebuild import DEFAULT_STAGES, rebuild

    repo = Path(__file__).resolve().parents[1]
    configs = Path(a.configs) if a.configs else repo / "configs"
    readme = None if a.readme == "none" else Path(a.readme) if a.readme else repo / "README.md"
    stages = ("teacher", *DEFAULT_STAGES) if a.teacher else DEFAULT_STAGES
    if a.stages:
        stages = tuple(x.strip() for x in a.stages.split(",") if x.strip())
    r = rebuild(configs, stages, force=a.force, readme=readme, log=lambda m: print(m, flush=True))
    if "bundle" in r:
        print_report(r["bundle"])
        print(f"bundle: {r['bundle']['recipe']['bundle']}")
    if "student" in r:
        print(f"student: {r['student']['out']}")
    return 0


def _add_data_options(p, what: str) -> None:
    g = p.add_argument_group("data (default: the Challenge 2017 set in ../shared, its fixed record-level split)")
    g.add_argument("--records", nargs="+", default=None, metavar="RECORD",
                   help=f"your records for {what}: WFDB path without extension, .npz, or .csv with --fs; validation "
                        "and test records come from a fixed seeded split of them unless --val-records is given")
    g.add_argument("--val-records", nargs="+", default=None, metavar="RECORD",
                   help="your validation records (also the held-out set for fidelity figures)")
    g.add_argument("--record-labels", default=None, metavar="CSV",
                   help="'record,label' CSV labelling --records/--val-records (record = file name without extension)")
    g.add_argument("--label-map", default=None, metavar="MAP",
                   help="dataset label -> output name, e.g. \"AF=ATRIAL FIBRILLATION;NSR=NORMAL SINUS RHYTHM\" "
                        "(labels without an entry map to the output of the same name)")
    g.add_argument("--fs", type=float, default=None, help="sample rate of CSV records, Hz")
    g.add_argument("--limit", type=int, default=None, help="use only the first N records of each split (smoke runs)")


def _data_spec(a):
    from distill.data import DataSpec
    from distill.labels import parse_label_map

    if a.val_records and not a.records:
        raise SystemExit("--val-records needs --records (the Challenge 2017 set brings its own validation split)")
    if a.record_labels and not a.records:
        raise SystemExit("--record-labels labels your --records; give them too")
    return DataSpec(records=a.records, val_records=a.val_records, record_labels=a.record_labels,
                    label_map=parse_label_map(a.label_map), fs_hz=a.fs, limit=a.limit)


def _add_distill(sub) -> None:
    p = _parser(
        sub, "distill", help="distil a Net1D teacher (e.g. ECGFounder) into a compact int8-friendly student",
        description="Distil a teacher (official ECGFounder {'state_dict': ...} checkpoint or any Net1D checkpoint) "
                    "into an EdgeStudent with the outputs you choose (--labels, by name), on the Challenge 2017 set "
                    "(labeled) or on your own records (unlabeled or labeled). Uses the GPU when present (AMP); for "
                    "several GPUs run `torchrun --nproc_per_node=N -m ecg_edge distill ...`.\n\n"
                    "examples:\n"
                    "  ecg-edge distill --teacher ecgfounder_1lead.pth --labels \"ATRIAL FIBRILLATION,SINUS RHYTHM\" "
                    "--records my/*.hea\n"
                    "  ecg-edge distill --teacher models/reference_teacher.pth --out runs/s.pth")
    p.add_argument("--config", default=None, metavar="JSON",
                   help="recipe file (see configs/default_student.json); paths in it are relative to the file; "
                        "options given here replace its values")
    p.add_argument("--teacher", default=None, help="teacher checkpoint [default: models/reference_teacher.pth]")
    p.add_argument("--teacher-config", default=None,
                   help="JSON file with the Net1D config (official checkpoints carry none; default: ECGFounder 1-lead)")
    p.add_argument("--teacher-labels", default=None, metavar="NAMES",
                   help="output names of a teacher checkpoint that stores none (\"A,B,...\" or @file, output order); "
                        "official 150-output checkpoints get ECGFounder's tasks.txt names without it")
    p.add_argument("--labels", default=None, metavar="NAMES",
                   help="the teacher outputs the student gets, by name: \"NAME1,NAME2\" or @file with one name a line "
                        "(default: all teacher outputs)")
    _add_data_options(p, "training")
    p.add_argument("--chest-lead", action="store_true", default=None,
                   help="also train on the MIT-BIH chest-lead (MLII) windows of the training side of the fixed "
                        "MIT-BIH split, from their rhythm labels alone (the teacher is not used on them), also "
                        "played 0.85-1.6x as fast: the shipped student's options")
    p.add_argument("--augment", action="store_true", default=None,
                   help="wearable augmentation of every training batch (distill.augment.WearableAugment defaults: "
                        "heart-rate jitter, in-band noise, baseline wander) [default: none]")
    p.add_argument("--no-hard-labels", action="store_true", default=None, help="ignore dataset labels: pure distillation")
    p.add_argument("--unmapped-labels", default=None, choices=["error", "unlabeled"],
                   help="a dataset label with no student output: stop with an error, or use those records for "
                        "distillation only (teacher targets, no hard label) [default: error]")
    p.add_argument("--train-hop", type=float, default=None,
                   help="seconds between training windows (overlapping windows = more teacher targets) [default: 2.5]")
    p.add_argument("--out", default=None, help="student checkpoint to write (default: runs/distill-<time>/student.pth)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--epochs", type=int, default=None, help="training epochs [default: 30]")
    p.add_argument("--batch-size", type=int, default=None, help="windows per batch [default: 64]")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (one-cycle) [default: 0.004]")
    p.add_argument("--samples-per-epoch", type=int, default=None, help="windows drawn per epoch [default: 16384]")
    p.add_argument("--temperature", type=float, default=None, help="distillation temperature [default: 4.0]")
    p.add_argument("--alpha", type=float, default=None,
                   help="weight of the teacher term (1 - alpha: hard labels) [default: 0.7]")
    p.add_argument("--hint-weight", type=float, default=None, help="feature-hint MSE weight (0 disables) [default: 0.1]")
    p.add_argument("--selection", default=None, choices=["mean_auroc", "macro_f1", "challenge2017_f1"],
                   help="validation figure that picks the best epoch [default: mean_auroc]")
    p.add_argument("--average-last", type=int, default=None, metavar="N",
                   help="write the average of the weights after each of the last N epochs instead of the best "
                        "epoch (0: the best epoch by --selection) [default: 0]")
    p.add_argument("--device", default=None, help="auto (cuda when present), cpu, cuda, cuda:1 ... [default: auto]")
    p.add_argument("--seed", type=int, default=None, help="random seed [default: 0]")
    p.add_argument("--resume", action="store_true", help="continue from <out dir>/<out name>_run/last.pt")
    p.set_defaults(func=_run_distill)


def _run_distill(a) -> int:
    from dataclasses import asdict

    from distill.checkpoint import read_net1d_config
    from distill.data import DEFAULT_CHEST_LEAD
    from distill.recipe import DistillRecipe, run_distill_recipe
    from edge_sdk.labels import parse_label_list

    data = {k: v for k, v in asdict(_data_spec(a)).items() if v is not None}
    if a.chest_lead:
        data["chest_lead"] = dict(DEFAULT_CHEST_LEAD)
    overrides = dict(teacher=a.teacher, out=a.out, teacher_config=read_net1d_config(a.teacher_config) if a.teacher_config else None,
                     teacher_labels=parse_label_list(a.teacher_labels) if a.teacher_labels else None,
                     labels=parse_label_list(a.labels) if a.labels else None,
                     hard_labels=False if a.no_hard_labels else None, unmapped_labels=a.unmapped_labels,
                     train_hop=a.train_hop, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                     samples_per_epoch=a.samples_per_epoch, temperature=a.temperature, alpha=a.alpha,
                     hint_weight=a.hint_weight, selection=a.selection, average_last=a.average_last,
                     augment={} if a.augment else None, device=a.device, seed=a.seed)
    recipe = _recipe(DistillRecipe, a.config, overrides)
    recipe.data = {**recipe.data, **data}
    r = run_distill_recipe(recipe, force=a.force, resume=a.resume, log=lambda m: print(m, flush=True))
    print(f"student: {r['params']:,} parameters, {r['macs_per_window'] / 1e6:.2f} MMAC per 10-s window, "
          f"{len(r['labels'])} outputs; {'saved' if recipe.average_last else 'best'} {r['selection']} {r['best']:.4f}; "
          f"{r['seconds']} s; checkpoint {r['out']}")
    return 0


def _add_chest_cv(sub) -> None:
    p = _parser(
        sub, "chest-cv", help="cross-validate a student recipe on the chest-lead training records, by subject",
        description="Train one student per subject fold of the MIT-BIH training side (distill.chest_cv.CV_FOLDS: "
                    "A holds 201+202, B 203, C 219, each with about a third of the clean sinus records), each with "
                    "its fold's records left out of the chest-lead data, and score it on them. The pooled figures "
                    "choose chest-lead settings without the held-out side, which stays for reporting. Each fold "
                    "writes <out>/<fold>/student.pth and cv_fold.json; <out>/chest_cv.json pools the folds present.\n\n"
                    "example:\n  ecg-edge chest-cv --config configs/default_student.json --out runs/chest_cv/default")
    p.add_argument("--config", required=True, metavar="JSON",
                   help="student recipe with data.chest_lead (e.g. configs/default_student.json)")
    p.add_argument("--out", required=True, help="folder for the fold students and results")
    p.add_argument("--folds", default=None, metavar="A,B,C", help="folds to run [default: all three]")
    p.add_argument("--epochs", type=int, default=None, help="replace the recipe's epochs (smoke runs)")
    p.add_argument("--samples-per-epoch", type=int, default=None, help="replace the recipe's samples per epoch")
    p.add_argument("--seed", type=int, default=None,
                   help="replace the recipe's seed: the seed alone moves the pooled figures by several points, so "
                        "compare recipes over a few seeds, each in its own --out [default: the recipe's]")
    p.add_argument("--device", default=None, help="auto (cuda when present), cpu, cuda ... [default: the recipe's]")
    p.add_argument("--force", action="store_true", help="overwrite fold results and students that exist")
    p.add_argument("--rescore", action="store_true",
                   help="train nothing: score the folds' existing students again with this version's scoring "
                        "(e.g. to add the AF-by-ectopic-beats figures to older runs) and pool them")
    p.set_defaults(func=_run_chest_cv)


def _add_chest_cv_compare(sub) -> None:
    p = _parser(
        sub, "chest-cv-compare", help="compare chest-cv runs of several recipes over seeds, by the adoption rule",
        description="Put finished `ecg-edge chest-cv` runs side by side: each --run names a recipe and its runs' "
                    "--out folders (one per --seed); the first recipe is the baseline. Prints the mean (lowest-"
                    "highest) over the seeds of the pooled chest-lead figures and the validation Challenge F1, and "
                    "whether each recipe meets distill.chest_cv.ADOPTION_RULE against the baseline (AF at least 1 "
                    "point higher, sinus at most 1 point and F1 at most 0.005 lower).\n\n"
                    "example:\n  ecg-edge chest-cv-compare --run shipped=runs/cv/s0,runs/cv/s1,runs/cv/s2 "
                    "--run pvc=runs/cv/p0,runs/cv/p1,runs/cv/p2")
    p.add_argument("--run", action="append", required=True, metavar="NAME=DIR[,DIR...]",
                   help="a recipe's name and its chest-cv run folders; give --run once per recipe, the baseline first")
    p.set_defaults(func=_run_chest_cv_compare)


def _run_chest_cv_compare(a) -> int:
    from distill.chest_cv import compare_runs
    from edge_sdk.errors import ConfigError

    groups: dict[str, list[str]] = {}
    for item in a.run:
        name, sep, dirs = item.partition("=")
        runs = [d.strip() for d in dirs.split(",") if d.strip()]
        if not sep or not name.strip() or not runs:
            raise ConfigError(f"--run {item!r} is not NAME=DIR[,DIR...], e.g. shipped=runs/cv/s0,runs/cv/s1")
        if name.strip() in groups:
            raise ConfigError(f"--run {name.strip()!r} is given twice; put all its folders in one --run")
        groups[name.strip()] = runs
    print(compare_runs(groups)[1])
    return 0


def _run_chest_cv(a) -> int:
    from distill.chest_cv import ectopy_table, markdown_table, run_chest_cv
    from distill.recipe import DistillRecipe

    recipe = DistillRecipe.from_file(a.config, **{k: v for k, v in dict(
        epochs=a.epochs, samples_per_epoch=a.samples_per_epoch, seed=a.seed, device=a.device).items() if v is not None})
    folds = [f.strip() for f in a.folds.split(",") if f.strip()] if a.folds else None
    summary = run_chest_cv(recipe, a.out, folds, force=a.force, log=lambda m: print(m, flush=True),
                           rescore=a.rescore)
    print(markdown_table({a.config: summary}))
    by_ectopy = ectopy_table({a.config: summary})
    if by_ectopy:
        print(by_ectopy)
    return 0


def _float_ops(text: str) -> list[str] | str:
    """'conv0,conv1,head' -> ['conv0', 'conv1', 'head']; 'none' -> []; 'auto' -> 'auto'; '' is refused (write
    'none' for no float part)."""
    from quantize.float_ops import parse_float_ops

    if not text.strip():
        raise argparse.ArgumentTypeError("empty; give op ids such as conv0,head, 'none' (every part int8) or 'auto'")
    try:
        return parse_float_ops(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e}; give comma-separated op ids such as conv0,conv1,head, 'none' or "
                                         "'auto'") from None


def _add_quantize(sub) -> None:
    p = _parser(
        sub, "quantize", help="student -> ONNX fp32, int8 ONNX (QDQ) and int8 TFLite, with fidelity, in an app bundle",
        description="Export the student to ONNX, quantize it to int8 with ONNX Runtime static QDQ (per-channel "
                    "weights, real calibration windows through the shared preprocessing) and to an int8 TFLite "
                    "model with the same parts in float (--float-ops; full-integer when none is), measure "
                    "fidelity on held-out windows, choose per-label thresholds on labeled validation data, and "
                    "write an app bundle (student files + JSON model card). Options left out take the --config "
                    "recipe's value, else the default shown.\n\n"
                    "the committed bundle: ecg-edge quantize --config configs/default_bundle.json --force")
    p.add_argument("--config", default=None, metavar="JSON",
                   help="recipe file (see configs/default_bundle.json); paths in it are relative to the file")
    p.add_argument("--student", default=None, help="student checkpoint from `ecg-edge distill` (required without --config)")
    p.add_argument("--teacher", default=None,
                   help="teacher for QAT targets and comparison figures (default: the one recorded in the student, "
                        "if found)")
    p.add_argument("--teacher-config", default=None, help="JSON Net1D config of an official-format teacher")
    p.add_argument("--teacher-labels", default=None,
                   help="output names of a teacher that stores none (\"A,B,...\" or @file, output order)")
    p.add_argument("--include-teacher", action="store_true", default=None,
                   help="also put the teacher's fp32/int8 ONNX files in the bundle (large; for comparisons only)")
    p.add_argument("--out", default=None, help="bundle folder (default: runs/quantize-<time>/bundle)")
    p.add_argument("--qat-out", default=None,
                   help="where the QAT-fine-tuned student checkpoint goes (default: <out>_student_qat.pth)")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty --out / --qat-out "
                                                        "(only after the new bundle is complete)")
    _add_data_options(p, "calibration, QAT, thresholds and fidelity")
    p.add_argument("--calibration-windows", type=int, default=None, help="training windows used for calibration "
                                                                         "[default: 256]")
    p.add_argument("--calibration-method", default=None, choices=["minmax", "entropy", "percentile"],
                   help="ONNX Runtime calibration method [default: minmax]")
    p.add_argument("--equalize", type=float, default=None, metavar="STRENGTH",
                   help="channel equalization before int8, strength in [0, 1]: each stage's channels are "
                        "rescaled toward equal ranges (same float function) so per-tensor int8 activations "
                        "lose less; 0 = off [default: 0; configs/default_bundle.json: 0.5]")
    p.add_argument("--activation-bounds", action=argparse.BooleanOptionalAction, default=None,
                   help="clamp the float student's activations to their range on the calibration windows "
                        "before export, so int8 clips nothing the float model keeps (see README, Quantization; "
                        "measured, not used by configs/default_bundle.json) [default: off]")
    p.add_argument("--input-clip", action=argparse.BooleanOptionalAction, default=None,
                   help="clip the float student's input to the QAT input range (+-8 standard deviations), as the "
                        "int8 input is clipped, so an artefact window reaches float and int8 parts alike "
                        "(needs QAT) [default: off]")
    p.add_argument("--no-tflite", action="store_true", default=None, help="skip the TFLite model (no TensorFlow needed)")
    p.add_argument("--qat-epochs", type=int, default=None,
                   help="quantization-aware fine-tuning epochs before export; 0 = post-training quantization "
                        "[default: 4]")
    p.add_argument("--qat-samples-per-epoch", type=int, default=None,
                   help="training windows drawn per QAT epoch [default: 8192]")
    p.add_argument("--qat-self-weight", type=float, default=None,
                   help="weight of the float-vs-fake-quantized agreement term during QAT [default: 4.0]")
    p.add_argument("--qat-seeds", type=_seed_list, default=None, metavar="S,S,...",
                   help="one QAT run per seed; the run whose int8 model leaves the fewest windows over "
                        "--precision-target (then the smallest max error) on half of the training records no "
                        "calibration or plan window came from is kept, the other half measured beside it "
                        "(quantize.qat_select; about 6 min per run on 2 cores) [default: one run with the "
                        "recipe's seed]")
    p.add_argument("--float-ops", type=_float_ops, default=None, metavar="auto|OP,OP,...",
                   help="parts of the student kept in float in both int8 models, in graph order: convN (the "
                        "N-th convolution, conv0 = the first), addN (the N-th residual Add), head (pooling and "
                        "linear layer); 'auto' chooses them by measurement on the validation windows (see "
                        "--precision-target), 'none' quantizes them all [default: conv0]")
    p.add_argument("--precision-target", type=float, default=None,
                   help="with --float-ops auto: largest acceptable absolute probability error of the int8 "
                        "model against fp32 on any validation window [default: 0.03]")
    p.add_argument("--precision-train-windows", type=int, default=None, metavar="N",
                   help="with --float-ops auto: also measure on N training windows (never the calibration "
                        "ones), a larger sample of the error's tail [default: 0; "
                        "configs/default_bundle.json: 8192]")
    p.add_argument("--record-rule", default=None, choices=["mean", "logistic"],
                   help="how a recording's windows become one label, written to the card: 'mean' = the highest "
                        "mean probability; 'logistic' = a logistic regression over each output's mean, log-mean, "
                        "max, min and spread, fitted on the labeled training records and chosen on validation "
                        "(softmax models) [default: mean]")
    p.set_defaults(func=_run_quantize)


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integer seeds such as 0,1,2")
    return seeds


def _run_quantize(a) -> int:
    from dataclasses import asdict

    from distill.checkpoint import read_net1d_config
    from edge_sdk.labels import parse_label_list
    from quantize.build import print_report
    from quantize.recipe import QuantizeRecipe, run_recipe

    data = {k: v for k, v in asdict(_data_spec(a)).items() if v is not None}
    tcfg = read_net1d_config(a.teacher_config) if a.teacher_config else None
    overrides = dict(student=a.student, teacher=a.teacher, teacher_config=tcfg,
                     teacher_labels=parse_label_list(a.teacher_labels) if a.teacher_labels else None,
                     out=a.out, qat_out=a.qat_out, calibration_windows=a.calibration_windows,
                     calibration_method=a.calibration_method, channel_equalization=a.equalize,
                     activation_bounds=a.activation_bounds, input_clip=a.input_clip,
                     qat_epochs=a.qat_epochs,
                     qat_self_weight=a.qat_self_weight, qat_samples_per_epoch=a.qat_samples_per_epoch,
                     qat_seeds=a.qat_seeds,
                     include_teacher=a.include_teacher,
                     tflite=False if a.no_tflite else None, float_ops=a.float_ops, precision_target=a.precision_target,
                     precision_train_windows=a.precision_train_windows,
                     record_rule=a.record_rule, data=data or None)
    if not a.config and not a.student:
        raise SystemExit("ecg-edge quantize: give --student (or --config RECIPE.json)")
    recipe = _recipe(QuantizeRecipe, a.config, overrides)
    card = run_recipe(recipe, force=a.force)
    print_report(card)
    print(f"bundle: {card['recipe']['bundle']}")
    return 0


def _add_stream(sub) -> None:
    p = _parser(
        sub, "stream", help="stream ECG (Polar H10, emulated H10 or a file) through the model and print predictions",
        description="Read ECG from a Polar H10 at ADDRESS over BLE (bleak), from an emulated H10 fed with a real "
                    "record (--emulate, bumble over an in-process link), or from a file (--replay), and print one "
                    "line per window: time, the labels detected (probability >= the card's threshold for that label), "
                    "signal quality and latency. --json prints every probability and threshold.")
    p.add_argument("address", nargs="?", help="BLE address (or macOS UUID) of the Polar H10")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--emulate", action="store_true", help="emulated Polar H10 fed with --record (MIT-BIH)")
    src.add_argument("--replay", metavar="FILE", help="WFDB record path (no extension), .csv (see --fs) or .npz")
    p.add_argument("--record", default="210", help="MIT-BIH record fed to the emulator (210: atrial fibrillation, a record the student never trained on)")
    p.add_argument("--fs", type=float, default=None, help="sample rate of a CSV replay file, Hz")
    p.add_argument("--bundle", default="bundles/default", help="model bundle folder")
    p.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "tflite"], help="inference runtime")
    p.add_argument("--precision", default="int8", choices=["int8", "fp32"], help="model precision")
    p.add_argument("--hop", type=float, default=None, help="seconds between windows (default: the card's)")
    p.add_argument("--speed", type=float, default=1.0, help="replay/emulator speed (1 = real time, 0 = max for replay)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds of ECG")
    p.add_argument("--save", metavar="CSV", default=None, help="record every received sample to this CSV")
    p.add_argument("--force", action="store_true", help="overwrite an existing --save or --report file")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for inference")
    p.add_argument("--json", action="store_true", help="print predictions as JSON lines")
    p.add_argument("--report", metavar="PNG", default=None,
                   help="write a picture of the session: ECG strip, labels per window, quality flags, gaps, latency "
                        "(and PNG.json with the data it was drawn from)")
    p.set_defaults(func=_run_stream)


def _run_stream(a) -> int:
    from .stream_command import run_stream

    if not (a.address or a.emulate or a.replay):
        raise SystemExit("ecg-edge stream: give a device ADDRESS, --emulate or --replay FILE (see --help)")
    run_stream(a)
    return 0


def _add_verify_port(sub) -> None:
    p = _parser(
        sub, "verify-port", help="check a native (Android/iOS) port's preprocessing and model outputs against a "
                                 "bundle's conformance vectors",
        description="Read a port's dump of the preprocessing stages and model outputs for the bundle's conformance "
                    "vectors (format in the bundle's README.md) and report, vector by vector and stage by stage, "
                    "PASS or where it diverges and by how much. Exit status 1 when a stage fails.")
    p.add_argument("bundle", help="model bundle folder")
    p.add_argument("dump", help="the port's dump: JSON (ecg-edge/port-dump v1) or .npz")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run_verify_port)


def _run_verify_port(a) -> int:
    import json

    from .verify_port import verify_port

    report = verify_port(a.bundle, a.dump)
    print(json.dumps(report.to_dict(), indent=1) if a.json else report.text())
    return 0 if report.ok else 1


def _add_bench(sub) -> None:
    p = _parser(
        sub, "bench", help="latency/throughput/size/memory/per-label AUROC of the models, plus streaming figures",
        description="Measure, in one run on this machine at 1 thread and at all cores: the teacher in torch (when "
                    "found), the bundle's fp32 and int8 ONNX models and its int8 TFLite model: latency per 10-s "
                    "window (p50/p95/p99), throughput with batching, model size, peak memory and record-level AUROC "
                    "per output name on the Challenge 2017 held-out records (outputs the data cannot score are "
                    "listed); then streaming end-to-end latency, CPU per stream and streams per core. Writes JSON, "
                    "a markdown table and a PNG plot.")
    p.add_argument("--bundle", default="bundles/default", help="model bundle folder")
    p.add_argument("--teacher", default=None, help="teacher checkpoint to time in torch (default: the one the card "
                                                   "names, when found)")
    p.add_argument("--out", default=None, help="output folder (default: runs/bench-<time>)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out (replaces its result files)")
    p.add_argument("--repeats", type=int, default=100, help="batch-1 latency repetitions per model")
    p.add_argument("--batch", type=int, default=32, help="batch size for the throughput figure")
    p.add_argument("--eval-limit", type=int, default=None, help="only the first N held-out records for AUROC")
    p.add_argument("--stream-records", type=int, default=8, help="records replayed for the streaming CPU figure")
    p.add_argument("--stream-seconds", type=float, default=25.0, help="length of the real-time streaming check")
    p.add_argument("--emulated-streams", type=int, default=16,
                   help="concurrent emulated Polar H10 streams (bumble + bleak) in the real-time check")
    p.add_argument("--quick", action="store_true", help="fewer repeats, 300 held-out records, 12-s streaming check")
    p.set_defaults(func=_run_bench)


def _run_bench(a) -> int:
    from edge_sdk.outputs import new_run_dir

    from .bench import markdown_table, run_bench

    if a.quick:
        a.repeats, a.eval_limit, a.stream_seconds = min(a.repeats, 30), a.eval_limit or 300, min(a.stream_seconds, 12.0)
    out = a.out or str(new_run_dir("bench"))
    report = run_bench(a.bundle, a.teacher, out, a.repeats, a.batch, a.eval_limit, a.stream_records, a.stream_seconds,
                       emulated_count=a.emulated_streams, force=a.force)
    print(markdown_table(report))
    print(f"written: {out}/results.json, {out}/results.md, {out}/latency.png")
    return 0


def _add_demo(sub) -> None:
    p = _parser(
        sub, "demo", help="the main job: bundle, emulated Polar H10 stream of a real record, live predictions, benchmark",
        description="Load the int8 bundle (building it with the recipe configs/default_bundle.json if it is "
                    "missing), stream a real MIT-BIH record through an emulated Polar H10 into the SDK, print live "
                    "predictions, and finish with a benchmark table.")
    p.add_argument("--bundle", default="bundles/default", help="model bundle folder")
    p.add_argument("--record", default="210", help="MIT-BIH record streamed through the emulated H10 (210: atrial fibrillation, held out from training)")
    p.add_argument("--seconds", type=float, default=90.0, help="seconds of ECG to stream")
    p.add_argument("--speed", type=float, default=10.0, help="emulator speed-up (1 = real time)")
    p.add_argument("--out", default=None, help="benchmark output folder (default: runs/demo-<time>)")
    p.set_defaults(func=_run_demo)


def _run_demo(a) -> int:
    from .demo import run_demo

    return run_demo(a)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecg-edge",
        description="Edge SDK for single-lead wearable ECG: distil an ECGFounder (Net1D) teacher into a compact "
                    "student, quantize it to int8 in a model bundle, and stream BLE ECG through on-device inference.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_teacher_train(sub)
    _add_distill(sub)
    _add_chest_cv(sub)
    _add_chest_cv_compare(sub)
    _add_rebuild(sub)
    _add_quantize(sub)
    _add_stream(sub)
    _add_bench(sub)
    _add_demo(sub)
    _add_verify_port(sub)
    return parser


def _exit_on_sigterm(signum, _frame) -> None:
    """SIGTERM (``kill``, ``timeout``, a job scheduler) ends a command as Ctrl-C does: cleanup code runs (a
    half-built bundle folder is removed, a recording is closed) instead of the process vanishing mid-write."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    empty = [k for k, v in vars(args).items()
             if (isinstance(v, str) and not v.strip()) or (isinstance(v, list) and any(isinstance(x, str) and not x.strip()
                                                                                   for x in v))]
    if empty:  # "" would read as "not given": --labels "" as every output, --out "" as a new run folder
        parser.error(f"empty value for --{empty[0].replace('_', '-')}; give a value or leave the option out")
    from edge_sdk.errors import EdgeSDKError

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return int(args.func(args) or 0)
    except EdgeSDKError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
