"""pytest-benchmark suite: per-window latency of every model on real windows.

The default test run disables timing (``--benchmark-disable`` in pyproject), so each benchmark runs once
as a smoke test with no timing assertion. Measure with::

    python -m pytest tests/benchmarks --benchmark-enable --benchmark-columns=min,median,max,ops
"""
import numpy as np
import pytest
import torch

from distill.checkpoint import load_model
from distill.data import cinc2017_windows
from edge_sdk.inference import open_backend


@pytest.fixture(scope="module")
def window(cinc):
    return cinc2017_windows("test", limit=20).x[:1].astype(np.float32)


@pytest.fixture(scope="module")
def batch(cinc):
    return cinc2017_windows("test", limit=20).x[:32].astype(np.float32)


@pytest.mark.parametrize("file_name", ["student_fp32.onnx", "student_int8.onnx",
                                       "student_int8.tflite"])
@pytest.mark.parametrize("threads", [1, 2])
def test_bundle_model_latency_one_window(benchmark, bundle_dir, window, file_name, threads):
    backend = open_backend(bundle_dir, file_name=file_name, threads=threads)
    probs = benchmark(backend.predict, window)
    assert probs.shape == (1, 4) and abs(float(probs.sum()) - 1) < 0.02


def test_teacher_torch_latency_one_window(benchmark, models_dir, window):
    torch.set_num_threads(1)
    model, _ = load_model(models_dir / "reference_teacher.pth")
    x = torch.from_numpy(window)[:, None]

    def run():
        with torch.inference_mode():
            return model(x)
    assert benchmark(run).shape == (1, 4)


@pytest.mark.parametrize("file_name", ["student_fp32.onnx", "student_int8.onnx"])
def test_student_throughput_batch_32(benchmark, bundle_dir, batch, file_name):
    backend = open_backend(bundle_dir, file_name=file_name, threads=2)
    assert benchmark(backend.predict, batch).shape == (32, 4)
