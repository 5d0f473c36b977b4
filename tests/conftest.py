"""Shared fixtures. Tests needing ../shared fail (not skip) when CI is set and the data is missing."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_sdk.paths import DATASET_MARKERS, shared_dir


def _require(path: Path | None, what: str) -> Path:
    if path is not None and path.exists():
        return path
    msg = f"{what} not found (set ECG_EDGE_SHARED or place shared/ beside the repository)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared() -> Path:
    return _require(shared_dir(required=False), "shared data folder")


@pytest.fixture(scope="session")
def reference(shared) -> Path:
    return _require(shared / "reference", "shared/reference")


@pytest.fixture(scope="session")
def cinc(shared):
    from edge_sdk.datasets import Cinc2017

    _require(shared / "data" / "cinc2017" / DATASET_MARKERS["cinc2017"], "Challenge 2017 data")
    return Cinc2017(shared / "data" / "cinc2017")


@pytest.fixture(scope="session")
def mitdb(shared):
    from edge_sdk.datasets import MitBih

    _require(shared / "data" / "mitdb" / DATASET_MARKERS["mitdb"], "MIT-BIH data")
    return MitBih(shared / "data" / "mitdb")


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def bundle_dir() -> Path:
    """The repository's default bundle (built by `ecg-edge quantize` from the committed checkpoints)."""
    p = REPO / "bundles" / "default"
    assert (p / "model_card.json").exists(), "bundles/default is part of the repository"
    return p


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return REPO / "models"
