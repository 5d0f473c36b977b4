"""Export a torch model to ONNX with the output activation baked in (apps receive probabilities)."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from edge_sdk.preprocessing import WINDOW_SAMPLES

INPUT_NAME = "ecg"
OUTPUT_NAME = "probs"


class WithProbabilities(nn.Module):
    """``logits -> softmax`` (single-label) or ``sigmoid`` (multi-label)."""

    def __init__(self, model: nn.Module, activation: str):
        super().__init__()
        self.model = model
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return torch.softmax(logits, 1) if self.activation == "softmax" else torch.sigmoid(logits)


def export_onnx(model: nn.Module, path: str | Path, activation: str, window_samples: int = WINDOW_SAMPLES,
                opset: int = 17) -> Path:
    """Write ``path``: input ``ecg`` (batch, 1, window_samples) float32 -> ``probs`` (batch, n_labels)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    wrapped = WithProbabilities(model.eval(), activation).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (torch.zeros(1, 1, window_samples),), str(p), input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          opset_version=opset, dynamo=False)
    return p
