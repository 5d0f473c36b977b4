"""Where commands write: never over something that exists unless asked (``force``), new run folders by default.

Every writer checks its output here *before* it reads, trains or builds anything, so a mistake costs
seconds, not a lost folder. With ``force`` an existing output is replaced only once the new one is
complete (:func:`replace_dir`).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .errors import OutputExistsError, OutputPathError

#: Default parent of new run folders (``runs/<kind>-YYYYmmdd-HHMMSS``), relative to the working directory.
RUNS_DIR = "runs"


def new_run_dir(kind: str, root: str | Path = RUNS_DIR) -> Path:
    """A path ``root/<kind>-YYYYmmdd-HHMMSS`` (``-2``, ``-3`` ... appended if taken) that does not exist yet."""
    base = Path(root) / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    p, n = base, 1
    while p.exists():
        n += 1
        p = base.with_name(f"{base.name}-{n}")
    return p


def check_new_file(path: str | Path, force: bool = False, what: str = "output") -> Path:
    """Return ``path`` if writing it loses nothing: it does not exist, or ``force``. A folder there is always refused."""
    p = Path(path)
    if p.is_dir():
        raise OutputExistsError(f"{what} {p} is a folder; give a file path")
    if p.exists() and not force:
        raise OutputExistsError(f"{what} {p} already exists; choose another path or pass --force to overwrite it")
    return p


def make_parent(path: str | Path, what: str = "output") -> Path:
    """Create the folder ``path`` goes into (and its parents); :class:`OutputPathError` with the system's reason
    when that is impossible (a part of the path is a file, no permission, a read-only disk)."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create the folder of {what} {p}: {exc.strerror or exc}; choose another "
                              "path") from None
    return p


def check_writable_parent(path: str | Path, what: str = "output") -> Path:
    """:func:`make_parent`, then :class:`OutputPathError` unless this process may write in that folder: checked
    before a long job, not found out when it writes its result."""
    p = make_parent(path, what)
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {what} {p}: no permission in {p.parent}; choose another path")
    return p


def open_new_file(path: str | Path, what: str = "output", **kwargs):
    """``open(path, 'w', **kwargs)`` after :func:`make_parent`, with :class:`OutputPathError` for an OSError."""
    p = make_parent(path, what)
    try:
        return p.open("w", **kwargs)
    except OSError as exc:
        raise OutputPathError(f"cannot write {what} {p}: {exc.strerror or exc}; choose another path") from None


def check_new_dir(path: str | Path, force: bool = False, what: str = "output folder") -> Path:
    """Return ``path`` if it is missing or empty, or exists and ``force`` is set; refuse a file there."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputExistsError(f"{what} {p} is a file, not a folder; choose another path")
    if p.is_dir() and any(p.iterdir()) and not force:
        raise OutputExistsError(f"{what} {p} already exists and is not empty; choose another --out or pass "
                                "--force to replace it (it is replaced only after the new one is complete)")
    return p


def staging_dir(final: str | Path) -> Path:
    """An empty sibling folder of ``final`` to build into; :func:`replace_dir` moves it into place."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def replace_dir(staged: str | Path, final: str | Path) -> Path:
    """Move the completed ``staged`` folder to ``final``, removing what was there only now."""
    staged, final = Path(staged), Path(final)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        staged.rename(final)
        shutil.rmtree(old)
    else:
        staged.rename(final)
    return final
