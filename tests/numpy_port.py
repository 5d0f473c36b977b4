"""A "native port" of the preprocessing written from the model card alone, in plain numpy (no scipy).

Usage: python tests/numpy_port.py BUNDLE DUMP.json [--break STAGE]

Reads ``model_card.json`` (``preprocessing_spec``) and the raw inputs of ``conformance.npz``, runs the chain as
the card specifies, runs each ONNX model file on its own preprocessed window with onnxruntime, and writes a
port dump (format ``ecg-edge/port-dump`` v1, documented in the bundle README). ``--break STAGE`` deliberately
perturbs one stage (for the verify-port test). It exits non-zero if scipy was imported.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np


def lfilter(b, a, x, zi):
    """Direct form II transposed, as the card's zero_phase.lfilter says (a[0] == 1)."""
    b = [float(v) for v in b]
    a = [float(v) for v in a]
    n = len(a) - 1
    z = [float(v) for v in zi]
    y = np.empty(len(x))
    for m, xm in enumerate(x.tolist()):
        ym = b[0] * xm + z[0]
        for j in range(n - 1):
            z[j] = b[j + 1] * xm + z[j + 1] - a[j + 1] * ym
        z[n - 1] = b[n] * xm - a[n] * ym
        y[m] = ym
    return y


def filtfilt(b, a, zi, x):
    n = 3 * max(len(a), len(b))
    zi = np.asarray(zi, np.float64)
    ext = np.concatenate([2 * x[0] - x[n:0:-1], x, 2 * x[-1] - x[-2:-(n + 2):-1]])
    y = lfilter(b, a, ext, zi * ext[0])
    r = lfilter(b, a, y[::-1], zi * y[-1])
    return r[::-1][n:n + len(x)]


def median_zero_padded(y, k):
    h = k // 2
    padded = np.concatenate([np.zeros(h), y, np.zeros(h)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, k)
    return np.median(windows, axis=1)


def resample(raw, fs_in, fs_out):
    t_in = np.arange(len(raw)) / fs_in
    k_last = math.floor(t_in[-1] * fs_out + 1e-9)
    return np.interp(np.arange(k_last + 1) / fs_out, t_in, raw)


def port(raw, fs_in, spec, broken=None):
    out = {}
    out["resampled_500hz"] = resample(raw, fs_in, spec["resample"]["fs_out_hz"])
    w = out["resampled_500hz"][:spec["window"]["samples"]]
    out["notch_500hz"] = filtfilt(spec["notch"]["b"], spec["notch"]["a"], spec["notch"]["zi"], w)
    if broken == "notch_500hz":  # a deliberately broken port: 1 µV of slow sine added after the notch
        out["notch_500hz"] = out["notch_500hz"] + 1e-3 * np.sin(np.arange(len(w)) / 50.0)
    out["bandpass_500hz"] = filtfilt(spec["bandpass"]["b"], spec["bandpass"]["a"], spec["bandpass"]["zi"],
                                     out["notch_500hz"])
    out["baseline_500hz"] = median_zero_padded(out["bandpass_500hz"], spec["median_baseline"]["kernel_samples"])
    y = out["bandpass_500hz"] - out["baseline_500hz"]
    z = (y - y.mean()) / (np.sqrt(np.mean((y - y.mean()) ** 2)) + spec["zscore"]["eps"])
    out["preprocessed"] = z.astype(np.float32)
    return out


def record_rule(card):
    """The card's record rule on its worked example, from the card's words alone (README: record rule)."""
    rule = card.get("record_rule") or {}
    ex = rule.get("example")
    if not ex:
        return None
    p = np.asarray(ex["window_probabilities"], np.float64)
    f = np.concatenate([p.mean(0), np.log(np.maximum(p, rule["log_floor"])).mean(0), p.max(0), p.min(0), p.std(0),
                        [math.log(min(len(p), rule.get("fitted_windows", [1, len(p)])[1]))]])
    z = np.asarray(rule["coef"]) @ f + np.asarray(rule["intercept"])
    e = np.exp(z - z.max())
    return {"features": f.tolist(), "scores": (e / e.sum()).tolist()}


def main(argv):
    bundle, dump = Path(argv[0]), Path(argv[1])
    broken = argv[argv.index("--break") + 1] if "--break" in argv else None
    card = json.loads((bundle / "model_card.json").read_text())
    spec = card["preprocessing_spec"]
    conf = card["conformance"]
    vectors = {}
    with np.load(bundle / conf["file"]) as z:
        raws = {v["id"]: z[f"{v['id']}.raw_mv"] for v in conf["vectors"]}
    import onnxruntime as ort

    sessions = {name: ort.InferenceSession(str(bundle / name), providers=["CPUExecutionProvider"])
                for name, f in card["files"].items() if f["runtime"] == "onnxruntime"}
    from ai_edge_litert.interpreter import Interpreter

    tflite = {name: Interpreter(model_path=str(bundle / name)) for name, f in card["files"].items()
              if f["runtime"] == "tflite"}
    for v in conf["vectors"]:
        st = port(raws[v["id"]], v["fs_in_hz"], spec, broken)
        outs = {name: s.run(None, {s.get_inputs()[0].name: st["preprocessed"][None, None, :]})[0][0].tolist()
                for name, s in sessions.items()}
        for name, it in tflite.items():  # as the card's preprocessing_spec.model_input.tflite says
            q = card["files"][name]["quantization"]
            runner = it.get_signature_runner(card["mobile"]["tflite"]["signature"])
            if q["input_dtype"] == "float32":
                x = st["preprocessed"].astype(np.float32)
            else:
                x = np.clip(np.round(st["preprocessed"] / q["input_scale"]) + q["input_zero_point"], -128, 127)
            y = runner(**{card["input"]["name"]: x.astype(q["input_dtype"]).reshape(1, -1, 1)})[card["output"]["name"]]
            if q["output_dtype"] != "float32":
                y = (y.astype(np.float64) - q["output_zero_point"]) * q["output_scale"]
            outs[name] = y[0].astype(np.float64).tolist()
        vectors[v["id"]] = {k: a.tolist() for k, a in st.items()} | {"outputs": outs}
    rule = record_rule(card)
    dump.write_text(json.dumps({"format": "ecg-edge/port-dump", "version": 1, "port": "tests/numpy_port.py",
                                "vectors": vectors, **({"record_rule": rule} if rule else {})}))
    if "scipy" in sys.modules:
        print("scipy was imported", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
