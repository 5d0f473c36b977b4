"""``ecg-edge``: one command line for the whole pipeline. Each subcommand has its own ``--help``."""
from __future__ import annotations

import argparse
import sys


def _add_teacher_train(sub) -> None:
    p = sub.add_parser("train-teacher", help="train the reference Net1D teacher on Challenge 2017 (train split)",
                       description="Train a Net1D (ECGFounder architecture) on the Challenge 2017 train split, "
                                   "select on validation, write an fp16 checkpoint. Reduced width by default; "
                                   "--full for the 30.9 M-parameter width (GPU advised).")
    p.add_argument("--out", default="models/reference_teacher.pth", help="checkpoint to write")
    p.add_argument("--full", action="store_true", help="full ECGFounder width instead of the reduced one")
    p.add_argument("--epochs", type=int, default=14)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--samples-per-epoch", type=int, default=12288, help="windows drawn (class-balanced) per epoch")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from <out dir>/teacher_run/last.pt")
    p.add_argument("--limit", type=int, default=None, help="use only the first N records of each split (smoke runs)")
    p.set_defaults(func=_run_train_teacher)


def _run_train_teacher(a) -> int:
    from pathlib import Path

    from distill.teacher import FULL_TEACHER, REDUCED_TEACHER, train_reference_teacher
    from distill.trainer import TrainConfig

    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, samples_per_epoch=a.samples_per_epoch,
                      device=a.device, seed=a.seed, resume=a.resume,
                      out_dir=str(Path(a.out).parent / "teacher_run"))
    r = train_reference_teacher(a.out, FULL_TEACHER if a.full else REDUCED_TEACHER, cfg, limit=a.limit)
    print(f"best val AF AUROC {r['best']:.4f}; {r['train_seconds']} s; checkpoint {a.out}")
    return 0


def _add_distill(sub) -> None:
    p = sub.add_parser(
        "distill", help="distil a Net1D teacher into a compact int8-friendly student",
        description="Distil a teacher (official ECGFounder {'state_dict': ...} checkpoint or any Net1D checkpoint) "
                    "into an EdgeStudent on Challenge 2017 windows (labeled) or on your own records (unlabeled). "
                    "Uses the GPU when present (AMP); for several GPUs run "
                    "`torchrun --nproc_per_node=N -m ecg_edge distill ...`.")
    p.add_argument("--teacher", default="models/reference_teacher.pth", help="teacher checkpoint")
    p.add_argument("--teacher-config", default=None,
                   help="JSON file with the Net1D config (official checkpoints carry none; default: ECGFounder 1-lead)")
    p.add_argument("--records", nargs="*", default=None,
                   help="unlabeled records (WFDB path without extension, .npz, or .csv with --fs) instead of Challenge 2017")
    p.add_argument("--fs", type=float, default=None, help="sample rate of CSV records in Hz")
    p.add_argument("--no-hard-labels", action="store_true", help="ignore Challenge labels: pure distillation")
    p.add_argument("--train-hop", type=float, default=2.5,
                   help="seconds between training windows (overlapping windows = more teacher targets)")
    p.add_argument("--out", default="models/student.pth")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--samples-per-epoch", type=int, default=16384)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.7, help="weight of the teacher term (1 - alpha: hard labels)")
    p.add_argument("--hint-weight", type=float, default=0.1, help="feature-hint MSE weight (0 disables)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from <out dir>/distill_run/last.pt")
    p.add_argument("--limit", type=int, default=None, help="use only the first N records of each split (smoke runs)")
    p.set_defaults(func=_run_distill)


def _run_distill(a) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from distill.data import WindowSet, cache_dir, cinc2017_windows
    from distill.distiller import DistillConfig, distill
    from distill.trainer import TrainConfig
    from edge_sdk.records import read_record
    from edge_sdk.windowing import record_windows

    if a.records:
        recs = [read_record(r, fs_hz=a.fs) for r in a.records]
        chunks = [record_windows(r.signal_mv, r.fs_hz, a.train_hop) for r in recs]
        x = np.concatenate(chunks)
        train = WindowSet(x, np.full(len(x), -1, np.int64),
                          np.concatenate([np.full(len(c), i) for i, c in enumerate(chunks)]), [r.name for r in recs])
    else:
        train = cinc2017_windows("train", hop_s=a.train_hop, limit=a.limit)
        if a.no_hard_labels:
            train = WindowSet(train.x, np.full(len(train), -1, np.int64), train.record_idx, train.records)
    val = cinc2017_windows("val", limit=a.limit)
    tcfg = json.loads(Path(a.teacher_config).read_text()) if a.teacher_config else None
    if isinstance(tcfg, dict) and "config" in tcfg:
        tcfg = tcfg["config"]
    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, samples_per_epoch=a.samples_per_epoch,
                      device=a.device, seed=a.seed, resume=a.resume, out_dir=str(Path(a.out).parent / "distill_run"))
    dcfg = DistillConfig(temperature=a.temperature, alpha=1.0 if (a.records or a.no_hard_labels) else a.alpha,
                         hint_weight=a.hint_weight)
    r = distill(a.teacher, a.out, train, val, cfg=dcfg, train_cfg=cfg, teacher_config=tcfg, cache=cache_dir())
    print(f"student: {r['params']:,} parameters, {r['macs_per_window'] / 1e6:.2f} MMAC per 10-s window; "
          f"best validation score {r['best']:.4f}; {r['seconds']} s; checkpoint {a.out}")
    return 0


def _add_quantize(sub) -> None:
    p = sub.add_parser(
        "quantize", help="student -> ONNX fp32, int8 ONNX (QDQ) and int8 TFLite, with fidelity, in a model bundle",
        description="Export the student to ONNX, quantize it to int8 with ONNX Runtime static QDQ (per-channel "
                    "weights, real calibration windows through the shared preprocessing) and to a full-integer "
                    "TFLite model, quantize the teacher the same way, measure fidelity on the held-out split and "
                    "write a bundle with a JSON model card.")
    p.add_argument("--student", default="models/student.pth")
    p.add_argument("--teacher", default="models/reference_teacher.pth", help="teacher to quantize side by side ('' to skip)")
    p.add_argument("--out", default="bundles/default", help="bundle folder to (re)write")
    p.add_argument("--calibration-windows", type=int, default=256, help="training windows used for calibration")
    p.add_argument("--calibration-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--no-tflite", action="store_true", help="skip the TFLite model (no TensorFlow needed)")
    p.add_argument("--qat-epochs", type=int, default=4,
                   help="quantization-aware fine-tuning epochs before export (writes <student>_qat.pth); "
                        "0 = post-training quantization of the student as it is")
    p.add_argument("--qat-self-weight", type=float, default=4.0,
                   help="weight of the float-vs-fake-quantized agreement term during QAT")
    p.add_argument("--int8-first-conv", action="store_true",
                   help="quantize the first convolution too (default keeps it float in the ONNX int8 model)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N records of each split (smoke runs)")
    p.set_defaults(func=_run_quantize)


def _run_quantize(a) -> int:
    import numpy as np

    from distill.data import cinc2017_windows
    from quantize.build import build_bundle, print_report

    from pathlib import Path

    train = cinc2017_windows("train", limit=a.limit)
    rng = np.random.default_rng(0)
    calib = train.x[rng.choice(len(train), min(a.calibration_windows, len(train)), replace=False)].astype(np.float32)
    student = a.student
    if a.qat_epochs > 0:
        from distill.checkpoint import load_model
        from distill.data import cache_dir
        from distill.distiller import teacher_targets
        from edge_sdk.bundle import sha256_of
        from quantize.qat import qat_finetune

        if not a.teacher:
            raise SystemExit("ecg-edge quantize: --qat-epochs needs the --teacher the student was distilled from")
        teacher, _ = load_model(a.teacher)
        t_logits, _ = teacher_targets(teacher, train.x, sha256_of(a.teacher), cache_dir())
        student = str(Path(a.student).with_name(Path(a.student).stem + "_qat.pth"))
        r = qat_finetune(a.student, student, train.x, train.y, t_logits, epochs=a.qat_epochs,
                         self_weight=a.qat_self_weight)
        print(f"[quantize] quantization-aware fine-tuning: {a.qat_epochs} epochs, {r['seconds']} s -> {student}")
    card = build_bundle(student, a.out, calib, cinc2017_windows("test", limit=a.limit),
                        cinc2017_windows("val", limit=a.limit), a.teacher or None, tflite=not a.no_tflite,
                        calibration_method=a.calibration_method, float_first_conv=not a.int8_first_conv)
    print_report(card)
    return 0


def _add_stream(sub) -> None:
    p = sub.add_parser(
        "stream", help="stream ECG (Polar H10, emulated H10 or a file) through the model and print predictions",
        description="Read ECG from a Polar H10 at ADDRESS over BLE (bleak), from an emulated H10 fed with a real "
                    "record (--emulate, bumble over an in-process link), or from a file (--replay), and print one "
                    "line per window: time, top label, AF probability, signal quality and latency.")
    p.add_argument("address", nargs="?", help="BLE address (or macOS UUID) of the Polar H10")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--emulate", action="store_true", help="emulated Polar H10 fed with --record (MIT-BIH)")
    src.add_argument("--replay", metavar="FILE", help="WFDB record path (no extension), .csv (see --fs) or .npz")
    p.add_argument("--record", default="201", help="MIT-BIH record fed to the emulator (default 201: has AF)")
    p.add_argument("--fs", type=float, default=None, help="sample rate of a CSV replay file, Hz")
    p.add_argument("--bundle", default="bundles/default", help="model bundle folder")
    p.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "tflite"])
    p.add_argument("--precision", default="int8", choices=["int8", "fp32"])
    p.add_argument("--hop", type=float, default=None, help="seconds between windows (default: the card's)")
    p.add_argument("--speed", type=float, default=1.0, help="replay/emulator speed (1 = real time, 0 = max for replay)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds of ECG")
    p.add_argument("--save", metavar="CSV", default=None, help="record every received sample to this CSV")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print predictions as JSON lines")
    p.set_defaults(func=_run_stream)


def _run_stream(a) -> int:
    from .streaming import run_stream

    if not (a.address or a.emulate or a.replay):
        raise SystemExit("ecg-edge stream: give a device ADDRESS, --emulate or --replay FILE (see --help)")
    run_stream(a)
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench", help="latency/throughput/size/memory/AUROC of teacher and student models, plus streaming figures",
        description="Measure, in one run on this machine at 1 thread and at all cores: teacher fp32 (torch and "
                    "ONNX Runtime), student fp32, student int8 ONNX and student int8 TFLite: latency per 10-s window "
                    "(p50/p95/p99), throughput with batching, model size, peak memory and AF AUROC on the held-out "
                    "records; then streaming end-to-end latency, CPU per stream and streams per core. Writes JSON, "
                    "a markdown table and a PNG plot.")
    p.add_argument("--bundle", default="bundles/default")
    p.add_argument("--teacher", default="models/reference_teacher.pth")
    p.add_argument("--out", default="bench_results")
    p.add_argument("--repeats", type=int, default=100, help="batch-1 latency repetitions per model")
    p.add_argument("--batch", type=int, default=32, help="batch size for the throughput figure")
    p.add_argument("--eval-limit", type=int, default=None, help="only the first N held-out records for AUROC")
    p.add_argument("--stream-records", type=int, default=8)
    p.add_argument("--stream-seconds", type=float, default=25.0, help="length of the real-time streaming check")
    p.add_argument("--emulated-streams", type=int, default=16,
                   help="concurrent emulated Polar H10 streams (bumble + bleak) in the real-time check")
    p.add_argument("--quick", action="store_true", help="fewer repeats, 300 held-out records, 12-s streaming check")
    p.set_defaults(func=_run_bench)


def _run_bench(a) -> int:
    from .bench import run_bench

    if a.quick:
        a.repeats, a.eval_limit, a.stream_seconds = min(a.repeats, 30), a.eval_limit or 300, min(a.stream_seconds, 12.0)
    report = run_bench(a.bundle, a.teacher, a.out, a.repeats, a.batch, a.eval_limit, a.stream_records, a.stream_seconds,
                       emulated_count=a.emulated_streams)
    from .bench import markdown_table

    print(markdown_table(report))
    print(f"written: {a.out}/results.json, {a.out}/results.md, {a.out}/latency.png")
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="the main job: bundle, emulated Polar H10 stream of a real record, live predictions, benchmark",
        description="Load the int8 bundle (building it from the repository's teacher and student if missing), "
                    "stream a real MIT-BIH record through an emulated Polar H10 into the SDK, print live "
                    "predictions, and finish with a benchmark table.")
    p.add_argument("--bundle", default="bundles/default")
    p.add_argument("--record", default="201", help="MIT-BIH record streamed through the emulated H10")
    p.add_argument("--seconds", type=float, default=90.0, help="seconds of ECG to stream")
    p.add_argument("--speed", type=float, default=10.0, help="emulator speed-up (1 = real time)")
    p.add_argument("--out", default="bench_results/demo")
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
    _add_quantize(sub)
    _add_stream(sub)
    _add_bench(sub)
    _add_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from edge_sdk.errors import EdgeSDKError

    try:
        return int(args.func(args) or 0)
    except EdgeSDKError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
