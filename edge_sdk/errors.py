"""Named exceptions of the SDK. Every message says what went wrong and what to do."""
from __future__ import annotations


class EdgeSDKError(Exception):
    """Base class of every error raised on purpose by edge_sdk, distill and quantize."""


class SignalError(EdgeSDKError, ValueError):
    """An ECG signal cannot be used: wrong shape, NaN/inf samples, too short, bad sample rate."""


class RecordNotFoundError(EdgeSDKError, FileNotFoundError):
    """A record or data file is missing on disk."""


class DatasetError(EdgeSDKError):
    """A data set folder is missing or malformed (e.g. no REFERENCE-v3.csv)."""


class BundleError(EdgeSDKError):
    """A model bundle is missing files, has a wrong checksum, or its model card is invalid."""


class CheckpointError(EdgeSDKError):
    """A model checkpoint cannot be loaded (wrong format, keys or shapes)."""


class LabelError(EdgeSDKError, ValueError):
    """A label name, label table or dataset-label mapping is wrong: unknown or duplicate names, a dataset
    label with no model output, thresholds outside [0, 1]."""


class OutputExistsError(EdgeSDKError, FileExistsError):
    """An output file or folder already exists and holds something; nothing is overwritten without ``--force``."""


class RecordFormatError(EdgeSDKError, ValueError):
    """A record file exists but its content cannot be used as ECG: an unparsable or empty WFDB header, a
    signal file of the wrong size, ragged or binary CSV, a corrupt ``.npz``, an invalid sample rate, gain or
    timestamps, or units that are not a voltage."""


class SplitError(DatasetError, ValueError):
    """A record-level split cannot be made: fractions that are negative or do not sum to 1, or record names
    and labels of different lengths."""
