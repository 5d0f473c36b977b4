"""The ECGFounder path end to end, with the official-format 150-label reference checkpoint (reduced width):
distil two named labels on a few records without hard labels, quantize, load the bundle, replay-stream,
quick bench. Labels are data: names, vocabulary indices and thresholds travel checkpoint -> card -> Prediction."""
import asyncio
import json

import numpy as np
import pytest

from distill.checkpoint import load_model
from ecg_edge.cli import main
from edge_sdk.bundle import load_bundle
from edge_sdk.inference import open_backend
from edge_sdk.sources import ReplaySource
from edge_sdk.stream import EcgStream

LABELS = ["ATRIAL FIBRILLATION", "SINUS RHYTHM"]


@pytest.fixture(scope="module")
def official(reference, tmp_path_factory):
    d = tmp_path_factory.mktemp("official")
    cfg = d / "config.json"
    cfg.write_text((reference / "net1d_small_config.json").read_text())
    return reference / "net1d_small_checkpoint.pth", cfg


@pytest.fixture(scope="module")
def user_records(cinc, tmp_path_factory):
    """24 Challenge records as a user's own files: 12 AF, 12 normal, labeled by a record,label CSV."""
    af = [n for n in cinc.records if cinc.labels[n] == "A"][:12]
    normal = [n for n in cinc.records if cinc.labels[n] == "N"][:12]
    names = af + normal
    csv = tmp_path_factory.mktemp("labels") / "labels.csv"
    csv.write_text("record,label\n" + "".join(f"{n},{cinc.labels[n]}\n" for n in names))
    return [str(cinc.root / "training2017" / n) for n in names], csv


@pytest.fixture(scope="module")
def pipeline(official, user_records, tmp_path_factory):
    ckpt, cfg = official
    records, labels_csv = user_records
    d = tmp_path_factory.mktemp("path")
    student = d / "student.pth"
    rc = main(["distill", "--teacher", str(ckpt), "--teacher-config", str(cfg), "--labels", ",".join(LABELS),
               "--records", *records, "--no-hard-labels", "--epochs", "1", "--samples-per-epoch", "64",
               "--batch-size", "16", "--out", str(student), "--device", "cpu"])
    assert rc == 0
    bundle = d / "bundle"
    rc = main(["quantize", "--student", str(student), "--teacher", str(ckpt), "--teacher-config", str(cfg),
               "--records", *records, "--record-labels", str(labels_csv), "--label-map", "A=ATRIAL FIBRILLATION",
               "--qat-epochs", "1", "--qat-samples-per-epoch", "128", "--calibration-windows", "32", "--no-tflite", "--equalize", "0.5",
               "--out", str(bundle)])
    assert rc == 0
    return student, bundle, d


def test_student_has_exactly_the_named_outputs(pipeline):
    model, ckpt = load_model(pipeline[0])
    assert model.head.out_features == 2
    assert [l["name"] for l in ckpt["labels"]] == LABELS
    assert [l["vocab_index"] for l in ckpt["labels"]] == [5, 3]
    assert ckpt["meta"]["teacher"]["n_outputs"] == 150 and ckpt["meta"]["teacher"]["outputs_used"] == LABELS
    assert ckpt["meta"]["data"]["hard_labels"] is False


def test_card_carries_the_label_table_and_only_app_files(pipeline):
    b = load_bundle(pipeline[1])
    card = b.card
    assert b.labels == LABELS and [d["vocab_index"] for d in card["labels"]] == [5, 3]
    assert all(d["activation"] == "sigmoid" for d in card["labels"])
    by = {d["name"]: d for d in card["labels"]}
    # AF is labeled in the validation records (A -> ATRIAL FIBRILLATION); nothing maps to SINUS RHYTHM there
    # (N maps to NORMAL SINUS RHYTHM by name), so it keeps the stated default
    assert by["ATRIAL FIBRILLATION"]["threshold_source"] == "validation"
    assert by["SINUS RHYTHM"]["threshold_source"] == "default" and by["SINUS RHYTHM"]["threshold"] == 0.5
    assert "SINUS RHYTHM" in card["threshold_rule"]["not_chosen"]
    assert set(card["files"]) == {"student_fp32.onnx", "student_int8.onnx", "student_int8.ort"}  # .ort: ORT Mobile
    assert sum(f["bytes"] for f in card["files"].values()) < 3_000_000
    assert card["teacher"]["n_outputs"] == 150 and card["teacher"]["config"]["filter_list"][0] == 16
    assert card["teacher"]["width"] == "reduced" and card["teacher"]["checkpoint_sha256"]
    fid = card["fidelity"]["student_fp32_vs_teacher_fp32"]
    assert set(fid["auroc_reference"]) == {"ATRIAL FIBRILLATION"}  # keyed by name
    assert card["student"]["qat"]["targets"] == "teacher"
    # channel equalization (--equalize) on a 2-output sigmoid student: every file from the same float function
    assert card["student"]["channel_equalization"]["strength"] == 0.5
    assert card["student"]["channel_equalization"]["max_abs_logit_change"] < 1e-3
    assert card["fidelity"]["student_onnx_fp32_vs_torch"]["max_abs_prob_error"] < 1e-4
    x = np.zeros((1, 5000), np.float32)
    assert open_backend(b).predict(x).shape == (1, 2)


def test_onnx_files_name_their_outputs_and_a_reordered_card_is_refused(pipeline, tmp_path):
    """The ONNX files carry the label names; a card whose labels were swapped by hand (every probability
    would be shown under the other label's name) is a BundleError when the model is opened."""
    import shutil

    import onnxruntime as ort

    from edge_sdk.errors import BundleError

    for name in ("student_fp32.onnx", "student_int8.onnx"):
        meta = ort.InferenceSession(str(pipeline[1] / name), providers=["CPUExecutionProvider"]).get_modelmeta()
        assert json.loads(meta.custom_metadata_map["ecg_edge_labels"]) == LABELS
    swapped = tmp_path / "bundle"
    shutil.copytree(pipeline[1], swapped)
    card = json.loads((swapped / "model_card.json").read_text())
    card["labels"] = card["labels"][::-1]
    (swapped / "model_card.json").write_text(json.dumps(card))
    b = load_bundle(swapped)  # the card alone is consistent
    with pytest.raises(BundleError, match="names its outputs"):
        open_backend(b)


def test_replay_stream_speaks_labels(pipeline, user_records, capsys):
    bundle = pipeline[1]
    rec = user_records[0][0]
    assert main(["stream", "--replay", str(rec), "--speed", "0", "--bundle", str(bundle), "--json"]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
    assert lines and set(lines[0]["probabilities"]) == set(LABELS)
    assert lines[0]["thresholds"] == {d["name"]: d["threshold"] for d in load_bundle(bundle).card["labels"]}
    for line in lines:
        want = [n for n in LABELS if line["probabilities"][n] >= line["thresholds"][n]]
        assert sorted(d["label"] for d in line["detected"]) == sorted(want)

    async def run():
        return await EcgStream(ReplaySource(rec, speed=0), bundle).run()

    preds = asyncio.run(run())
    assert preds and set(preds[0].probabilities) == set(LABELS) and set(preds[0].thresholds) == set(LABELS)


def test_quick_bench_reports_auroc_by_name(pipeline, official):
    from ecg_edge.bench import run_bench

    report = run_bench(str(pipeline[1]), str(official[0]), str(pipeline[2] / "bench"), repeats=3, batch=4,
                       eval_limit=60, stream_records=2, stream_seconds=3.0, emulated_count=1,
                       models=["student_onnx_int8"])
    assert report["evaluation"]["scored"] == ["ATRIAL FIBRILLATION"]
    from edge_sdk.inference.onnx_backend import int8_kernel  # int8 latency and error follow the CPU's kind

    assert report["machine"]["int8_kernel"] == int8_kernel() != ""
    assert "SINUS RHYTHM" in report["evaluation"]["not_scored"]
    assert all(set(r["auroc"]) == {"ATRIAL FIBRILLATION"} for r in report["models"])
    assert (pipeline[2] / "bench" / "results.md").read_text().count("AUROC ATRIAL FIBRILLATION") == 1


def test_unknown_label_is_a_clear_error(official, user_records, tmp_path, capsys):
    ckpt, cfg = official
    assert main(["distill", "--teacher", str(ckpt), "--teacher-config", str(cfg), "--labels", "ATRIAL FIBRILATION",
                 "--records", *user_records[0][:2], "--out", str(tmp_path / "s.pth")]) == 2
    err = capsys.readouterr().err
    assert "close matches" in err and "'ATRIAL FIBRILLATION'" in err
    assert not (tmp_path / "s.pth").exists()


def test_challenge_hard_labels_without_outputs_are_an_error(official, tmp_path, capsys):
    ckpt, cfg = official
    assert main(["distill", "--teacher", str(ckpt), "--teacher-config", str(cfg), "--labels", ",".join(LABELS),
                 "--limit", "20", "--epochs", "1", "--out", str(tmp_path / "s.pth")]) == 2
    assert "have no output in the student" in capsys.readouterr().err


def test_outputs_are_never_overwritten_without_force(pipeline, official, user_records, tmp_path, capsys):
    student, bundle, _ = pipeline
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep")
    assert main(["quantize", "--student", str(student), "--records", *user_records[0], "--out", str(mine),
                 "--no-tflite"]) == 2
    assert "--force" in capsys.readouterr().err and (mine / "precious.txt").read_text() == "keep"
    # a bundle folder that cannot be created is refused before the data are read
    (tmp_path / "afile").write_text("x")
    assert main(["quantize", "--student", str(student), "--records", *user_records[0], "--out",
                 str(tmp_path / "afile" / "bundle"), "--no-tflite"]) == 2
    assert "cannot create the folder" in capsys.readouterr().err
    # a bad input with --force: the folder is untouched since inputs are checked before anything is removed
    assert main(["quantize", "--student", str(tmp_path / "missing.pth"), "--out", str(mine), "--force"]) == 2
    assert (mine / "precious.txt").read_text() == "keep"
    assert main(["distill", "--teacher", str(official[0]), "--teacher-config", str(official[1]),
                 "--out", str(student), "--records", *user_records[0][:2]]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_run_never_writes_over_its_neighbours_or_resumes_from_nothing(official, user_records, tmp_path, capsys):
    """The history file and the run folder beside a checkpoint belong to the user too; --resume without a
    state used to start afresh and replace a file that was not a checkpoint; a path that cannot be created
    used to fail after the training data were read."""
    args = ["distill", "--teacher", str(official[0]), "--teacher-config", str(official[1]), "--labels",
            ",".join(LABELS), "--records", *user_records[0][:2], "--no-hard-labels", "--epochs", "1"]
    d = tmp_path / "u"
    (d / "student_run").mkdir(parents=True)
    (d / "student_run" / "last.pt").write_text("precious")
    (d / "student.history.json").write_text("precious")
    assert main([*args, "--out", str(d / "student.pth")]) == 2
    assert "student.history.json already exists" in capsys.readouterr().err
    (d / "student.history.json").unlink()
    assert main([*args, "--out", str(d / "student.pth")]) == 2
    assert "training run folder" in capsys.readouterr().err and (d / "student_run" / "last.pt").read_text() == "precious"
    (d / "mine.pth").write_text("precious")
    assert main([*args, "--out", str(d / "mine.pth"), "--resume"]) == 2
    assert "no " in capsys.readouterr().err and (d / "mine.pth").read_text() == "precious"
    assert main([*args, "--out", str(d / "student.pth"), "--resume"]) == 2  # last.pt is not a training state
    assert "cannot be read" in capsys.readouterr().err
    assert main([*args, "--out", str(d / "mine.pth" / "student.pth")]) == 2  # a file as the folder
    assert "cannot create the folder" in capsys.readouterr().err
