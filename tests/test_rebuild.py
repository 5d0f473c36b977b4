"""`ecg-edge rebuild`: stages, checks before work, and the README's result tables generated from the card."""
import json
import shutil
from pathlib import Path

import pytest

from edge_sdk.errors import ConfigError
from quantize.rebuild import rebuild
from quantize.results_table import BEGIN, END, results_markdown, update_readme

ROOT = Path(__file__).resolve().parents[1]


def test_rebuild_checks_every_recipe_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="unknown stages"):
        rebuild(ROOT / "configs", ["students"])
    with pytest.raises(ConfigError, match="not found"):
        rebuild(tmp_path, ["student", "bundle"])
    shutil.copy(ROOT / "configs" / "default_student.json", tmp_path)
    (tmp_path / "default_bundle.json").write_text('{"student": "s.pth", "qat_epoch": 1}')
    with pytest.raises(ConfigError, match="unknown keys"):
        rebuild(tmp_path, ["student", "bundle"])
    shutil.copy(ROOT / "configs" / "default_bundle.json", tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ConfigError, match="marker"):
        rebuild(tmp_path, ["student", "bundle"], readme=readme)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "default_bundle.json", "default_student.json"]
    shutil.copy(ROOT / "configs" / "reference_teacher.json", tmp_path)  # the teacher stage needs its ensemble's recipes too
    with pytest.raises(ConfigError, match="reference_teacher_gpu.json"):
        rebuild(tmp_path, ["teacher"])
    shutil.copy(ROOT / "configs" / "reference_teacher_gpu.json", tmp_path)
    (tmp_path / "teacher_ensemble.json").write_text('{"members": ["a.pth"]}')
    with pytest.raises(ConfigError, match="at least two"):
        rebuild(tmp_path, ["teacher"])


def test_rebuild_checks_every_stage_output_before_the_first_stage(tmp_path):
    """A bundle folder that holds something used to be refused only after the student had trained."""
    from edge_sdk.errors import OutputExistsError

    student = json.loads((ROOT / "configs" / "default_student.json").read_text())
    student["out"] = str(tmp_path / "new" / "student.pth")
    (tmp_path / "default_student.json").write_text(json.dumps(student))
    bundle = json.loads((ROOT / "configs" / "default_bundle.json").read_text())
    bundle["out"] = str(tmp_path / "mine")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    (tmp_path / "default_bundle.json").write_text(json.dumps(bundle))
    with pytest.raises(ConfigError, match="not a file"):
        rebuild(tmp_path, ["student", "bundle"], readme=tmp_path / "missing.md")
    with pytest.raises(OutputExistsError, match="bundle folder"):
        rebuild(tmp_path, ["student", "bundle"])
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())


def test_readme_tables_are_the_committed_cards_numbers(bundle_dir, tmp_path):
    card = json.loads((bundle_dir / "model_card.json").read_text())
    md = results_markdown(card)
    onnx = card["fidelity"]["student_onnx_int8_vs_fp32"]
    assert f"{onnx['max_abs_prob_error']:.3f}" in md
    assert f"{onnx['auroc']['ATRIAL FIBRILLATION']:.4f}" in md
    assert f"{onnx['challenge2017_f1']:.3f}" in md
    # windows over 0.03 and records agreeing with fp32 as counts: one window in 5,523 is not "0.0 %"
    n_over = round(onnx["windows_over_0.03"] * onnx["n_windows"])
    n_agree = round(onnx["record_top_label_agreement"] * onnx["n_records_compared"])
    assert f"| {n_over:,} ({100 * onnx['windows_over_0.03']:.2f} %) |" in md and f"| {n_agree:,} (" in md
    assert "clean sinus: top = NORMAL SINUS RHYTHM" in md and "student_int8.tflite" in md
    readme_text = (ROOT / "README.md").read_text()
    block = readme_text.split(BEGIN)[1].split(END)[0].strip()
    assert block == md.strip(), "README result tables are stale: run `ecg-edge rebuild --force`"
    copy = tmp_path / "R.md"
    copy.write_text(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
    assert update_readme(copy, card) and not update_readme(copy, card)
    assert copy.read_text().startswith("intro\n") and copy.read_text().endswith(f"{END}\noutro\n")
    copy.write_text(f"{END}\n{BEGIN}\n")
    with pytest.raises(ConfigError, match="needs one"):
        update_readme(copy, card)


def test_readme_tables_name_the_cpu_kind_and_the_activation_bounds_when_the_card_has_them(bundle_dir):
    """Cards built from 2026-11-27 on say which kind of CPU measured the int8 figures and, with activation
    bounds, how far the bounds moved the float student (the fields ``build_bundle`` writes; see
    tests/test_quantize.py); the README block says both."""
    card = json.loads((bundle_dir / "model_card.json").read_text())
    assert "measured_on" not in card["fidelity"]  # the committed card predates the field: no sentence
    assert "CPU with" not in results_markdown(card)
    card["fidelity"]["measured_on"] = {"int8_kernel": "avx2", "platform": "Linux", "onnxruntime": "1.32.0"}
    card["student"]["activation_bounds"] = {"windows": 256, "held_out": {
        "windows": 5523, "windows_changed": 214, "max_abs_prob_change": 0.0786, "top_label_same": 1.0,
        "int8_vs_unbounded_max_abs_prob_error": {"student_int8.onnx": 0.0763, "student_int8.tflite": 0.0745}}}
    md = results_markdown(card)
    assert "ONNX Runtime 1.32.0 on a CPU with AVX2 without VNNI, where ONNX Runtime's u8s8 kernel can saturate" in md
    assert "bounded to their ranges on the 256 calibration windows" in md
    assert "differs on 214 (3.87 %) of the held-out windows, by at most 0.0786" in md
    assert "max 0.0763 student_int8.onnx / 0.0745 student_int8.tflite" in md
