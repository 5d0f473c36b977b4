"""Latency, throughput, size, memory and accuracy of every model, in one run on one machine.

Models: teacher fp32 in torch (when a teacher checkpoint is given or the card's is found), teacher fp32 ONNX
(only in bundles built with ``--include-teacher``), student fp32 (ONNX Runtime), student int8 (ONNX Runtime
QDQ) and student int8 (TFLite via ai-edge-litert), each at 1 thread and at all cores. Each model runs in
its own process (``python -m ecg_edge.bench``) so that its peak resident memory (VmHWM) is its own.
Accuracy is per-label record-level AUROC, keyed by output name, for the outputs the evaluation data can
score; the others are listed with the reason. Streaming figures come from replaying real records through
:class:`edge_sdk.stream.EcgStream`.
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge_sdk.inference.onnx_backend import int8_kernel

MODELS = [
    # (key, label, runtime, bundle file or checkpoint)
    ("teacher_torch_fp32", "teacher fp32 (torch)", "torch", None),
    ("teacher_onnx_fp32", "teacher fp32 (ONNX Runtime)", "onnxruntime", "teacher_fp32.onnx"),
    ("student_onnx_fp32", "student fp32 (ONNX Runtime)", "onnxruntime", "student_fp32.onnx"),
    ("student_onnx_int8", "student int8 (ONNX Runtime QDQ)", "onnxruntime", "student_int8.onnx"),
    ("student_tflite_int8", "student int8 (TFLite, ai-edge-litert)", "tflite", "student_int8.tflite"),
]


def _peak_rss_mb() -> float:
    """High-water resident memory of this process in MB: VmHWM (ru_maxrss would include the forking
    parent's size on Linux, since it survives exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99))}


def _open_predict(key: str, bundle_dir: Path, teacher_ckpt: Path, threads: int):
    """Return (predict(windows (n, 5000)) -> probabilities of the bundle's labels, size_bytes)."""
    if key == "teacher_torch_fp32":
        import torch

        from distill.distiller import activate, load_teacher
        from edge_sdk.bundle import load_bundle

        torch.set_num_threads(threads)
        card = load_bundle(bundle_dir).card
        ident = card["teacher"]
        cfg = ident.get("config") if isinstance(ident.get("config"), dict) else None
        teacher = load_teacher(teacher_ckpt, cfg)
        model, sel = teacher.model, torch.tensor(teacher.labels.indices([d["name"] for d in card["labels"]]))
        size = sum(p.numel() * 4 for p in model.parameters()) + sum(b.numel() * b.element_size() for b in model.buffers())

        def predict(x):
            with torch.inference_mode():
                logits = model(torch.from_numpy(np.ascontiguousarray(x, np.float32))[:, None]).index_select(1, sel)
            return activate(logits.numpy(), teacher.labels.activation)
        return predict, size
    from edge_sdk.bundle import load_bundle
    from edge_sdk.inference import open_backend

    bundle = load_bundle(bundle_dir)
    name = dict((k, f) for k, _, _, f in MODELS)[key]
    backend = open_backend(bundle, file_name=name, threads=threads)
    return backend.predict, bundle.card["files"][name]["bytes"]


def measure_model(key: str, bundle_dir: str, teacher_ckpt: str, threads: int, repeats: int, batch: int,
                  windows_file: str) -> dict:
    """Runs inside a subprocess: latency at batch 1, throughput at ``batch``, peak RSS, then probabilities of
    every window in ``windows_file`` (saved next to it for the parent to score).

    Only numpy, the runtime and the model are loaded before the peak-RSS reading (torch only for the torch
    teacher, where it is the runtime); the windows are memory-mapped and only those used for timing are read.
    """
    x = np.load(windows_file, mmap_mode="r")
    predict, size = _open_predict(key, Path(bundle_dir), Path(teacher_ckpt), threads)
    first = np.ascontiguousarray(x[:max(batch * 4, 64)])
    for _ in range(3):
        predict(first[:1])
    lat = []
    for i in range(repeats):
        t = time.perf_counter()
        predict(first[i % len(first): i % len(first) + 1])
        lat.append((time.perf_counter() - t) * 1e3)
    n_tp = min(len(first), batch * 4)
    t = time.perf_counter()
    for s in range(0, n_tp, batch):
        predict(first[s:s + batch])
    throughput = n_tp / (time.perf_counter() - t)
    peak = _peak_rss_mb()
    probs = np.concatenate([predict(np.ascontiguousarray(x[s:s + 256])) for s in range(0, len(x), 256)])
    np.save(f"{windows_file}.{key}.{threads}.probs.npy", probs)
    return {"key": key, "threads": threads, "latency_ms": _percentiles(lat), "throughput_windows_per_s": throughput,
            "batch": batch, "size_bytes": int(size), "peak_rss_mb": peak}


def streaming_figures(bundle_dir: str, records: list[str], seconds: float, runtime: str = "onnxruntime") -> dict:
    """End-to-end latency (last sample of a window -> prediction), CPU per stream, and streams per core.

    ``records`` (Challenge 2017 names) are replayed concurrently as fast as possible on one thread each;
    the CPU seconds spent per second of ECG give how many real-time streams one core sustains. A second run
    at real-time pacing, with that many streams, checks that they keep up (end-to-end p99 stays below the hop).
    """
    from edge_sdk.datasets import Cinc2017
    from edge_sdk.sources import ReplaySource
    from edge_sdk.stream import EcgStream

    ds = Cinc2017()
    recs = [ds.read(r) for r in records]

    async def run(speed: float, copies: int, duration: float | None):
        streams = [EcgStream(ReplaySource(recs[i % len(recs)], speed=speed, duration_s=duration), bundle_dir,
                             runtime=runtime) for i in range(copies)]
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(s.run() for s in streams))
        return streams, time.process_time() - c0, time.perf_counter() - t0

    streams, cpu, wall = asyncio.run(run(0, len(recs), None))
    signal_s = sum(s.samples_received / s.source.nominal_fs_hz for s in streams)
    cpu_per_signal_s = cpu / signal_s
    capacity = int(1.0 / cpu_per_signal_s)
    # real-time check with a wall budget of `seconds`: each stream is a real-time replay
    n_check = max(1, min(capacity, 200))
    check, cpu_rt, wall_rt = asyncio.run(run(1.0, n_check, seconds))
    e2e = [v for s in check for v in s.latency.samples.get("end_to_end", [])]
    hop_ms = float(check[0].bundle.card["hop_seconds"]) * 1e3

    async def run_gateway():  # the same records through one EcgGateway: batched preprocessing and inference
        from edge_sdk.stream import EcgGateway

        gw = EcgGateway(bundle_dir, runtime=runtime)
        for i, rec in enumerate(recs):
            gw.add(ReplaySource(rec, speed=0), name=str(i))
        c0 = time.process_time()
        async for _ in gw:
            pass
        return gw, time.process_time() - c0

    gw, cpu_gw = asyncio.run(run_gateway())
    gw_cpu_per_signal_s = cpu_gw / sum(m.samples_received / m.source.nominal_fs_hz for m in gw.members)
    return {"gateway_cpu_percent_per_stream": 100 * gw_cpu_per_signal_s,
            "gateway_streams_per_core_estimate": int(1.0 / gw_cpu_per_signal_s),
            "gateway_mean_batch": gw.windows_classified / max(gw.batches, 1),
            "cpu_s_per_signal_s": cpu_per_signal_s, "cpu_percent_per_stream": 100 * cpu_per_signal_s,
            "streams_per_core_estimate": capacity, "realtime_check_streams": n_check,
            "realtime_check_seconds": seconds, "realtime_check_cpu_percent": 100 * cpu_rt / wall_rt,
            "realtime_end_to_end_ms": _percentiles(e2e) if e2e else None,
            "realtime_kept_up": bool(e2e) and float(np.percentile(e2e, 99)) < hop_ms,
            "windows_in_check": len(e2e)}


def emulated_streams(bundle_dir: str, count: int, seconds: float, record: str = "201") -> dict:
    """``count`` emulated Polar H10s (each its own bumble link, peripheral and bleak client) streaming at real
    time into their own EcgStream, all in this process: CPU use and whether every stream keeps up."""
    from .stream_command import open_source, stream_predictions

    async def one():
        async with open_source(None, True, None, record, 1.0, duration=seconds) as src:
            return await stream_predictions(src, bundle_dir, seconds, print_lines=False)

    async def all_streams():
        return await asyncio.gather(*(one() for _ in range(count)))

    c0, t0 = time.process_time(), time.perf_counter()
    streams = asyncio.run(all_streams())
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    e2e = [v for s in streams for v in s.latency.samples.get("end_to_end", [])]
    sdk = [v for s in streams for v in s.latency.samples.get("since_arrival", [])]
    hop_ms = float(streams[0].bundle.card["hop_seconds"]) * 1e3
    return {"streams": count, "seconds_of_ecg": seconds, "wall_s": wall, "cpu_percent_of_one_core": 100 * cpu / wall,
            "cpu_percent_per_stream": 100 * cpu / wall / count, "windows": len(e2e),
            "end_to_end_ms": _percentiles(e2e) if e2e else None, "since_arrival_ms": _percentiles(sdk) if sdk else None,
            "kept_up": bool(e2e) and float(np.percentile(e2e, 99)) < hop_ms}


def find_teacher(bundle_dir: str | Path, teacher_ckpt: str | Path | None) -> tuple[Path | None, str]:
    """The teacher checkpoint to time: ``teacher_ckpt``, else the one the card names when found with the
    card's sha256 (in the working directory or ``models/``); ``(None, why)`` otherwise."""
    from distill.checkpoint import find_recorded_checkpoint
    from edge_sdk.bundle import load_bundle

    if teacher_ckpt:
        return Path(teacher_ckpt), "given"
    t = load_bundle(bundle_dir).card["teacher"]
    ident = t.get("identity") or {}
    names = [n for n in (ident.get("path"), t.get("checkpoint"), ident.get("name")) if n]
    found = find_recorded_checkpoint(names, t.get("checkpoint_sha256") or ident.get("sha256"), [Path("models")])
    if found is not None:
        return found, "named in the model card"
    return None, f"the card's teacher {names[:1] or '(none)'} was not found; pass --teacher to time it"


def run_bench(bundle_dir: str = "bundles/default", teacher_ckpt: str | None = None,
              out_dir: str = "bench_results", repeats: int = 100, batch: int = 32, eval_limit: int | None = None,
              stream_records: int = 8, stream_seconds: float = 25.0, models: list[str] | None = None,
              emulated_count: int = 16, force: bool = False) -> dict:
    """Run everything and write ``results.json``, ``results.md`` and ``latency.png`` to ``out_dir`` (a
    non-empty ``out_dir`` is refused unless ``force``)."""
    import tempfile

    from tqdm import tqdm

    from distill.data import cinc2017_windows
    from distill.metrics import evaluate_by_name
    from edge_sdk.bundle import load_bundle
    from edge_sdk.outputs import check_new_dir

    out = check_new_dir(out_dir, force, "benchmark output folder")
    out.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(bundle_dir)
    names, activation = bundle.labels, bundle.label_table.activation
    teacher_path, teacher_note = find_teacher(bundle_dir, teacher_ckpt)
    cores = os.cpu_count() or 1
    available = {k for k, _, _, f in MODELS if (f is None and teacher_path is not None) or f in bundle.card["files"]}
    keys = [k for k in (models or [k for k, *_ in MODELS]) if k in available]
    results = []
    jobs = [(k, t) for k in keys for t in sorted({1, cores})]
    test = cinc2017_windows("test", limit=eval_limit)
    tmp = tempfile.TemporaryDirectory()
    windows_file = str(Path(tmp.name) / "test_windows.npy")
    np.save(windows_file, test.x.astype(np.float32))
    not_scored: dict[str, str] = {}
    for key, threads in tqdm(jobs, desc="benchmark", unit="model"):
        args = json.dumps([key, str(bundle_dir), str(teacher_path), threads, repeats, batch, windows_file])
        proc = subprocess.run([sys.executable, "-m", "ecg_edge.bench", args], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not line:
            raise RuntimeError(f"benchmark of {key} failed:\n{proc.stderr[-2000:]}")
        r = json.loads(line[0][len("RESULT "):])
        probs = np.load(f"{windows_file}.{key}.{threads}.probs.npy")
        ev = evaluate_by_name(probs, names, test.record_idx, test.y, test.classes, test.label_map, activation)
        r.update(auroc=ev["auroc"], n_records=ev["n_records"])
        not_scored = ev["not_scored"]
        results.append(r)
    tmp.cleanup()
    from distill.data import cinc2017_split
    from edge_sdk.datasets import Cinc2017

    test_names = cinc2017_split(Cinc2017())["test"]
    long_records = [n for n in test_names][:stream_records]
    streaming = streaming_figures(bundle_dir, long_records, stream_seconds)
    streaming["emulated_ble"] = emulated_streams(bundle_dir, emulated_count, stream_seconds)
    report = {"machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": cores,
                          "processor": platform.processor(), "int8_kernel": int8_kernel()},
              "settings": {"repeats": repeats, "batch": batch, "eval_limit": eval_limit, "bundle": str(bundle_dir),
                           "teacher": str(teacher_path) if teacher_path else None, "teacher_note": teacher_note},
              "evaluation": {"data": test.description, "n_records": len(test.records), "labels": names,
                             "scored": sorted({k for r in results for k in r["auroc"]}, key=names.index),
                             "not_scored": not_scored},
              "models": results, "streaming": streaming}
    (out / "results.json").write_text(json.dumps(report, indent=1))
    md = markdown_table(report)
    (out / "results.md").write_text(md)
    plot(report, out / "latency.png")
    return report


def markdown_table(report: dict) -> str:
    labels = {k: l for k, l, _, _ in MODELS}
    ev = report["evaluation"]
    scored = ev["scored"]
    head = "| model | threads | p50 ms | p95 ms | p99 ms | windows/s (batch {}) | size KB | peak RSS MB (process) |".format(
        report["settings"]["batch"]) + "".join(f" AUROC {n} |" for n in scored)
    rows = [head, "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(scored)]
    for r in report["models"]:
        l = r["latency_ms"]
        rows.append(f"| {labels[r['key']]} | {r['threads']} | {l['p50']:.2f} | {l['p95']:.2f} | {l['p99']:.2f} | "
                    f"{r['throughput_windows_per_s']:.0f} | {r['size_bytes'] / 1024:.0f} | {r['peak_rss_mb']:.0f} |"
                    + "".join(f" {r['auroc'][n]:.4f} |" if n in r["auroc"] else " - |" for n in scored))
    rows.append("")
    rows.append(f"AUROC: record level on {ev['data']} ({ev['n_records']} records), per output by name.")
    if ev["not_scored"]:
        rows.append("Not scored: " + "; ".join(f"{n} ({why})" for n, why in ev["not_scored"].items()) + ".")
    if report["settings"].get("teacher") is None:
        rows.append(f"Teacher in torch not timed: {report['settings'].get('teacher_note')}.")
    s = report["streaming"]
    e2e = s["realtime_end_to_end_ms"] or {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    rows += ["", "| streaming (student int8 ONNX, 1 thread) | value |", "|---|---:|",
             f"| CPU per real-time stream | {s['cpu_percent_per_stream']:.2f} % of one core |",
             f"| streams one core sustains (from CPU cost) | {s['streams_per_core_estimate']} |",
             *([f"| the same records through one EcgGateway (batched, mean batch {s['gateway_mean_batch']:.1f}): "
                f"CPU per stream / streams per core | {s['gateway_cpu_percent_per_stream']:.2f} % / "
                f"{s['gateway_streams_per_core_estimate']} |"] if "gateway_mean_batch" in s else []),
             f"| real-time check: {s['realtime_check_streams']} concurrent streams for {s['realtime_check_seconds']:.0f} s | "
             f"{'kept up' if s['realtime_kept_up'] else 'fell behind'} |",
             f"| end-to-end latency in that check p50 / p95 / p99 | {e2e['p50']:.1f} / {e2e['p95']:.1f} / {e2e['p99']:.1f} ms |"]
    em = s.get("emulated_ble")
    if em:
        l = em["end_to_end_ms"] or {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
        rows += [f"| emulated Polar H10 over bumble + bleak: {em['streams']} concurrent real-time streams, "
                 f"{em['seconds_of_ecg']:.0f} s | {'kept up' if em['kept_up'] else 'fell behind'}, "
                 f"{em['cpu_percent_of_one_core']:.0f} % of one core in all ({em['cpu_percent_per_stream']:.1f} % per stream, "
                 "emulator included) |",
                 f"| end-to-end latency of those streams p50 / p95 / p99 | {l['p50']:.1f} / {l['p95']:.1f} / {l['p99']:.1f} ms |"]
    return "\n".join(rows) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {k: l for k, l, _, _ in MODELS}
    rs = report["models"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [f"{labels[r['key']]}\n{r['threads']} thr" for r in rs]
    y = np.arange(len(rs))
    axes[0].barh(y, [r["latency_ms"]["p50"] for r in rs], color="tab:blue", label="p50")
    axes[0].scatter([r["latency_ms"]["p99"] for r in rs], y, color="tab:red", zorder=3, label="p99")
    axes[0].set_yticks(y, names, fontsize=7)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("latency per 10-s window (ms, log)")
    axes[0].legend()
    axes[1].barh(y, [r["size_bytes"] / 1024 for r in rs], color="tab:green")
    axes[1].set_yticks(y, [""] * len(rs))
    axes[1].set_xscale("log")
    axes[1].set_xlabel("model size (KB, log)")
    for i, r in enumerate(rs):
        if r["auroc"]:
            mean = float(np.mean(list(r["auroc"].values())))
            axes[1].text(r["size_bytes"] / 1024, i, f"  mean AUROC {mean:.3f} ({len(r['auroc'])} labels)",
                         va="center", fontsize=7)
    fig.suptitle(f"{report['machine']['cores']}-core CPU, {report['machine']['platform'][:40]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":  # one model's measurement in its own process (see run_bench)
    print("RESULT", json.dumps(measure_model(*json.loads(sys.argv[1]))), flush=True)
