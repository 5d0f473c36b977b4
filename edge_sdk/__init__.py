"""edge_sdk: the on-device runtime for single-lead ECG models (numpy/scipy + onnxruntime or TFLite, no torch)."""
from .errors import BundleError, DatasetError, EdgeSDKError, LabelError, RecordNotFoundError, SignalError
from .preprocessing import (DEFAULT_CONFIG, MODEL_FS_HZ, WINDOW_SAMPLES, PreprocessingConfig, bandpass_filter,
                            preprocess_record, preprocess_window, preprocess_windows, resample, zscore)
from .record_rule import RecordDecision, RecordRule, RecordStats
from .windowing import record_windows, split_windows

__version__ = "0.1.0"
__all__ = [
    "BundleError", "DatasetError", "LabelError", "EdgeSDKError", "RecordNotFoundError", "SignalError",
    "DEFAULT_CONFIG", "MODEL_FS_HZ", "WINDOW_SAMPLES", "PreprocessingConfig", "bandpass_filter",
    "preprocess_record", "preprocess_window", "preprocess_windows", "record_windows", "resample", "split_windows",
    "zscore", "RecordDecision", "RecordRule", "RecordStats",
]
