"""The mobile embedding kit of the committed bundle, on real data: conformance vectors (held-out Challenge 2017
records and a 130 Hz H10-rate source), a card a scipy-free port can follow (proved by tests/numpy_port.py),
the card's JSON Schema, verify-port, the ONNX Runtime Mobile .ort file and the TFLite signature/labels, and
the generated bundle README."""
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.bundle import CARD_SCHEMA_VERSION, card_schema, load_bundle
from edge_sdk.errors import BundleError, EdgeSDKError
from edge_sdk.inference import open_backend
from edge_sdk.windowing import record_windows

REPO = Path(__file__).resolve().parents[1]
PORT = REPO / "tests" / "numpy_port.py"


@pytest.fixture(scope="module")
def card(bundle_dir):
    return load_bundle(bundle_dir).card


@pytest.fixture(scope="module")
def vectors(bundle_dir, card):
    with np.load(bundle_dir / card["conformance"]["file"]) as z:
        return {k: z[k] for k in z.files}


def _run_port(bundle_dir, dump, *extra):
    r = subprocess.run([sys.executable, str(PORT), str(bundle_dir), str(dump), *extra], capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]  # 3 = scipy was imported by the port


def test_conformance_vectors_are_real_held_out_windows(shared, bundle_dir, card, vectors):
    conf = card["conformance"]
    ids = [v["id"] for v in conf["vectors"]]
    assert ids == ["normal", "af", "other", "noisy", "h10_130hz_af"]
    by_id = {v["id"]: v for v in conf["vectors"]}
    assert by_id["h10_130hz_af"]["fs_in_hz"] == 130.0 and by_id["h10_130hz_af"]["raw_samples"] == 1301
    from distill.data import cinc2017_split
    from edge_sdk.datasets import Cinc2017

    ds = Cinc2017()
    test_split = set(cinc2017_split(ds)["test"])
    expected_label = {"normal": "NORMAL SINUS RHYTHM", "af": "ATRIAL FIBRILLATION", "other": "OTHER RHYTHM",
                      "noisy": "NOISE", "h10_130hz_af": "ATRIAL FIBRILLATION"}
    for v in conf["vectors"]:
        vid = v["id"]
        if vid != "h10_130hz_af":
            assert v["record"] in test_split and ds.labels[v["record"]] == v["class"]
            rec = ds.read(v["record"])
            assert np.array_equal(vectors[f"{vid}.raw_mv"], rec.signal_mv[:v["raw_samples"]])
            # the vector's window is the record's first training/streaming window, within the tolerance
            # a port must meet: the band-pass state (lfilter_zi) is an ill-conditioned solve whose last digits follow
            # the CPU's LAPACK path (1e-6 of its 2e-3 to 6e-3 between AVX2 and AVX-512 machines)
            tol_pre = next(s["tolerance_abs"] for s in conf["stages"] if s["name"] == "preprocessed")
            got = record_windows(rec.signal_mv, rec.fs_hz)[0]
            assert np.abs(vectors[f"{vid}.preprocessed"] - got).max() <= tol_pre  # what a port must meet
        else:  # integer microvolts at 130 Hz, as the (emulated) H10 sends them
            assert np.allclose(vectors[f"{vid}.raw_mv"] * 1000, np.round(vectors[f"{vid}.raw_mv"] * 1000), atol=1e-9)
        assert vectors[f"{vid}.resampled_500hz"].shape == (v["resampled_samples"],)
        for stage in ("notch_500hz", "bandpass_500hz", "baseline_500hz"):
            assert vectors[f"{vid}.{stage}"].shape == (5000,) and vectors[f"{vid}.{stage}"].dtype == np.float64
        assert vectors[f"{vid}.preprocessed"].dtype == np.float32
        # each model file's expected output is that file's output on the stored window
        for name in card["files"]:
            want = vectors[f"{vid}.output.{name}"]
            got = open_backend(bundle_dir, file_name=name).predict(vectors[f"{vid}.preprocessed"][None])[0]
            assert np.allclose(got, want, atol=1e-6), name
        assert v["top_label"]["student_int8.onnx"] == expected_label[vid]  # a window the model gets right
    tol = {s["name"]: s["tolerance_abs"] for s in conf["stages"]}
    assert tol == {"raw_mv": None, "resampled_500hz": 1e-9, "notch_500hz": 1e-9, "bandpass_500hz": 2e-5,
                   "baseline_500hz": 2e-5, "preprocessed": 1e-4}
    assert {n: o["tolerance_abs"] for n, o in conf["outputs"].items()} == {
        "student_fp32.onnx": 1e-4, "student_int8.onnx": 0.02, "student_int8.ort": 0.02, "student_int8.tflite": 0.02}


def test_card_spec_gives_every_number_a_port_needs(card):
    spec = card["preprocessing_spec"]
    pre = card["preprocessing"]
    fs = spec["resample"]["fs_out_hz"]
    # the notch formula in the card reproduces its coefficients (a port can compute them for another notch_hz)
    w0 = 2 * math.pi * pre["notch_hz"] / fs
    g = 1 / (1 + math.tan(w0 / pre["notch_q"] / 2))
    assert np.allclose(spec["notch"]["b"], [g, -2 * g * math.cos(w0), g], rtol=1e-14)
    assert np.allclose(spec["notch"]["a"], [1, -2 * g * math.cos(w0), 2 * g - 1], rtol=1e-14)
    assert len(spec["bandpass"]["b"]) == len(spec["bandpass"]["a"]) == 2 * pre["bandpass_order"] + 1
    assert spec["zero_phase"]["padlen_notch"] == 9 and spec["zero_phase"]["padlen_bandpass"] == 27
    assert spec["median_baseline"]["kernel_samples"] == 201 and "constant zero padding" in spec["median_baseline"]["edge_mode"]
    assert spec["zscore"]["eps"] == pre["zscore_eps"] and "ddof = 0" in spec["zscore"]["std"]
    assert spec["window"] == {**spec["window"], "samples": 5000, "hop_samples": 2500}
    # the coefficients are scipy's designs (the test may use scipy; the port may not)
    from scipy.signal import butter, iirnotch, lfilter_zi

    b, a = butter(4, [0.67 / 250, 40 / 250], btype="band")
    assert np.array_equal(spec["bandpass"]["b"], b) and np.array_equal(spec["bandpass"]["a"], a)
    # zi solves an ill-conditioned system: its last digits follow the CPU (see above), not the design
    assert np.allclose(spec["bandpass"]["zi"], lfilter_zi(b, a), rtol=1e-3, atol=0)
    assert np.array_equal(spec["notch"]["b"], iirnotch(50.0, 30.0, 500)[0])


def test_numpy_port_from_the_card_alone_reproduces_the_vectors(bundle_dir, card, tmp_path):
    """tests/numpy_port.py imports numpy (and the runtimes for the model files) only; it exits 3 if scipy was
    imported. Its dump passes every stage and every model output."""
    import ast

    imported = set()
    for node in ast.walk(ast.parse(PORT.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    # numpy for the chain; the runtimes only to run the model files on the port's own windows
    assert imported == {"__future__", "json", "math", "sys", "pathlib", "numpy", "onnxruntime", "ai_edge_litert"}
    dump = tmp_path / "dump.json"
    _run_port(bundle_dir, dump)
    from ecg_edge.verify_port import verify_port

    report = verify_port(bundle_dir, dump)
    assert report.ok, report.text()
    assert {r.status for r in report.results} == {"pass"}
    # five stages and every model file per vector, and the record rule's features and scores on its example
    assert len(report.results) == 5 * (5 + len(card["files"])) + 2
    rule = {r.stage: r for r in report.results if r.vector == "record_rule"}
    assert set(rule) == {"features", "scores"} and max(r.max_abs_diff for r in rule.values()) <= 1e-12
    worst = {}
    for r in report.results:
        worst[r.stage] = max(worst.get(r.stage, 0.0), r.max_abs_diff)
    assert worst["resampled_500hz"] <= 1e-12 and worst["preprocessed"] <= 1e-5


def test_verify_port_says_where_a_broken_port_diverges(bundle_dir, tmp_path):
    dump = tmp_path / "broken.json"
    _run_port(bundle_dir, dump, "--break", "notch_500hz")
    r = subprocess.run([sys.executable, "-m", "ecg_edge", "verify-port", str(bundle_dir), str(dump)],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "resampled_500hz                        PASS" in r.stdout
    assert r.stdout.count("-> diverges first at notch_500hz") == 5
    assert "notch_500hz                            FAIL  max |diff| 0.001 " in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("FAIL:")
    # a dump with only some stages: the rest are "not dumped", a wrong length is a failure
    d = json.loads(dump.read_text())
    partial = {"format": "ecg-edge/port-dump", "version": 1, "vectors": {
        "af": {"resampled_500hz": d["vectors"]["af"]["resampled_500hz"], "preprocessed": [0.0] * 10}},
        "record_rule": {"features": [0.0] * len(d["record_rule"]["features"])}}
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    from ecg_edge.verify_port import verify_port

    rep = verify_port(bundle_dir, tmp_path / "partial.json")
    status = {(x.vector, x.stage): x.status for x in rep.results}
    assert status[("af", "resampled_500hz")] == "pass" and status[("af", "preprocessed")] == "shape"
    assert status[("normal", "notch_500hz")] == "missing" and not rep.ok
    assert status[("record_rule", "features")] == "fail" and status[("record_rule", "scores")] == "missing"
    # the same dump as .npz: the record rule's arrays come back under their own names
    np.savez(tmp_path / "partial.npz", **{"af.resampled_500hz": partial["vectors"]["af"]["resampled_500hz"],
                                          "record_rule.scores": d["record_rule"]["scores"]})
    rep = verify_port(bundle_dir, tmp_path / "partial.npz")
    status = {(x.vector, x.stage): x.status for x in rep.results}
    assert status[("record_rule", "scores")] == "pass" and status[("record_rule", "features")] == "missing"


def test_verify_port_fails_incomplete_misnamed_or_textual_dumps(bundle_dir, tmp_path):
    """Each used to PASS: a dump without vectors, a misspelled stage or file name, numbers written as text."""
    from ecg_edge.verify_port import verify_port

    dump = tmp_path / "good.json"
    _run_port(bundle_dir, dump)
    good = json.loads(dump.read_text())

    def check(edit) -> "object":
        d = json.loads(json.dumps(good))
        edit(d)
        (tmp_path / "d.json").write_text(json.dumps(d))
        return verify_port(bundle_dir, tmp_path / "d.json")

    rep = check(lambda d: d.update(vectors={}))
    assert not rep.ok and rep.vectors_without_output and "no model output passed" in rep.text()
    rep = check(lambda d: d["vectors"]["af"].update(preprocesed=d["vectors"]["af"].pop("preprocessed")))
    assert not rep.ok and any(r.status == "unknown" and r.stage == "preprocesed" for r in rep.results)
    rep = check(lambda d: d["vectors"]["af"]["outputs"].update(
        {"student_int8.onx": d["vectors"]["af"]["outputs"].pop("student_int8.onnx")}))
    assert not rep.ok and any(r.status == "unknown" and r.stage == "output student_int8.onx" for r in rep.results)
    rep = check(lambda d: d["vectors"]["af"].update(preprocessed=[str(v) for v in d["vectors"]["af"]["preprocessed"]]))
    assert not rep.ok and any(r.stage == "preprocessed" and r.status == "shape" for r in rep.results)
    with pytest.raises(EdgeSDKError, match="version 99"):
        check(lambda d: d.update(version=99))
    assert check(lambda d: None).ok  # the unedited dump still passes


@pytest.mark.parametrize("name, write", [
    ("list.json", lambda p: p.write_text(json.dumps({"format": "ecg-edge/port-dump", "version": 1,
                                                      "vectors": {"normal": [1, 2, 3]}}))),
    ("outputs.json", lambda p: p.write_text(json.dumps({"format": "ecg-edge/port-dump", "version": 1,
                                                         "vectors": {"normal": {"outputs": [1, 2]}}}))),
    ("npy.npz", lambda p: (np.save(p.with_suffix(".npy"), np.zeros(3)), p.with_suffix(".npy").rename(p))),
    ("text.npz", lambda p: p.write_text("not an archive")),
    ("object.npz", lambda p: np.savez(p, **{"normal.preprocessed": np.array([None], dtype=object)})),
    ("truncated.npz", lambda p: (np.savez(p, **{"normal.preprocessed": np.zeros(5000)}),
                                 p.write_bytes(p.read_bytes()[:300]))),
])
def test_verify_port_names_a_malformed_dump(bundle_dir, tmp_path, capsys, name, write):
    from ecg_edge.cli import main

    write(tmp_path / name)
    assert main(["verify-port", str(bundle_dir), str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert f"port dump {tmp_path / name}" in err and "Traceback" not in err


def test_card_schema_is_shipped_used_and_versioned(bundle_dir, card, tmp_path):
    import jsonschema

    schema = card_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(card, schema)
    assert card["schema_version"] == CARD_SCHEMA_VERSION == 1 and card["version"] == 2
    import edge_sdk
    assert (Path(edge_sdk.__file__).parent / "card_schema.json").is_file()
    assert set(card["extras"]) == {"conformance.npz", "student_int8.required_operators.config", "README.md"}
    bad = tmp_path / "b"
    shutil.copytree(bundle_dir, bad)
    for mutate, match in [(lambda c: c.update(schema_version=7), "schema_version"),
                          (lambda c: c["extras"]["conformance.npz"].update(kind="model"), "kind"),
                          (lambda c: c["files"]["student_int8.ort"].update(runtime="coreml"), "runtime"),
                          (lambda c: c["preprocessing_spec"]["notch"].pop("zi"), "lacks"),
                          (lambda c: c["extras"].update({"../x.npz": dict(c["extras"]["conformance.npz"])}),
                           "plain file name"),
                          (lambda c: c["conformance"]["stages"][1].update(tolerance_abs=-1), "tolerance_abs")]:
        c = json.loads(json.dumps(card))
        mutate(c)
        (bad / "model_card.json").write_text(json.dumps(c))
        with pytest.raises(BundleError, match=match):
            load_bundle(bad)
    (bad / "model_card.json").write_text(json.dumps(card))
    data = bytearray((bad / "conformance.npz").read_bytes())
    data[100] ^= 0xFF
    (bad / "conformance.npz").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(bad)


def test_ort_file_is_onnxruntimes_conversion_and_matches_the_onnx(bundle_dir, card, cinc):
    from distill.data import cinc2017_windows

    entry = card["files"]["student_int8.ort"]
    assert entry["format"] == "ort" and entry["role"] == "student-mobile"
    assert card["mobile"]["ort"]["converter"].startswith("onnxruntime ")
    assert (bundle_dir / "student_int8.ort").read_bytes()[4:8] == b"ORTM"  # ORT format flatbuffer identifier
    ops = (bundle_dir / "student_int8.required_operators.config").read_text()
    assert "ai.onnx;" in ops and "QLinearConv" in ops
    x = cinc2017_windows("test", limit=40).x.astype(np.float32)
    onnx_p = open_backend(bundle_dir, file_name="student_int8.onnx").predict(x)
    ort_p = open_backend(bundle_dir, file_name="student_int8.ort").predict(x)
    assert np.abs(onnx_p - ort_p).max() <= 1e-5
    assert card["fidelity"]["student_ort_int8_vs_onnx_int8"]["max_abs_prob_error"] <= 1e-5
    # the default int8 ONNX Runtime model is still the .onnx (the .ort is for ORT Mobile builds)
    assert load_bundle(bundle_dir).default_file("onnxruntime", "int8") == "student_int8.onnx"


def test_tflite_signature_names_and_labels_inside_the_file(bundle_dir, card, vectors):
    from ai_edge_litert.interpreter import Interpreter

    from quantize.mobile import read_tflite_labels

    path = bundle_dir / "student_int8.tflite"
    it = Interpreter(model_path=str(path))
    assert it.get_signature_list() == {"serving_default": {"inputs": [card["input"]["name"]],
                                                           "outputs": [card["output"]["name"]]}}
    inside = read_tflite_labels(path)
    assert inside["labels_txt"] == [d["name"] for d in card["labels"]]
    assert inside["metadata"]["labels"] == card["labels"]
    q = card["files"]["student_int8.tflite"]["quantization"]
    z = vectors["af.preprocessed"]
    if q["input_dtype"] == "float32":  # convolutions kept float: the file takes z and returns probabilities
        p = it.get_signature_runner()(ecg=np.asarray(z, np.float32).reshape(1, -1, 1))["probs"][0]
    else:
        xq = np.clip(np.round(z / q["input_scale"]) + q["input_zero_point"], -128, 127).astype(np.int8)
        y = it.get_signature_runner()(ecg=xq.reshape(1, -1, 1))["probs"]
        p = (y[0].astype(np.float32) - q["output_zero_point"]) * q["output_scale"]
    assert np.allclose(p, vectors["af.output.student_int8.tflite"], atol=1e-6)


def test_bundle_readme_is_generated_from_the_card(bundle_dir, card):
    from quantize.bundle_readme import bundle_readme

    text = (bundle_dir / "README.md").read_text()
    assert text == bundle_readme(card)
    for needle in ["student_int8.tflite", "student_int8.ort", "required_operators.config", "conformance.npz",
                   "ecg-edge verify-port", "ecg-edge/port-dump", "constant zero padding", "padlen",
                   repr(card["preprocessing_spec"]["bandpass"]["a"][1])[:12], "ATRIAL FIBRILLATION",
                   f"{card['labels'][1]['threshold']:.4f}", "| `bandpass_500hz` | float64 | mV | 2e-05 |"]:
        assert needle in text, needle
