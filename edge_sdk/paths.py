"""Where the shared real data lives: ``$ECG_EDGE_SHARED`` or the ``shared/`` folder beside the repository."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetError

ENV_VAR = "ECG_EDGE_SHARED"


def shared_dir(required: bool = True) -> Path | None:
    """Return the shared data folder (holding ``data/`` and ``reference/``).

    Looks at ``$ECG_EDGE_SHARED``, then ``../shared`` from the current directory, then beside this checkout.
    Raises :class:`DatasetError` when ``required`` and nothing is found.
    """
    candidates = []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    candidates.append(Path.cwd().parent / "shared")
    candidates.append(Path(__file__).resolve().parents[2] / "shared")
    for c in candidates:
        if (c / "data").is_dir() or (c / "reference").is_dir():
            return c.resolve()
    if required:
        raise DatasetError(
            f"shared data folder not found (looked in {', '.join(map(str, candidates))}); "
            f"set {ENV_VAR}=/path/to/shared or run from the repository root next to shared/")
    return None


def cinc2017_dir() -> Path:
    return shared_dir() / "data" / "cinc2017"


def mitdb_dir() -> Path:
    return shared_dir() / "data" / "mitdb"


#: A file each shared data set has, by data set folder name.
DATASET_MARKERS = {"cinc2017": "REFERENCE-v3.csv", "mitdb": "RECORDS"}


def datasets_available(*names: str) -> bool:
    """Whether the shared folder holds every data set in ``names`` (``"cinc2017"``, ``"mitdb"``); never raises."""
    root = shared_dir(required=False)
    return root is not None and all((root / "data" / n / DATASET_MARKERS[n]).is_file() for n in names)
