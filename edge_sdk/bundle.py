"""Model bundles: a folder with model files and ``model_card.json`` that a mobile app can read.

The card (format ``ecg-edge/model-card`` version 2) holds the label table (name, ECGFounder vocabulary index,
activation, threshold and where it came from, per output), sample rate, window and hop, preprocessing
parameters, input/output names and shapes, quantization parameters, fidelity figures, teacher identity and
the sha256 of each file. :func:`load_bundle` checks all of it and raises :class:`~edge_sdk.errors.BundleError`
with what is wrong and how to fix it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import BundleError, LabelError
from .labels import ECGFOUNDER_VOCABULARY, LabelTable
from .preprocessing import PreprocessingConfig
from .record_rule import RecordRule

CARD_NAME = "model_card.json"
CARD_FORMAT = "ecg-edge/model-card"
CARD_VERSION = 2
#: Version of ``edge_sdk/card_schema.json`` (JSON Schema of the card); cards carry it as ``schema_version``.
CARD_SCHEMA_VERSION = 1
CARD_SCHEMA_PATH = Path(__file__).with_name("card_schema.json")
EXTRA_KEYS = ("sha256", "bytes", "kind")
REQUIRED_KEYS = ("format", "version", "name", "labels", "label_vocabulary", "threshold_rule", "sample_rate_hz",
                 "window_seconds", "window_samples", "hop_seconds", "preprocessing", "input", "output", "files",
                 "fidelity", "teacher")
FILE_KEYS = ("sha256", "bytes", "runtime", "precision")
#: Largest file a bundle may hold (a full-width ECGFounder ONNX is about 125 MB); checked before hashing.
MAX_FILE_BYTES = 1 << 30
MAX_CARD_BYTES = 16 << 20


def sha256_of(path: str | Path, max_bytes: int | None = None) -> str:
    """Hex sha256 of a regular file; with ``max_bytes``, :class:`BundleError` for anything larger or not regular."""
    p = Path(path)
    if max_bytes is not None:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{p} is not a regular file; a bundle holds only regular files")
        if st.st_size > max_bytes:
            raise BundleError(f"{p} is {st.st_size:,} bytes, more than the {max_bytes:,} a bundle file may have")
    h = hashlib.sha256()
    read = 0
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            read += len(chunk)
            if max_bytes is not None and read > max_bytes:
                raise BundleError(f"{p} grew past {max_bytes:,} bytes while it was hashed")
    return h.hexdigest()


@dataclass
class ModelBundle:
    """A verified bundle. ``card`` is the parsed model card; ``root`` the folder; ``label_table`` its outputs."""

    root: Path
    card: dict[str, Any]

    @property
    def label_table(self) -> LabelTable:
        return LabelTable.from_list(self.card["labels"], self.card.get("label_vocabulary", ECGFOUNDER_VOCABULARY))

    @property
    def labels(self) -> list[str]:
        """Output names in output order."""
        return [d["name"] for d in self.card["labels"]]

    @property
    def thresholds(self) -> dict[str, float]:
        """Label name -> decision threshold (probability in [0, 1])."""
        return {d["name"]: float(d["threshold"]) for d in self.card["labels"]}

    @property
    def preprocessing(self) -> PreprocessingConfig:
        return PreprocessingConfig(**self.card["preprocessing"])

    @property
    def record_rule(self) -> RecordRule:
        """How a recording's windows become one label: the card's ``record_rule``, or the highest mean
        probability when the card has none (see :mod:`edge_sdk.record_rule`)."""
        return RecordRule.from_dict(self.card.get("record_rule", {"method": "mean"}), self.labels,
                                    where=f"{CARD_NAME}: record_rule")

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


def _number(card: dict, key: str, where: str, positive: bool = True) -> float:
    v = card[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
        raise BundleError(f"{where}: {key} must be a finite {'positive ' if positive else ''}number, got {v!r}; "
                          "rebuild the bundle with `ecg-edge quantize`")
    return float(v)


def _object(card: dict, key: str, where: str) -> dict:
    if not isinstance(card[key], dict):
        raise BundleError(f"{where}: {key} must be a JSON object, got {type(card[key]).__name__}")
    return card[key]


def check_file_name(name: Any, where: str = CARD_NAME) -> str:
    """A bundle file name must be a plain file name inside the bundle folder (no folders, no ``..``)."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or os.path.basename(name) != name or name.startswith("."):
        raise BundleError(f"{where}: file name {name!r} is not a plain file name inside the bundle folder")
    return name


@lru_cache(maxsize=1)
def card_schema() -> dict:
    """The JSON Schema of the model card (``edge_sdk/card_schema.json``)."""
    return json.loads(CARD_SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _schema_validator():
    try:
        from jsonschema import Draft202012Validator
    except ImportError as e:  # a runtime dependency; say how to get it
        raise BundleError("the model card is validated with the `jsonschema` package: pip install jsonschema") from e
    schema = card_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _schema_message(err) -> str:
    path = "/".join(str(p) for p in err.absolute_path) or "(card)"
    if err.validator == "required":
        missing = [k for k in err.validator_value if isinstance(err.instance, dict) and k not in err.instance]
        return f"{path} lacks {missing}"
    desc = err.schema.get("description") if isinstance(err.schema, dict) else None
    msg = err.message if len(err.message) <= 200 else err.message[:200] + "..."
    return f"{path}: {msg}" + (f" ({desc})" if desc else "")


def validate_schema(card: Any, where: str = CARD_NAME) -> None:
    """Raise :class:`BundleError` unless ``card`` conforms to the JSON Schema ``edge_sdk/card_schema.json``."""
    from jsonschema.exceptions import best_match

    err = best_match(_schema_validator().iter_errors(card))
    if err is not None:
        raise BundleError(f"{where} does not conform to the model card schema (schema_version "
                          f"{CARD_SCHEMA_VERSION}): {_schema_message(err)}; rebuild the bundle with `ecg-edge quantize`")


def validate_card(card: Any, where: str = CARD_NAME) -> dict:
    """Raise :class:`BundleError` unless ``card`` is a complete, consistent model card of a supported version.

    The JSON Schema (:func:`validate_schema`) comes first; the checks below add what a schema cannot say
    (label table vs output shape, unique names, rates and filters consistent with each other).
    """
    if not isinstance(card, dict):
        raise BundleError(f"{where} must hold a JSON object, got {type(card).__name__}")
    validate_schema(card, where)
    if card.get("format") != CARD_FORMAT:
        raise BundleError(f"{where}: format is {card.get('format')!r}, expected {CARD_FORMAT!r}; "
                          "is this a model card written by `ecg-edge quantize`?")
    if card.get("version") != CARD_VERSION:
        raise BundleError(f"{where}: card version {card.get('version')!r} is not supported (this SDK reads "
                          f"version {CARD_VERSION}); rebuild the bundle with this version of `ecg-edge quantize`")
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise BundleError(f"{where} lacks {missing}; rebuild the bundle with `ecg-edge quantize`")
    try:
        table = LabelTable.from_list(card["labels"], card["label_vocabulary"], where=f"{where}: labels")
    except LabelError as e:
        raise BundleError(str(e)) from e
    for key in ("preprocessing", "input", "output", "files", "fidelity", "teacher", "threshold_rule"):
        _object(card, key, where)
    shape = card["output"].get("shape")
    if not isinstance(shape, list) or not shape or shape[-1] != len(table):
        raise BundleError(f"{where}: output shape {shape} does not match {len(table)} labels")
    if card["output"].get("activation") != table.activation:
        raise BundleError(f"{where}: output activation {card['output'].get('activation')!r} differs from the "
                          f"labels' {table.activation!r}")
    fs = _number(card, "sample_rate_hz", where)
    win_s = _number(card, "window_seconds", where)
    hop = _number(card, "hop_seconds", where)
    if hop > win_s * 10:
        raise BundleError(f"{where}: hop_seconds {hop} is implausibly long for {win_s}-s windows")
    ws = card["window_samples"]
    if isinstance(ws, bool) or not isinstance(ws, int) or int(round(fs * win_s)) != ws:
        raise BundleError(f"{where}: window_samples {ws!r} != sample_rate_hz x window_seconds")
    try:
        pre = PreprocessingConfig(**card["preprocessing"])
    except TypeError as e:
        raise BundleError(f"{where}: preprocessing has unknown or missing parameters ({e})") from e
    for key, value in pre.to_dict().items():
        if key != "resampling" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or not math.isfinite(value) or value <= 0):
            raise BundleError(f"{where}: preprocessing.{key} must be a finite positive number, got {value!r}")
    if pre.fs_hz != fs or pre.window_seconds != win_s:
        raise BundleError(f"{where}: preprocessing runs at {pre.fs_hz} Hz / {pre.window_seconds} s but the card says "
                          f"sample_rate_hz {fs} / window_seconds {win_s}; rebuild the bundle")
    nyquist = pre.fs_hz / 2
    if not (pre.notch_hz < nyquist and pre.bandpass_low_hz < pre.bandpass_high_hz < nyquist):
        raise BundleError(f"{where}: notch {pre.notch_hz} Hz / band-pass {pre.bandpass_low_hz}-{pre.bandpass_high_hz} Hz "
                          f"must lie below the Nyquist frequency {nyquist} Hz (and low < high)")
    if not card["files"]:
        raise BundleError(f"{where}: files is empty; a bundle needs at least one model file")
    for name, f in card["files"].items():
        check_file_name(name, where)
        if not isinstance(f, dict):
            raise BundleError(f"{where}: file entry {name!r} must be an object")
        lacking = [k for k in FILE_KEYS if k not in f]
        if lacking:
            raise BundleError(f"{where}: file entry {name!r} lacks {lacking}")
        if f["runtime"] not in ("onnxruntime", "tflite") or f["precision"] not in ("fp32", "int8"):
            raise BundleError(f"{where}: file entry {name!r} has runtime {f['runtime']!r} / precision "
                              f"{f['precision']!r}; expected onnxruntime|tflite and fp32|int8")
        b = f["bytes"]
        if isinstance(b, bool) or not isinstance(b, int) or not 0 < b <= MAX_FILE_BYTES:
            raise BundleError(f"{where}: file entry {name!r} has bytes {b!r}; expected 1..{MAX_FILE_BYTES}")
        if not isinstance(f["sha256"], str) or len(f["sha256"]) != 64:
            raise BundleError(f"{where}: file entry {name!r} has no valid sha256")
    extras = card.get("extras", {})
    if not isinstance(extras, dict):
        raise BundleError(f"{where}: extras must be a JSON object")
    for name, f in extras.items():
        check_file_name(name, where)
        if name in card["files"] or name == CARD_NAME:
            raise BundleError(f"{where}: extra file {name!r} is also a model file or the card")
        if not isinstance(f, dict) or [k for k in EXTRA_KEYS if k not in f]:
            raise BundleError(f"{where}: extra file entry {name!r} must be an object with {list(EXTRA_KEYS)}")
        b = f["bytes"]
        if isinstance(b, bool) or not isinstance(b, int) or not 0 < b <= MAX_FILE_BYTES:
            raise BundleError(f"{where}: extra file entry {name!r} has bytes {b!r}; expected 1..{MAX_FILE_BYTES}")
    if "record_rule" in card:
        RecordRule.from_dict(card["record_rule"], table.names, where=f"{where}: record_rule")
    conf = card.get("conformance")
    if conf is not None and conf.get("file") not in extras:
        raise BundleError(f"{where}: conformance file {conf.get('file')!r} is not listed in extras")
    return card


def _reject_constant(token: str):
    raise ValueError(f"{token} is not a JSON number")


def read_card(card_path: Path) -> Any:
    """Parse ``model_card.json`` strictly (UTF-8, no NaN/Infinity), as :class:`BundleError` on any problem."""
    try:
        st = card_path.stat()
    except OSError as e:
        raise BundleError(f"{card_path} cannot be read ({e.strerror}); build a bundle with `ecg-edge quantize`") from e
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{card_path} is not a regular file; a bundle's card is a JSON file")
    if st.st_size > MAX_CARD_BYTES:
        raise BundleError(f"{card_path} is {st.st_size:,} bytes; a model card is a small JSON file")
    try:
        return json.loads(card_path.read_bytes().decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise BundleError(f"{card_path} is not UTF-8 text ({e}); rebuild the bundle") from e
    except ValueError as e:  # JSONDecodeError and NaN/Infinity
        raise BundleError(f"{card_path} is not valid JSON ({e}); rebuild the bundle") from e


def load_bundle(path: str | Path, verify_checksums: bool = True) -> ModelBundle:
    """Load and verify a bundle folder (or its ``model_card.json``).

    Checks the card (types, finite values, unique labels, thresholds in [0, 1], consistent rates, positive
    hop), that every file is a regular file inside the folder with the size the card states, and (unless
    ``verify_checksums`` is false) its sha256. Raises :class:`BundleError` saying what to do.
    """
    p = Path(path)
    root = p.parent if p.name == CARD_NAME else p
    card_path = root / CARD_NAME
    if not card_path.exists():
        raise BundleError(f"no {CARD_NAME} in {root}; build a bundle with `ecg-edge quantize --out {root}`")
    card = read_card(card_path)
    validate_card(card, str(card_path))
    real_root = root.resolve()
    for name, f in list(card["files"].items()) + list(card.get("extras", {}).items()):
        fp = root / name
        if not fp.exists():
            raise BundleError(f"bundle file {fp} is missing; copy the whole bundle folder")
        if fp.resolve().parent != real_root:
            raise BundleError(f"bundle file {fp} points outside the bundle folder; copy the real file into it")
        st = fp.stat()
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"bundle file {fp} is not a regular file")
        if st.st_size != f["bytes"]:
            raise BundleError(f"bundle file {fp} is {st.st_size:,} bytes but the card says {f['bytes']:,}; "
                              "the file is truncated or was replaced - copy the bundle again")
        if verify_checksums:
            digest = sha256_of(fp, max_bytes=MAX_FILE_BYTES)
            if digest != f["sha256"]:
                raise BundleError(f"checksum mismatch for {fp}: card says {f['sha256'][:12]}..., file is "
                                  f"{digest[:12]}...; the file is corrupt or was replaced - copy the bundle again")
        _check_labels_inside(fp, card)
    return ModelBundle(root, card)


#: the associated file in which a bundle's TFLite model carries its label names, one per line in output
#: order (written by ``quantize.mobile.finish_tflite``)
TFLITE_LABELS_FILE = "labels.txt"


def _check_labels_inside(fp: Path, card: dict) -> None:
    """A TFLite file's ``labels.txt`` must name the card's labels in order (:func:`check_labels_match`)."""
    if fp.suffix != ".tflite":
        return
    try:
        with zipfile.ZipFile(fp) as z:
            inside = z.read(TFLITE_LABELS_FILE).decode("utf-8").splitlines()
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, OSError):
        return  # a TFLite file without the associated labels (built elsewhere): nothing to compare
    check_labels_match(fp.name, inside, [d["name"] for d in card["labels"]])


def check_labels_match(file_name: str, inside: list[str], card_names: list[str]) -> None:
    """:class:`BundleError` unless the label names a model file carries (``inside``, output order) are the card's
    (``card_names``): a card edited by hand (labels reordered) would put every probability under another
    label's name, silently. Used for the TFLite ``labels.txt`` here and the ONNX metadata by ``open_backend``."""
    if inside != card_names:
        raise BundleError(f"{file_name} names its outputs {inside[:6]}{' ...' if len(inside) > 6 else ''} but the "
                          f"card lists {card_names[:6]}{' ...' if len(card_names) > 6 else ''}: the card's labels were "
                          "changed (or reordered) after the build; restore the card that came with the model files")


def write_card(root: str | Path, card: dict) -> Path:
    """Validate ``card``, fill in sha256 and bytes of its files, and write ``model_card.json``."""
    root = Path(root)
    card.setdefault("schema_version", CARD_SCHEMA_VERSION)
    for name, f in list(card["files"].items()) + list(card.get("extras", {}).items()):
        f["sha256"] = sha256_of(root / check_file_name(name))
        f["bytes"] = (root / name).stat().st_size
    validate_card(card)
    out = root / CARD_NAME
    out.write_text(json.dumps(card, indent=2, allow_nan=False))
    return out
