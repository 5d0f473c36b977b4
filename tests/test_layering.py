"""The layering rule, checked on the source: which package may import which.

edge_sdk     numpy/scipy/onnxruntime/ai-edge-litert (+ bleak, wfdb); never torch, tensorflow, distill,
             quantize or ecg_edge (it ships to devices)
distill      edge_sdk, torch; never quantize or ecg_edge
quantize     edge_sdk, distill, torch, onnx, tensorflow; never ecg_edge
ecg_edge     anything
"""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "edge_sdk": {"torch", "tensorflow", "distill", "quantize", "ecg_edge", "sklearn", "matplotlib"},
    "distill": {"quantize", "ecg_edge", "tensorflow"},
    "quantize": {"ecg_edge"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_follow_the_layering(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files
    bad = {str(f.relative_to(REPO)): sorted(imported_roots(f) & FORBIDDEN[package]) for f in files}
    assert {f: b for f, b in bad.items() if b} == {}


def test_the_checker_sees_a_violation(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import numpy\nfrom distill.checkpoint import load_model\ndef g():\n    import torch.nn\n")
    assert imported_roots(f) & FORBIDDEN["edge_sdk"] == {"distill", "torch"}
