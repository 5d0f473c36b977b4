"""quantize: export students (and teachers) to ONNX, int8 ONNX (QDQ) and full-integer TFLite; fidelity; bundles."""
