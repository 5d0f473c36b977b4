"""Conformance vectors and the preprocessing specification a native (Android/iOS) port follows.

:func:`preprocessing_spec` writes every preprocessing step with its numbers (filter coefficients and
initial-condition vectors, the zero-phase method and padding, the median kernel and its edge mode, the
z-score formula, the resampling grid rule) into the model card under ``preprocessing_spec``, so that an
app can re-implement the chain without scipy.

:func:`write_conformance` picks real 10-s windows from held-out records (Challenge 2017 test split: one
normal, one AF, one other rhythm, one noisy; plus MIT-BIH 201 at 130 Hz, the Polar H10 rate, as the
emulated H10 sends it) and stores for each the raw input at its source rate (mV), the 500 Hz resampled
signal, each filter stage, the preprocessed window and every model file's output on it, in
``conformance.npz``; the card's ``conformance`` section lists the vectors, the stages and the tolerance of
each. ``ecg-edge verify-port`` compares a port's dump of the same stages against them.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edge_sdk.preprocessing import (PreprocessingConfig, _filtfilt, _median_baseline, _zscore_into, filter_design,
                                    preprocess_window, resample_uniform)

CONFORMANCE_FILE = "conformance.npz"
SPEC_VERSION = 1

#: Signal stages in chain order: (name, dtype, units, absolute tolerance, what it is).
#: Tolerances were set from two plain-numpy float64 ports of the card (tests/numpy_port.py): one with
#: scipy's operation order reproduces every stage bit for bit; one with another (equally valid) order of the
#: lfilter additions differs by up to 3e-15 mV after the notch, 1.2e-6 mV after the band-pass (its (b, a)
#: form amplifies last-bit differences) and 5.5e-6 after the z-score. Each tolerance leaves a margin of
#: >= 15x above that and stays far below anything that moves a model output. A port must filter in float64.
STAGES = [
    ("raw_mv", "float64", "mV", None, "the input at its source rate (given, not compared)"),
    ("resampled_500hz", "float64", "mV", 1e-9, "linear resampling onto k / 500 s from the first sample"),
    ("notch_500hz", "float64", "mV", 1e-9, "window after the zero-phase notch"),
    ("bandpass_500hz", "float64", "mV", 2e-5, "after the zero-phase Butterworth band-pass"),
    ("baseline_500hz", "float64", "mV", 2e-5, "the median baseline of the band-passed window"),
    ("preprocessed", "float32", "z-score", 1e-4, "(band-passed - baseline), z-scored, float32: the model input"),
]
#: Model output tolerance (absolute, probability) by precision. int8 kernels of other CPUs (ARM vs x86,
#: XNNPACK vs reference) may round intermediate requantizations differently: up to a few 1/256 steps.
OUTPUT_TOLERANCE = {"fp32": 1e-4, "int8": 0.02}

CINC_CLASSES = [("normal", "N"), ("af", "A"), ("other", "O"), ("noisy", "~")]
#: The output a vector of each class should show when the student has it (Challenge 2017 -> label names).
CLASS_LABELS = {"N": "NORMAL SINUS RHYTHM", "A": "ATRIAL FIBRILLATION", "O": "OTHER RHYTHM", "~": "NOISE",
                "AFIB": "ATRIAL FIBRILLATION"}
#: Records per class tried, in test-split order, for one whose window the model labels as its class.
CANDIDATES = 20


# ----------------------------------------------------------------------------- the specification

def preprocessing_spec(config: PreprocessingConfig, hop_seconds: float) -> dict:
    """Every step of the chain with its numbers, at the model rate ``config.fs_hz`` (filtering always
    runs after resampling, so these coefficients are the only ones a port needs)."""
    d = filter_design(config.fs_hz, config)
    fs = config.fs_hz
    pad_n = 3 * max(len(d.notch_a), len(d.notch_b))
    pad_b = 3 * max(len(d.band_a), len(d.band_b))
    hop = int(round(hop_seconds * fs))
    return {
        "spec_version": SPEC_VERSION,
        "arithmetic": "float64 (IEEE double) for every step up to and including the z-score; the model input is the "
                      "z-scored window cast to float32. The (b, a) band-pass is ill-conditioned: float32 filtering "
                      "does not meet the conformance tolerances.",
        "order": ["resample", "window", "notch", "bandpass", "median_baseline", "subtract_baseline", "zscore"],
        "resample": {
            "fs_out_hz": fs, "method": "linear interpolation",
            "grid": "input sample i is at t_i = i / fs_in seconds (t relative to the first sample of the segment; in a "
                    "stream: the sensor timestamps relative to the segment's first sample). Output sample k is at "
                    "t_k = k / fs_out for k = 0, 1, ..., K with K = floor(t_last * fs_out + 1e-9), t_last = the "
                    "last input time. y_k = x_i + (x_{i+1} - x_i) * (t_k - t_i) / (t_{i+1} - t_i) with "
                    "t_i <= t_k <= t_{i+1} (numpy.interp). A gap ends the segment: a new grid starts at the next "
                    "sample, nothing is interpolated across it, and no window spans it.",
            "n_out": "floor((n_in - 1) / fs_in * fs_out + 1e-9) + 1 for a whole record",
        },
        "window": {"samples": config.window_samples, "hop_samples": hop, "hop_seconds": hop_seconds,
                   "rule": f"window j = resampled samples [j * {hop}, j * {hop} + {config.window_samples}) of a "
                           "segment; each window is filtered on its own (the filters below run on the window, not "
                           "the record)"},
        "notch": {"design": f"scipy.signal.iirnotch(w0={config.notch_hz}, Q={config.notch_q}, fs={fs})",
                  "notch_hz": config.notch_hz, "q": config.notch_q,
                  "formula": "w0 = 2*pi*notch_hz/fs; bw = w0/Q; beta = tan(bw/2); g = 1/(1+beta); "
                             "b = [g, -2*g*cos(w0), g]; a = [1, -2*g*cos(w0), 2*g - 1]",
                  "b": d.notch_b.tolist(), "a": d.notch_a.tolist(), "zi": d.notch_zi.tolist()},
        "bandpass": {"design": f"scipy.signal.butter({config.bandpass_order}, [{config.bandpass_low_hz}/{fs / 2}, "
                               f"{config.bandpass_high_hz}/{fs / 2}], btype='band') as (b, a)",
                     "low_hz": config.bandpass_low_hz, "high_hz": config.bandpass_high_hz,
                     "order": config.bandpass_order, "form": "transfer function (b, a), not second-order sections",
                     "b": d.band_b.tolist(), "a": d.band_a.tolist(), "zi": d.band_zi.tolist()},
        "zero_phase": {
            "method": "scipy.signal.filtfilt(b, a, x) with its defaults: method 'pad', padtype 'odd'",
            "padlen": "3 * max(len(a), len(b))", "padlen_notch": pad_n, "padlen_bandpass": pad_b,
            "steps": [
                "n = padlen; ext = [2*x[0] - x[n], 2*x[0] - x[n-1], ..., 2*x[0] - x[1]] + x + "
                "[2*x[-1] - x[-2], 2*x[-1] - x[-3], ..., 2*x[-1] - x[-n-1]]  (odd extension, length len(x) + 2n)",
                "forward: y = lfilter(b, a, ext) with initial state zi * ext[0]",
                "backward: r = lfilter(b, a, reverse(y)) with initial state zi * y[-1]",
                "result = reverse(r)[n : n + len(x)]",
            ],
            "lfilter": "direct form II transposed, a[0] = 1 (both filters are normalised): for each sample x[m]: "
                       "y[m] = b[0]*x[m] + z[0]; z[j] = b[j+1]*x[m] + z[j+1] - a[j+1]*y[m] for j = 0..N-2; "
                       "z[N-1] = b[N]*x[m] - a[N]*y[m]  (N = len(a) - 1; z starts as the initial state)",
            "zi": "scipy.signal.lfilter_zi(b, a): the steady state of the step response (given above)",
            "applied": "notch first, then band-pass, each as its own zero-phase pass",
        },
        "median_baseline": {
            "kernel_samples": d.median_samples,
            "kernel_rule": f"int(median_window_seconds * fs) + 1 = int({config.median_window_seconds} * {fs}) + 1",
            "centered": True,
            "edge_mode": "constant zero padding: samples outside the window count as 0.0 (scipy.ndimage."
                         "median_filter(mode='constant', cval=0.0), the same as scipy.signal.medfilt)",
            "formula": f"baseline[m] = median(y[m - {d.median_samples // 2}], ..., y[m + {d.median_samples // 2}]) "
                       "with y[i] = 0 outside 0..len(y)-1; filtered = y - baseline",
        },
        "zscore": {"formula": "z = (x - mean(x)) / (std(x) + eps) over the window",
                   "std": "population standard deviation (divide by n, ddof = 0)", "eps": config.zscore_eps,
                   "output": "float32"},
        "model_input": {
            "onnx": f"float32 (batch, 1, {config.window_samples})",
            "tflite": f"(1, {config.window_samples}, 1) of the dtype in files.<tflite>.quantization.input_dtype: "
                      "float32 takes z as is and returns probabilities; int8 takes q = clip(round_half_to_even(z / "
                      "input_scale) + input_zero_point, -128, 127) and returns q_out, p = (q_out - "
                      "output_zero_point) * output_scale, scales and zero points in files.<tflite>.quantization",
        },
    }


# ----------------------------------------------------------------------------- the vectors

def stages_of(raw_mv: np.ndarray, fs_in: float, config: PreprocessingConfig) -> dict[str, np.ndarray]:
    """Every stage of the SDK's chain on one raw segment (the first window of its resampled signal)."""
    d = filter_design(config.fs_hz, config)
    resampled = resample_uniform(raw_mv, fs_in, config.fs_hz)
    w = resampled[:config.window_samples]
    notch = _filtfilt(d.notch_b, d.notch_a, d.notch_zi, w)
    band = np.ascontiguousarray(_filtfilt(d.band_b, d.band_a, d.band_zi, notch))
    baseline = _median_baseline(band, d.median_samples)
    pre = _zscore_into(band - baseline, config.zscore_eps, np.float32)
    ref = preprocess_window(w, config)
    if not np.array_equal(pre, ref):  # the stages must be the SDK's own chain, bit for bit
        raise AssertionError("conformance stages differ from preprocess_window")
    return {"raw_mv": np.asarray(raw_mv, np.float64), "resampled_500hz": resampled, "notch_500hz": np.array(notch),
            "bandpass_500hz": band, "baseline_500hz": baseline, "preprocessed": pre}


def _raw_samples(fs_in: float, config: PreprocessingConfig) -> int:
    """Source samples whose resampled signal holds one full window (the window is its first samples)."""
    return int(math.ceil(config.window_seconds * fs_in)) + 1


def conformance_data_available() -> bool:
    """Whether the records the vectors come from (Challenge 2017 and MIT-BIH in ``shared/``) are here."""
    from edge_sdk.paths import datasets_available

    return datasets_available("cinc2017", "mitdb")


def select_sources(config: PreprocessingConfig, held_out: list[str] | None = None, candidates: int = 1) -> list[dict]:
    """The raw segments: the first ``candidates`` test-split Challenge 2017 records of each class (held out
    from training, calibration and thresholds), window 0; and MIT-BIH 201 (atrial fibrillation) at 130 Hz
    from 60 s."""
    from edge_sdk.datasets import Cinc2017, MitBih
    from edge_sdk.preprocessing import resample_linear

    from distill.data import cinc2017_split

    ds = Cinc2017()
    names = held_out or cinc2017_split(ds)["test"]
    out = []
    for vid, cls in CINC_CLASSES:
        found = 0
        for name in names:
            if ds.labels.get(name) != cls:
                continue
            rec = ds.read(name)
            n = _raw_samples(rec.fs_hz, config)
            if rec.signal_mv.shape[0] >= n:
                out.append({"id": vid, "class": cls, "source": "Challenge 2017 test split", "record": name,
                            "start_s": 0.0, "fs_in_hz": float(rec.fs_hz), "raw": rec.signal_mv[:n]})
                found += 1
                if found == candidates:
                    break
    db = MitBih()
    rec = db.read("201", lead="MLII", sampto=120 * 360)  # MIT-BIH: 360 Hz
    fs_h10 = 130.0
    x = np.round(resample_linear(rec.signal_mv, rec.fs_hz, fs_h10) * 1000.0) / 1000.0  # integer µV, as an H10 sends
    start = int(60 * fs_h10)
    n = _raw_samples(fs_h10, config)
    out.append({"id": "h10_130hz_af", "class": "AFIB", "source": "MIT-BIH 201 lead MLII, 360 Hz -> 130 Hz integer "
                "microvolts (the emulated Polar H10's signal)", "record": "mitdb/201", "start_s": 60.0,
                "fs_in_hz": fs_h10, "raw": x[start:start + n]})
    return out


def output_tolerance(entry: dict) -> float:
    return OUTPUT_TOLERANCE[entry["precision"]]


def write_conformance(out: Path, files: dict, labels: list[str], config: PreprocessingConfig,
                      hop_seconds: float) -> dict:
    """Write ``out/conformance.npz`` for the bundle's model ``files`` (card entries, already in ``out``);
    return the card's ``conformance`` section."""
    from edge_sdk.inference.onnx_backend import OnnxBackend

    arrays: dict[str, np.ndarray] = {}
    vectors = []
    backends = {}
    for name, entry in files.items():
        if entry["runtime"] == "onnxruntime":
            backends[name] = OnnxBackend(out / name, threads=1)
        else:
            from edge_sdk.inference.tflite_backend import TFLiteBackend
            backends[name] = TFLiteBackend(out / name, threads=1)
    chosen: list[dict] = []
    ref_name = next(n for n, e in files.items() if e["runtime"] == "onnxruntime" and e["precision"] == "int8") \
        if any(e["runtime"] == "onnxruntime" and e["precision"] == "int8" for e in files.values()) else next(iter(files))
    for src in select_sources(config, candidates=CANDIDATES):
        # per class, the first record whose window the int8 model gives the class's label (else the first one)
        if any(c["id"] == src["id"] for c in chosen):
            prev = next(c for c in chosen if c["id"] == src["id"])
            if prev.get("agrees"):
                continue
        want = CLASS_LABELS.get(src["class"])
        pre = stages_of(src["raw"], src["fs_in_hz"], config)["preprocessed"]
        top = labels[int(np.argmax(backends[ref_name].predict(pre[None])[0]))]
        src["agrees"] = want is None or top == want
        if any(c["id"] == src["id"] for c in chosen):
            if src["agrees"]:
                chosen[[c["id"] for c in chosen].index(src["id"])] = src
        else:
            chosen.append(src)
    for src in chosen:
        src.pop("agrees", None)
        st = stages_of(src["raw"], src["fs_in_hz"], config)
        for k, v in st.items():
            arrays[f"{src['id']}.{k}"] = v
        outs = {}
        for name, b in backends.items():
            p = b.predict(st["preprocessed"][None])[0].astype(np.float32)
            arrays[f"{src['id']}.output.{name}"] = p
            outs[name] = labels[int(np.argmax(p))]
        vectors.append({k: v for k, v in src.items() if k != "raw"} | {
            "raw_samples": int(st["raw_mv"].shape[0]), "resampled_samples": int(st["resampled_500hz"].shape[0]),
            "top_label": outs})
    np.savez_compressed(out / CONFORMANCE_FILE, **arrays)
    return {
        "file": CONFORMANCE_FILE,
        "layout": "numpy .npz (a zip of .npy arrays, little-endian, C order); array '<vector>.<stage>' for each "
                  "stage and '<vector>.output.<model file>' for each model file's output (float32, one value per "
                  "label, card order) on the stored preprocessed window",
        "window_rule": f"the window is the first {config.window_samples} samples of resampled_500hz; the filter "
                       "stages and the preprocessed window are that window's",
        "vectors": vectors,
        "stages": [{"name": n, "dtype": dt, "units": u, "tolerance_abs": tol, "what": what}
                   for n, dt, u, tol, what in STAGES],
        "outputs": {name: {"tolerance_abs": output_tolerance(e), "precision": e["precision"], "runtime": e["runtime"]}
                    for name, e in files.items()},
        "tolerance_rule": "a stage passes when max |port - expected| <= tolerance_abs over all its samples; model "
                          "outputs are compared on the port's own preprocessed window (run through that model file)",
    }
