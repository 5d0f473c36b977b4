"""Mobile-ready model files: ONNX Runtime Mobile (``.ort`` + required-operators config) and the TFLite
file's signature names and labels.

* :func:`convert_to_ort` runs ONNX Runtime's own converter (``onnxruntime.tools.convert_onnx_models_to_ort``,
  the Python API behind ``python -m onnxruntime.tools.convert_onnx_models_to_ort``) on an ONNX model and
  returns the ``.ort`` file and the ``required_operators.config`` a reduced-size ORT Mobile build needs.
* :func:`finish_tflite` rewrites the TFLite flatbuffer (with the schema bindings that ship with
  ``ai-edge-litert``) so that the ``serving_default`` signature says ``ecg`` -> ``probs`` like the card
  (TensorFlow's Keras conversion names the output ``output_0``), stores the label table in the model's
  ``metadata`` (entry :data:`LABELS_METADATA`, JSON) and appends ``labels.txt`` as an associated file (a
  zip archive after the flatbuffer, the layout TFLite Support's metadata populator uses; interpreters ignore
  trailing bytes). The standard ``TFLITE_METADATA`` flatbuffer (read by Android's MetadataExtractor) is not
  written: the only library that writes it, ``tflite-support``, has had no release since 0.4.4 (July 2023)
  and does not install beside the numpy 2 / TensorFlow 2.21 stack used here.
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

from edge_sdk.bundle import TFLITE_LABELS_FILE
from edge_sdk.inference.onnx_backend import LABELS_KEY as ONNX_LABELS_KEY  # the key the runtime reads

LABELS_METADATA = "ecg_edge_labels"
LABELS_FILE = TFLITE_LABELS_FILE  # the name load_bundle reads


def convert_to_ort(onnx_path: str | Path, out_dir: str | Path, target_platform: str = "arm") -> tuple[Path, Path]:
    """Convert ``onnx_path`` to ORT format with onnxruntime's converter (fixed optimizations, for
    ``target_platform`` ``arm`` (phones) or ``amd64``). Returns ``(ort_file, required_operators_config)``
    in ``out_dir``, named ``<stem>.ort`` and ``<stem>.required_operators.config``."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    src = Path(onnx_path)
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        # the converter takes a file or a folder and writes beside it unless given output_dir
        staged = Path(tmp) / "in" / src.name
        staged.parent.mkdir()
        shutil.copyfile(src, staged)
        conv_out = Path(tmp) / "out"
        convert_onnx_models_to_ort(staged.parent, output_dir=conv_out, optimization_styles=[OptimizationStyle.Fixed],
                                   target_platform=target_platform)
        ort_files = list(conv_out.rglob("*.ort"))
        configs = list(conv_out.rglob("*.config"))
        if len(ort_files) != 1 or len(configs) != 1:
            raise RuntimeError(f"onnxruntime's converter wrote {sorted(p.name for p in conv_out.rglob('*'))}; "
                               "expected one .ort and one required-operators config")
        ort_path = out / f"{src.stem}.ort"
        cfg_path = out / f"{src.stem}.required_operators.config"
        shutil.copyfile(ort_files[0], ort_path)
        # the converter's header comment names the temporary file it read; name the bundle's file instead,
        # so that the config does not change with the temporary folder of each build
        text = configs[0].read_text(encoding="utf-8").replace(str(ort_files[0]), ort_path.name)
        cfg_path.write_text(text, encoding="utf-8")
    return ort_path, cfg_path


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _as_str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def finish_tflite(path: str | Path, input_name: str, output_name: str, labels: list[dict]) -> dict:
    """Rename the ``serving_default`` signature's input/output to ``input_name``/``output_name``, store
    ``labels`` (the card's label table) in the model metadata and append ``labels.txt`` (one name a line,
    output order) as an associated file. Returns what was written, for the card."""
    import flatbuffers

    schema = _schema()
    p = Path(path)
    data = p.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(data), 0))
    sigs = model.signatureDefs or []
    if len(sigs) != 1 or len(sigs[0].inputs or []) != 1 or len(sigs[0].outputs or []) != 1:
        raise RuntimeError(f"{p}: expected one signature with one input and one output")
    sig = sigs[0]
    renamed = {"signature": _as_str(sig.signatureKey), "input_was": _as_str(sig.inputs[0].name),
               "output_was": _as_str(sig.outputs[0].name)}
    sig.inputs[0].name = input_name
    sig.outputs[0].name = output_name
    payload = json.dumps({"labels": labels, "input": input_name, "output": output_name}).encode()
    buf = schema.BufferT()
    buf.data = list(payload)
    model.buffers.append(buf)
    md = schema.MetadataT()
    md.name = LABELS_METADATA
    md.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _as_str(m.name) != LABELS_METADATA] + [md]
    builder = flatbuffers.Builder(len(data) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    fb = bytes(builder.Output())
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_STORED) as z:
        # a fixed timestamp: the same labels give the same bytes on every build
        z.writestr(zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0)),
                   "".join(d["name"] + "\n" for d in labels))
    p.write_bytes(fb + zbuf.getvalue())
    return {"signature": renamed["signature"], "signature_input": input_name, "signature_output": output_name,
            "renamed_from": {"input": renamed["input_was"], "output": renamed["output_was"]},
            "labels_metadata": LABELS_METADATA, "associated_files": [LABELS_FILE],
            "standard_tflite_metadata": False}




def label_onnx(path: str | Path, names: list[str]) -> None:
    """Store the label ``names`` (output order) in the ONNX file's ``metadata_props`` (key
    :data:`ONNX_LABELS_KEY`), so that a runtime can check a card against the model it describes
    (:func:`edge_sdk.inference.open_backend` does). The graph is unchanged."""
    import onnx

    model = onnx.load(str(path))
    for prop in [p for p in model.metadata_props if p.key == ONNX_LABELS_KEY]:
        model.metadata_props.remove(prop)
    model.metadata_props.add(key=ONNX_LABELS_KEY, value=json.dumps(list(names)))
    onnx.save(model, str(path))


def read_tflite_labels(path: str | Path) -> dict:
    """The label metadata entry and the associated ``labels.txt`` of a file written by :func:`finish_tflite`."""
    schema = _schema()
    data = Path(path).read_bytes()
    m = schema.Model.GetRootAsModel(bytearray(data), 0)
    entry = None
    for i in range(m.MetadataLength()):
        md = m.Metadata(i)
        if _as_str(md.Name()) == LABELS_METADATA:
            entry = json.loads(bytes(m.Buffers(md.Buffer()).DataAsNumpy()).decode())
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.read(LABELS_FILE).decode().splitlines()
    return {"metadata": entry, "labels_txt": names}
