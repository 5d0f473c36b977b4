"""quantize: export students (and teachers) to ONNX, int8 ONNX (QDQ) and int8 TFLite (the same parts in float
in both); fidelity; bundles."""
