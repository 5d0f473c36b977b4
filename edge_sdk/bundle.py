"""Model bundles: a folder with model files and ``model_card.json`` that a mobile app can read.

The card (format ``ecg-edge/model-card`` version 1) holds label names, sample rate, window and hop,
preprocessing parameters, input/output names and shapes, quantization parameters, decision thresholds,
fidelity figures, teacher identity and the sha256 of each file. :func:`load_bundle` checks all of it and
raises :class:`~edge_sdk.errors.BundleError` with what is wrong and how to fix it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError
from .preprocessing import PreprocessingConfig

CARD_NAME = "model_card.json"
CARD_FORMAT = "ecg-edge/model-card"
CARD_VERSION = 1
REQUIRED_KEYS = ("format", "version", "name", "labels", "sample_rate_hz", "window_seconds", "window_samples",
                 "hop_seconds", "preprocessing", "input", "output", "files", "thresholds", "fidelity", "teacher")
FILE_KEYS = ("sha256", "bytes", "runtime", "precision")


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ModelBundle:
    """A verified bundle. ``card`` is the parsed model card; ``root`` the folder."""

    root: Path
    card: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return list(self.card["labels"])

    @property
    def preprocessing(self) -> PreprocessingConfig:
        return PreprocessingConfig(**self.card["preprocessing"])

    @property
    def window_samples(self) -> int:
        return int(self.card["window_samples"])

    @property
    def sample_rate_hz(self) -> float:
        return float(self.card["sample_rate_hz"])

    def model_files(self, runtime: str | None = None) -> dict[str, dict]:
        """Files of the bundle, optionally only those for ``runtime`` (``onnxruntime`` or ``tflite``)."""
        return {k: v for k, v in self.card["files"].items() if runtime is None or v["runtime"] == runtime}

    def path(self, file_name: str) -> Path:
        if file_name not in self.card["files"]:
            raise BundleError(f"bundle {self.root} has no file {file_name!r}; it has {sorted(self.card['files'])}")
        return self.root / file_name

    def default_file(self, runtime: str = "onnxruntime", precision: str = "int8") -> str:
        for name, f in self.card["files"].items():
            if f["runtime"] == runtime and f["precision"] == precision and f.get("role", "student") == "student":
                return name
        raise BundleError(f"bundle {self.root} has no {precision} {runtime} student model; "
                          f"it has {[(n, f['runtime'], f['precision']) for n, f in self.card['files'].items()]}")


def validate_card(card: Any, where: str = CARD_NAME) -> dict:
    """Raise :class:`BundleError` unless ``card`` is a complete model card of a supported version."""
    if not isinstance(card, dict):
        raise BundleError(f"{where} must hold a JSON object, got {type(card).__name__}")
    if card.get("format") != CARD_FORMAT:
        raise BundleError(f"{where}: format is {card.get('format')!r}, expected {CARD_FORMAT!r}; "
                          "is this a model card written by `ecg-edge quantize`?")
    if card.get("version") != CARD_VERSION:
        raise BundleError(f"{where}: card version {card.get('version')!r} is not supported (this SDK reads "
                          f"version {CARD_VERSION}); rebuild the bundle with this version of `ecg-edge quantize`")
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise BundleError(f"{where} lacks {missing}; rebuild the bundle with `ecg-edge quantize`")
    if not isinstance(card["labels"], list) or not card["labels"]:
        raise BundleError(f"{where}: labels must be a non-empty list of names")
    shape = card["output"].get("shape", [])
    if not shape or shape[-1] != len(card["labels"]):
        raise BundleError(f"{where}: output shape {shape} does not match {len(card['labels'])} labels")
    if int(round(card["sample_rate_hz"] * card["window_seconds"])) != card["window_samples"]:
        raise BundleError(f"{where}: window_samples {card['window_samples']} != sample_rate_hz x window_seconds")
    try:
        PreprocessingConfig(**card["preprocessing"])
    except TypeError as e:
        raise BundleError(f"{where}: preprocessing has unknown or missing parameters ({e})") from e
    for name, f in card["files"].items():
        lacking = [k for k in FILE_KEYS if k not in f]
        if lacking:
            raise BundleError(f"{where}: file entry {name!r} lacks {lacking}")
    return card


def load_bundle(path: str | Path, verify_checksums: bool = True) -> ModelBundle:
    """Load and verify a bundle folder (or its ``model_card.json``)."""
    p = Path(path)
    root = p.parent if p.name == CARD_NAME else p
    card_path = root / CARD_NAME
    if not card_path.exists():
        raise BundleError(f"no {CARD_NAME} in {root}; build a bundle with `ecg-edge quantize --out {root}`")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{card_path} is not valid JSON ({e}); rebuild the bundle") from e
    validate_card(card, str(card_path))
    for name, f in card["files"].items():
        fp = root / name
        if not fp.exists():
            raise BundleError(f"bundle file {fp} is missing; copy the whole bundle folder")
        if verify_checksums:
            digest = sha256_of(fp)
            if digest != f["sha256"]:
                raise BundleError(f"checksum mismatch for {fp}: card says {f['sha256'][:12]}..., file is "
                                  f"{digest[:12]}...; the file is corrupt or was replaced - copy the bundle again")
    return ModelBundle(root, card)


def write_card(root: str | Path, card: dict) -> Path:
    """Validate ``card``, fill in sha256 and bytes of its files, and write ``model_card.json``."""
    root = Path(root)
    for name, f in card["files"].items():
        f["sha256"] = sha256_of(root / name)
        f["bytes"] = (root / name).stat().st_size
    validate_card(card)
    out = root / CARD_NAME
    out.write_text(json.dumps(card, indent=2))
    return out
