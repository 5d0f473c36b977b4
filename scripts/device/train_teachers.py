"""Train the full-width and a longer-trained reduced-width Net1D teacher in one timed run on a lent GPU.

The lent machine cannot see ``../shared`` and gives back at most 8 files of 16 MiB, so this script:

1. rebuilds the Challenge 2017 window cache from ``.device/cinc2017.npz`` (``cinc2017_pack.py``), checking that
   the windows equal the packing machine's bit for bit;
2. times a few training steps of the full-width Net1D and sizes its epochs to the time left (``--budget``)
   once the reduced run is done;
3. runs ``ecg-edge train-teacher`` for both recipes, the reduced one first (capped at 40 % of the budget),
   each with :class:`~distill.augment.WearableAugment`;
4. scores both selected checkpoints on the held-out test split and writes the teachers' logits of every
   split (so the CPU side can check it reproduces them);
5. writes to ``$OUT``: the full checkpoint cut into parts of 16 MB (``cat`` them back together), the reduced
   checkpoint, ``teacher_logits.npz`` and ``report.json`` (recipes, histories, timings, test figures).

    OUT=/tmp/out python scripts/device/train_teachers.py --budget 420              # both (first lent run)
    OUT=/tmp/out python scripts/device/train_teachers.py --only reduced --budget 330

The committed ``models/reference_teacher_gpu.pth`` is the second command's checkpoint (its report:
``models/reference_teacher_gpu.device_report.json``); the first command's full-width figures are in
``models/full_width_teacher.device_report.json`` (its reduced run there was stopped at the 40 % cap, at
epoch 10 of 24, and is not used).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from deadline import wait_or_kill  # scripts/device/deadline.py, beside this script

T0 = time.time()
REPO = Path(__file__).resolve().parents[2]
PART_BYTES = 16_000_000


def log(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f} s] {msg}", flush=True)


def probe_rate(width_cfg, batch: int, device: str, steps: int = 8) -> float:
    """Training windows per second of one Net1D on ``device`` (AMP), measured after warm-up."""
    import torch
    import torch.nn.functional as F

    from distill.net1d import Net1D

    torch.backends.cudnn.benchmark = True
    model = Net1D(width_cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=device == "cuda")
    x = torch.randn(batch, 1, 5000, device=device)
    y = torch.randint(0, width_cfg.n_classes, (batch,), device=device)
    for i in range(steps + 3):
        if i == 3:
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.time()
        with torch.autocast(device_type=device, dtype=torch.float16, enabled=device == "cuda"):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    if device == "cuda":
        torch.cuda.synchronize()
    rate = steps * batch / (time.time() - t)
    del model, opt
    if device == "cuda":
        torch.cuda.empty_cache()
    return rate


def score(ckpt: Path, device: str, records: int | None = None) -> tuple[dict, dict]:
    """Val and test figures of a teacher checkpoint and its logits on every split (its first ``records``
    records)."""
    import numpy as np

    from distill.compare import split_figures
    from distill.data import cinc2017_windows
    from distill.distiller import activate, load_teacher
    from distill.torch_dataset import predict

    teacher = load_teacher(ckpt)
    logits, figures = {}, {}
    for split in ("train", "val", "test"):
        ws = cinc2017_windows(split)
        if records:
            keep = ws.record_idx < records
            ws = replace(ws, x=ws.x[keep], y=ws.y[keep], record_idx=ws.record_idx[keep], records=ws.records[:records])
        logits[split] = predict(teacher.model.float(), ws.x, batch_size=512, device=device)
        if split != "train":
            probs = activate(logits[split], teacher.labels.activation)
            figures[split] = split_figures(probs, teacher.labels.names, teacher.labels.activation, ws)
    return figures, {k: v.astype(np.float32) for k, v in logits.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=420, help="seconds for the whole script (default: 420)")
    ap.add_argument("--pack", type=Path, default=REPO / ".device" / "cinc2017.npz")
    ap.add_argument("--full", type=Path, default=REPO / "configs" / "full_teacher_gpu.json",
                    help="full-width recipe; its epochs are replaced by what fits the time left")
    ap.add_argument("--reduced", type=Path, default=REPO / "configs" / "reference_teacher_gpu.json",
                    help="reduced-width recipe")
    ap.add_argument("--only", choices=("full", "reduced"), default=None, help="train one of the two recipes only")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny epochs, for checking the script on a CPU")
    a = ap.parse_args()
    out = Path(os.environ["OUT"])
    work = Path(os.environ.get("WORK", "/tmp/teachers"))
    env = {**os.environ, "ECG_EDGE_CACHE": str(work / "cache"), "ECG_EDGE_SHARED": str(work / "shared"),
           "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    os.environ.update({k: env[k] for k in ("ECG_EDGE_CACHE", "ECG_EDGE_SHARED")})
    sys.path.insert(0, str(REPO))
    import numpy as np
    import scipy
    import sklearn
    import torch

    log(f"python {sys.version.split()[0]}, torch {torch.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"sklearn {sklearn.__version__}, cuda {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}, "
        f"{os.cpu_count()} cpus")
    report: dict = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}

    subprocess.run([sys.executable, str(REPO / "scripts" / "device" / "cinc2017_pack.py"), "unpack", str(a.pack),
                    str(work / "shared")], env=env, check=True)
    log("window cache rebuilt")

    from distill.teacher import FULL_TEACHER

    recipes = {k: json.loads(p.read_text()) for k, p in (("reduced", a.reduced), ("full", a.full))
               if a.only in (None, k)}
    reserve = 75.0 if "full" in recipes else 30.0  # test scoring, logits, parts
    for name, recipe in recipes.items():  # one after the other: the full run gets the time the reduced one left
        if name == "full":
            rate = probe_rate(FULL_TEACHER, recipe["batch_size"], a.device, steps=2 if a.smoke else 8)
            train_s = a.budget - (time.time() - T0) - reserve - 20  # 20 s: loading the windows
            per_epoch = recipe["samples_per_epoch"] / (0.85 * rate) + 4  # 0.85: data loading, augmentation; 4 s: validation
            recipe["epochs"] = 1 if a.smoke else max(2, min(40, int(train_s / per_epoch)))
            report["probe"] = {"full_windows_per_s": round(rate, 1), "train_seconds_planned": round(train_s, 1),
                               "epochs": recipe["epochs"]}
            log(f"full width: {rate:.0f} training windows/s; {recipe['epochs']} epochs of "
                f"{recipe['samples_per_epoch']} in {train_s:.0f} s")
            deadline = T0 + a.budget - reserve
        else:
            deadline = T0 + (0.4 * a.budget if "full" in recipes else a.budget - reserve)
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        cfg = folder / "recipe.json"
        cfg.write_text(json.dumps({**recipe, "out": "reference_teacher.pth"}, indent=1))
        cmd = [sys.executable, "-m", "ecg_edge.cli", "train-teacher", "--config", str(cfg), "--force",
               "--device", a.device]
        if a.smoke:
            cmd += ["--epochs", "1", "--samples-per-epoch", "256"]
        started = time.time()
        p = subprocess.Popen(cmd, env=env, stdout=open(folder / "log.txt", "w"), stderr=subprocess.STDOUT)
        wait_or_kill(p, deadline, name, log)
        lines = (folder / "log.txt").read_text(errors="replace").replace("\r", "\n").splitlines()
        report.setdefault("logs", {})[name] = [ln for ln in lines if "epoch=" in ln or "best" in ln or "Error" in ln
                                               or "Traceback" in ln][-60:]
        report.setdefault("train_wall_s", {})[name] = round(time.time() - started, 1)
        log(f"{name}: exit {p.returncode} after {time.time() - started:.0f} s; "
            + (report["logs"][name][-1] if report["logs"][name] else "no epoch line: " + " | ".join(lines[-5:])))

    all_logits = {}
    for name in recipes:
        ckpt = work / name / "reference_teacher.pth"
        if not ckpt.exists():
            report[name] = {"error": "no checkpoint"}
            continue
        hist = ckpt.with_suffix(".history.json")
        figures, logits = score(ckpt, a.device, 20 if a.smoke else None)
        data = ckpt.read_bytes()
        report[name] = {"test": figures["test"], "val": figures["val"], "sha256": hashlib.sha256(data).hexdigest(),
                        "bytes": len(data), "history": json.loads(hist.read_text()) if hist.exists() else None,
                        "recipe": recipes[name]}
        all_logits.update({f"{name}_{k}": v for k, v in logits.items()})
        if name == "full":
            for i in range(0, len(data), PART_BYTES):
                (out / f"full_teacher.pth.part{i // PART_BYTES}").write_bytes(data[i:i + PART_BYTES])
        else:
            (out / f"{name}_teacher.pth").write_bytes(data)
        log(f"{name}: test {json.dumps({k: figures['test'][k] for k in ('mean_auroc', 'challenge_f1')})}")
    np.savez_compressed(out / "teacher_logits.npz", **all_logits)
    report["seconds"] = round(time.time() - T0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
