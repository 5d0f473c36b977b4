"""Cross-validate student recipes on the chest-lead training side (:mod:`distill.chest_cv`) in one timed run on
a lent GPU.

The lent machine cannot see ``../shared`` and has no ``wfdb``, so this script:

1. rebuilds the Challenge 2017 window cache from ``.device/cinc2017.npz`` (``cinc2017_pack.py``) and, at the
   same time, the chest-lead training-side caches from ``.device/mitdb_train.npz`` (``mitdb_pack.py``), each
   compared bit for bit with the packing machine's windows (the report says whether they are equal), and the
   synthetic-PVC caches of the recipes that set ``data.chest_lead.synthetic_pvc``;
2. computes the teacher's soft targets of the training and validation windows once, on the GPU, into the
   shared cache (every fold of every recipe reads the same ones: chest-lead windows learn from labels alone);
3. runs every (recipe, seed, fold) as its own ``ecg-edge chest-cv --folds F [--seed S]`` process, all at once
   on the one GPU, and stops those still running at ``--budget`` less a reserve; a recipe run with
   ``--seeds`` is reported as ``<recipe>_seed<S>``;
4. writes to ``$OUT``: ``report.json`` (device, timings, per recipe :func:`distill.chest_cv.summarize` and
   every fold's result), ``table.md`` (:func:`distill.chest_cv.markdown_table` and
   :func:`~distill.chest_cv.ectopy_table`) and ``logs.tgz`` (one log per
   process and the fold results; one archive, since a lent machine's reply brings back at most 8 files).

    OUT=/tmp/out python scripts/device/chest_cv.py configs/default_student.json configs/chest_cv/*.json
    OUT=/tmp/out python scripts/device/chest_cv.py configs/chest_cv/synthetic_pvc.json --seeds 0,1,2
    OUT=/tmp/out python scripts/device/chest_cv.py configs/default_student.json --smoke --device cpu --skip-unpack
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from deadline import wait_or_kill  # scripts/device/deadline.py, beside this script

T0 = time.time()
REPO = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f} s] {msg}", flush=True)


def _pack_logs(logs: Path, work: Path, out: Path) -> None:
    """``$OUT/logs.tgz``: the process logs and every fold result and history (JSON) under ``work/cv``."""
    with tarfile.open(out / "logs.tgz", "w:gz") as tar:
        tar.add(logs, arcname="logs")
        for f in sorted((work / "cv").rglob("*.json")) if (work / "cv").exists() else []:
            tar.add(f, arcname=str(f.relative_to(work)))


def teacher_targets_once(recipe_path: Path, device: str) -> None:
    """The teacher's targets of the recipe's training and validation windows, into the cache."""
    from distill.data import DataSpec, cache_dir, load_split
    from distill.distiller import _teacher_targets_where_used, load_teacher, teacher_targets
    from distill.recipe import DistillRecipe

    r = DistillRecipe.from_file(recipe_path)
    teacher = load_teacher(r.teacher, r.teacher_config, r.teacher_labels)
    spec = DataSpec.from_dict(r.data)
    train = load_split(spec, "train", hop_s=r.train_hop)
    _teacher_targets_where_used(teacher, train, cache_dir(), device)
    val = load_split(spec, "val")
    teacher_targets(teacher.model, val.x, teacher.sha256, cache_dir(), device)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipes", nargs="+", type=Path, help="student recipes with data.chest_lead")
    ap.add_argument("--budget", type=float, default=480, help="seconds for the whole script (default: 480)")
    ap.add_argument("--folds", default="A,B,C", help="folds to run (default: A,B,C)")
    ap.add_argument("--seeds", default=None,
                    help="comma-separated seeds replacing each recipe's own, e.g. 0,1,2 (default: the recipe's)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--skip-unpack", action="store_true", help="use the caches already there (local checks)")
    ap.add_argument("--smoke", action="store_true", help="one tiny epoch per fold, for checking the script")
    a = ap.parse_args()
    out = Path(os.environ["OUT"])
    work = Path(os.environ.get("WORK", "/tmp/chest_cv"))
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    if not a.skip_unpack:
        env.update({"ECG_EDGE_CACHE": str(work / "cache"), "ECG_EDGE_SHARED": str(work / "shared")})
    os.environ.update({k: env[k] for k in ("ECG_EDGE_CACHE", "ECG_EDGE_SHARED") if k in env})
    sys.path.insert(0, str(REPO))
    import torch

    from distill.chest_cv import ectopy_table, markdown_table, summarize

    device_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    log(f"python {sys.version.split()[0]}, torch {torch.__version__}, {device_name}, {os.cpu_count()} cpus")
    report: dict = {"device": device_name, "recipes": [str(p) for p in a.recipes], "steps_s": {}}
    if not a.skip_unpack:
        packs = REPO / ".device"
        cinc = subprocess.Popen([sys.executable, str(REPO / "scripts/device/cinc2017_pack.py"), "unpack",
                                 str(packs / "cinc2017.npz"), str(work / "shared")], env=env,
                                stdout=open(logs / "unpack_cinc2017.log", "w"), stderr=subprocess.STDOUT)
        mitdb = subprocess.run([sys.executable, str(REPO / "scripts/device/mitdb_pack.py"), "unpack",
                                str(packs / "mitdb_train.npz"), "--recipes", *map(str, a.recipes)],
                               env=env, capture_output=True, text=True)
        (logs / "unpack_mitdb.log").write_text(mitdb.stdout + mitdb.stderr)
        if cinc.wait() != 0 or mitdb.returncode != 0:
            log(f"unpack failed (cinc2017 exit {cinc.returncode}, mitdb exit {mitdb.returncode}); see logs.tgz")
            _pack_logs(logs, work, out)
            return 1
        report["steps_s"]["unpack"] = round(time.time() - T0, 1)
        same = [ln for ln in (mitdb.stdout + open(logs / "unpack_cinc2017.log").read()).splitlines()
                if "equal to the packing machine" in ln]
        report["unpack"] = same
        log("window caches rebuilt: " + "; ".join(same))
    t = time.time()
    teacher_targets_once(a.recipes[0], a.device)
    report["steps_s"]["teacher_targets"] = round(time.time() - t, 1)
    log("teacher targets cached")

    seeds = [None] if a.seeds is None else [int(s) for s in a.seeds.split(",")]
    runs = {(r.stem if s is None else f"{r.stem}_seed{s}"): (r, s) for r in a.recipes for s in seeds}
    report["runs"] = {name: {"recipe": str(r), "seed": s} for name, (r, s) in runs.items()}
    procs = {}
    for run, (recipe, seed) in runs.items():
        for fold in a.folds.split(","):
            name = f"{run}_{fold}"
            cmd = [sys.executable, "-m", "ecg_edge.cli", "chest-cv", "--config", str(recipe), "--out",
                   str(work / "cv" / run), "--folds", fold, "--device", a.device, "--force"]
            if seed is not None:
                cmd += ["--seed", str(seed)]
            if a.smoke:
                cmd += ["--epochs", "1", "--samples-per-epoch", "256"]
            procs[name] = (subprocess.Popen(cmd, env=env, stdout=open(logs / f"{name}.log", "w"),
                                            stderr=subprocess.STDOUT), time.time())
    log(f"{len(procs)} fold runs started")
    deadline = T0 + a.budget - 25
    walls = {}
    for name, (p, started) in procs.items():
        walls[name] = {"exit": wait_or_kill(p, deadline, name, log), "wall_s": round(time.time() - started, 1)}
    report["fold_runs"] = walls
    summaries = {}
    for run in runs:
        try:
            summaries[run] = summarize(work / "cv" / run)
        except Exception as exc:  # noqa: BLE001 - report what is missing and go on with the other recipes
            report.setdefault("errors", {})[run] = f"{type(exc).__name__}: {exc}"
    report["summaries"] = summaries
    report["folds"] = {run: {f: json.loads(p.read_text()) for f in a.folds.split(",")
                             if (p := work / "cv" / run / f / "cv_fold.json").exists()} for run in runs}
    report["seconds"] = round(time.time() - T0, 1)
    table = (markdown_table(summaries) + "\n\n" + ectopy_table(summaries)) if summaries \
        else "no recipe finished a fold"
    (out / "table.md").write_text(table + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    _pack_logs(logs, work, out)
    print(table)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
