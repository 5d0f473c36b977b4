"""Distil only the labels you need from an ECGFounder checkpoint into a small int8-friendly student.

    # the official single-lead checkpoint ({'state_dict': ...}, 150 outputs named by ECGFounder's tasks.txt)
    python examples/distill_labels.py --teacher ecgfounder_1lead.pth \
        --labels "ATRIAL FIBRILLATION,SINUS RHYTHM" --records my_records/*.hea
    # the repository's reference teacher on Challenge 2017 (what CI runs, with tiny settings)
    python examples/distill_labels.py --teacher models/reference_teacher.pth --labels "ATRIAL FIBRILLATION,NOISE" \
        --limit 16 --epochs 1 --samples-per-epoch 64

Then `ecg-edge quantize --student <out>` makes the app bundle. Without --records the Challenge 2017 set in
../shared is used (labeled: hard labels join the teacher's soft targets); with --records your own
records are distilled from the teacher alone. Needs `pip install "ecg-edge[train]"` (torch).
"""
import argparse
from pathlib import Path

from distill.data import DataSpec, cache_dir, load_split
from distill.distiller import DistillConfig, distill, load_teacher, select_student_labels
from distill.trainer import TrainConfig


def main(a) -> dict:
    teacher = load_teacher(a.teacher)  # official checkpoints get ECGFounder's names for their 150 outputs
    student_labels, _ = select_student_labels(teacher.labels, a.labels)  # unknown names: error with close matches
    print(f"teacher: {len(teacher.labels)} outputs; student: {student_labels.names}")
    del teacher
    spec = DataSpec(records=a.records, limit=a.limit)
    train, val = load_split(spec, "train"), load_split(spec, "val")
    labeled = train.labeled and not a.records
    out = Path(a.out)
    r = distill(a.teacher, out, train if labeled else train.unlabeled(), val,
                cfg=DistillConfig(alpha=0.7 if labeled else 1.0),
                train_cfg=TrainConfig(epochs=a.epochs, samples_per_epoch=a.samples_per_epoch, batch_size=32,
                                      out_dir=str(out.parent / f"{out.stem}_run"), threads=a.threads),
                labels=student_labels.names, cache=cache_dir(),
                unmapped="unlabeled", force=True)
    print(f"student {out}: {r['params']:,} parameters, outputs {r['labels']}, best {r['selection']} {r['best']:.4f}")
    return r


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, help="ECGFounder checkpoint (or any Net1D checkpoint)")
    ap.add_argument("--labels", required=True, help='the outputs you need, by name: "A,B" or @file')
    ap.add_argument("--records", nargs="+", default=None, help="your records (default: Challenge 2017)")
    ap.add_argument("--limit", type=int, default=None, help="first N records of each split (quick runs)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--samples-per-epoch", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--out", default="runs/example_student/student.pth")
    main(ap.parse_args())
