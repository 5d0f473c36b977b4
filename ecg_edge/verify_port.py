"""``ecg-edge verify-port BUNDLE DUMP``: compare a native port's dump of the preprocessing stages and model
outputs with the bundle's conformance vectors, stage by stage.

A dump (format ``ecg-edge/port-dump`` v1, documented in the bundle README) is JSON::

    {"format": "ecg-edge/port-dump", "version": 1, "port": "...",
     "vectors": {"<vector id>": {"<stage>": [numbers...], ..., "outputs": {"<model file>": [probabilities...]}}}}

or a ``.npz`` with arrays ``<vector>.<stage>`` and ``<vector>.output.<model file>``. Each stage passes when
its largest absolute difference from the expected array is within the card's tolerance for that stage.
Stages a port does not compute may be left out ("not dumped"), but the port passes only when every
conformance vector has at least one model output that passes; a stage or output name the bundle does not
have (a misspelling) is a failure, as is a value that is not a number.

A bundle with a logistic record rule also checks the port's record rule on the card's worked example
(``record_rule.example``): the dump's top-level ``"record_rule": {"features": [...], "scores": [...]}`` (npz:
``record_rule.features``, ``record_rule.scores``), the features and class scores (in ``record_rule.classes``
order) the port computes from the example's window probabilities, within :data:`RECORD_RULE_TOLERANCE`.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_sdk.bundle import load_bundle
from edge_sdk.errors import EdgeSDKError

DUMP_FORMAT = "ecg-edge/port-dump"
DUMP_VERSION = 1
#: Absolute tolerance on the record rule's features and scores: float64 sums in another order differ by ~1e-15.
RECORD_RULE_TOLERANCE = 1e-9
#: The "vector" name under which the record rule's check is reported.
RECORD_RULE_VECTOR = "record_rule"


@dataclass
class StageResult:
    vector: str
    stage: str
    status: str  # "pass", "fail", "missing" (not in the dump), "shape" (wrong length), "unknown" (no such stage)
    max_abs_diff: float | None = None
    at_index: int | None = None
    expected: float | None = None
    got: float | None = None
    tolerance: float | None = None
    detail: str = ""


@dataclass
class PortReport:
    bundle: str
    dump: str
    port: str
    results: list[StageResult] = field(default_factory=list)

    @property
    def failed(self) -> list[StageResult]:
        return [r for r in self.results if r.status in ("fail", "shape", "unknown")]

    @property
    def vectors_without_output(self) -> list[str]:
        """Conformance vectors for which no model output passed (the port proved nothing on them)."""
        vectors = dict.fromkeys(r.vector for r in self.results if r.stage.startswith("output "))
        return [v for v in vectors if not any(r.vector == v and r.stage.startswith("output ") and r.status == "pass"
                                              for r in self.results)]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.vectors_without_output and any(r.status == "pass" for r in self.results)

    def first_divergence(self, vector: str) -> StageResult | None:
        return next((r for r in self.results if r.vector == vector and r.status in ("fail", "shape", "unknown")), None)

    def to_dict(self) -> dict:
        return {"bundle": self.bundle, "dump": self.dump, "port": self.port, "ok": self.ok,
                "results": [asdict(r) for r in self.results]}

    def text(self) -> str:
        lines = [f"verify-port: {self.dump} ({self.port}) against {self.bundle}"]
        vectors = list(dict.fromkeys(r.vector for r in self.results))
        for v in vectors:
            lines.append(f"vector {v}:")
            for r in (r for r in self.results if r.vector == v):
                if r.status == "missing":
                    lines.append(f"  {r.stage:<38} not dumped")
                elif r.status in ("shape", "unknown"):
                    lines.append(f"  {r.stage:<38} FAIL  {r.detail}")
                else:
                    word = "PASS" if r.status == "pass" else "FAIL"
                    lines.append(f"  {r.stage:<38} {word}  max |diff| {r.max_abs_diff:.3g} at index {r.at_index} "
                                 f"(expected {r.expected:.9g}, got {r.got:.9g}; tolerance {r.tolerance:g})")
            first = self.first_divergence(v)
            if first is not None:
                lines.append(f"  -> diverges first at {first.stage}")
        n_pass = sum(r.status == "pass" for r in self.results)
        n_missing = sum(r.status == "missing" for r in self.results)
        lines.append(f"{'PASS' if self.ok else 'FAIL'}: {n_pass} stages pass, {len(self.failed)} fail, "
                     f"{n_missing} not dumped"
                     + (f"; no model output passed for vectors {self.vectors_without_output} (a port proves itself "
                        "on the model outputs: dump at least one per vector)" if self.vectors_without_output else ""))
        return "\n".join(lines)


def read_dump(path: str | Path) -> tuple[str, dict[str, dict], dict]:
    """``(port name, {vector: {stage: array, "outputs": {file: array}}}, {"features": ..., "scores": ...})`` from
    a JSON or .npz dump (the last is empty when the port dumped no record rule)."""
    p = Path(path)
    if not p.is_file():
        raise EdgeSDKError(f"port dump {p} not found")
    if p.suffix == ".npz":
        vectors: dict[str, dict] = {}
        try:
            loaded = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise EdgeSDKError(f"port dump {p} is not a readable .npz of numeric arrays ({type(e).__name__}: {e}); "
                               "write it with numpy.savez (no object arrays) as the bundle README shows") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise EdgeSDKError(f"port dump {p} is a single array (.npy), not an .npz of named arrays; see the bundle "
                               "README for the names")
        try:
            with loaded as z:
                for key in z.files:
                    vid, _, rest = key.partition(".")
                    d = vectors.setdefault(vid, {"outputs": {}})
                    if vid == RECORD_RULE_VECTOR:
                        d[rest] = z[key]
                    elif rest.startswith("output."):
                        d["outputs"][rest[len("output."):]] = z[key]
                    else:
                        d[rest] = z[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # an object array, a damaged member
            raise EdgeSDKError(f"port dump {p}: an array cannot be read ({type(e).__name__}: {e}); store numeric "
                               "arrays only (numpy.savez without object arrays)") from None
        rule = vectors.pop(RECORD_RULE_VECTOR, {})
        rule.pop("outputs", None)
        return p.name, vectors, rule
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise EdgeSDKError(f"port dump {p} is not JSON ({e}); see the bundle README for the format") from e
    if not isinstance(data, dict) or data.get("format") != DUMP_FORMAT or not isinstance(data.get("vectors"), dict):
        raise EdgeSDKError(f"port dump {p}: expected {{\"format\": \"{DUMP_FORMAT}\", \"version\": 1, \"vectors\": "
                           "{...}}; see the bundle README")
    if data.get("version") != DUMP_VERSION:
        raise EdgeSDKError(f"port dump {p} is version {data.get('version')!r}; this ecg-edge reads version "
                           f"{DUMP_VERSION} (see the bundle README)")
    rule = data.get(RECORD_RULE_VECTOR) or {}
    if not isinstance(rule, dict):
        raise EdgeSDKError(f"port dump {p}: \"{RECORD_RULE_VECTOR}\" must be an object with \"features\" and "
                           "\"scores\"; see the bundle README")
    bad = [v for v, d in data["vectors"].items() if not isinstance(d, dict) or not isinstance(d.get("outputs", {}), dict)]
    if bad:
        raise EdgeSDKError(f"port dump {p}: vector {bad[0]!r} must be an object of stages, with \"outputs\" an object "
                           "{file name: probabilities}; see the bundle README")
    return str(data.get("port", p.name)), data["vectors"], rule


def _compare(vector: str, stage: str, expected: np.ndarray, got, tol: float) -> StageResult:
    if got is None:
        return StageResult(vector, stage, "missing", tolerance=tol)
    try:
        raw = np.asarray(got)
        if raw.dtype.kind not in "fiu":  # text that looks like numbers, objects, booleans
            raise TypeError(raw.dtype)
        g = raw.astype(np.float64).reshape(-1)
    except (TypeError, ValueError):
        return StageResult(vector, stage, "shape", tolerance=tol, detail="not an array of numbers")
    e = np.asarray(expected, np.float64).reshape(-1)
    if g.shape != e.shape:
        return StageResult(vector, stage, "shape", tolerance=tol,
                           detail=f"{g.size} values, expected {e.size}")
    diff = np.abs(g - e)
    diff[np.isnan(diff)] = np.inf
    i = int(np.argmax(diff))
    m = float(diff[i])
    return StageResult(vector, stage, "pass" if m <= tol else "fail", m, i, float(e[i]), float(g[i]), tol)


def verify_port(bundle: str | Path, dump: str | Path) -> PortReport:
    """Compare ``dump`` with the conformance vectors of ``bundle``, every vector, stage and model output."""
    b = load_bundle(bundle)
    conf = b.card.get("conformance")
    if not conf:
        raise EdgeSDKError(f"bundle {b.root} has no conformance vectors; rebuild it with this `ecg-edge quantize`")
    port, got, got_rule = read_dump(dump)
    report = PortReport(str(b.root), str(dump), port)
    unknown = sorted(set(got) - {v["id"] for v in conf["vectors"]})
    if unknown:
        raise EdgeSDKError(f"port dump {dump} has vectors {unknown} that the bundle does not; it has "
                           f"{[v['id'] for v in conf['vectors']]}")
    stage_names = {s["name"] for s in conf["stages"]}
    with np.load(b.root / conf["file"]) as z:
        for v in conf["vectors"]:
            vid = v["id"]
            d = got.get(vid) or {}
            for extra in sorted(set(d) - stage_names - {"outputs"}):
                report.results.append(StageResult(vid, extra, "unknown", detail=(
                    f"not a stage of this bundle (stages: {', '.join(sorted(stage_names))})")))
            for extra in sorted(set(d.get("outputs") or {}) - set(conf["outputs"])):
                report.results.append(StageResult(vid, f"output {extra}", "unknown", detail=(
                    f"not a model file of this bundle (files: {', '.join(conf['outputs'])})")))
            for s in conf["stages"]:
                if s["tolerance_abs"] is None:
                    continue
                report.results.append(_compare(vid, s["name"], z[f"{vid}.{s['name']}"], d.get(s["name"]),
                                               float(s["tolerance_abs"])))
            outs = d.get("outputs") or {}
            for name, o in conf["outputs"].items():
                report.results.append(_compare(vid, f"output {name}", z[f"{vid}.output.{name}"], outs.get(name),
                                               float(o["tolerance_abs"])))
    example = (b.card.get("record_rule") or {}).get("example")
    if example:
        classes = b.card["record_rule"]["classes"]
        want = {"features": example["features"], "scores": [example["scores"][c] for c in classes]}
        for stage, expected in want.items():
            report.results.append(_compare(RECORD_RULE_VECTOR, stage, np.asarray(expected), got_rule.get(stage),
                                           RECORD_RULE_TOLERANCE))
    return report
