"""torch side of the window sets of :mod:`distill.data`: a ``Dataset`` view for training and batched inference."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm


class WindowDataset(Dataset):
    """Items are dicts: ``x`` (1, L) float32, ``y`` int64 (-1 = unlabeled), and any extra per-window arrays
    (``teacher_logits``, ``teacher_features``) passed as keyword arguments."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None = None, **extra: np.ndarray):
        self.x = x
        self.y = y if y is not None else np.full(len(x), -1, np.int64)
        self.extra = extra

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"x": torch.from_numpy(np.asarray(self.x[i], np.float32)[None]), "y": torch.tensor(int(self.y[i]))}
        for k, v in self.extra.items():
            item[k] = torch.from_numpy(np.asarray(v[i], np.float32))
        return item


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 256, device: str | torch.device = "cpu",
            features: bool = False, desc: str | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Logits ``(n, C)`` (and pooled features ``(n, F)`` when ``features``) for windows ``x`` (n, L)."""
    model.eval().to(device)
    logits, feats = [], []
    for s in tqdm(range(0, len(x), batch_size), desc=desc, disable=desc is None, unit="batch", leave=False):
        xb = torch.from_numpy(np.asarray(x[s:s + batch_size], np.float32)[:, None]).to(device)
        f = model.forward_features(xb)
        logits.append(model.head(f) if hasattr(model, "head") else model.dense(f))
        feats.append(f)
    lo = torch.cat(logits).float().cpu().numpy()
    return (lo, torch.cat(feats).float().cpu().numpy()) if features else lo
