"""Named exceptions of the device runtime (edge_sdk). Every message says what went wrong and what to do.

One base class, :class:`EdgeSDKError`, for every error raised on purpose by this project; training's own
errors live in :mod:`distill.errors` and derive from it too, so one ``except EdgeSDKError`` catches all.
"""
from __future__ import annotations


class EdgeSDKError(Exception):
    """Base class of every error raised on purpose by edge_sdk, distill, quantize and ecg_edge."""


class SignalError(EdgeSDKError, ValueError):
    """An ECG signal cannot be used: wrong shape, NaN/inf samples, too short, bad sample rate."""


class RecordNotFoundError(EdgeSDKError, FileNotFoundError):
    """A record or data file is missing on disk."""


class DatasetError(EdgeSDKError):
    """A data set folder is missing or malformed (e.g. no REFERENCE-v3.csv)."""


class BundleError(EdgeSDKError):
    """A model bundle is missing files, has a wrong checksum, or its model card is invalid."""


class LabelError(EdgeSDKError, ValueError):
    """A label name, label table or dataset-label mapping is wrong: unknown or duplicate names, a dataset
    label with no model output, thresholds outside [0, 1]."""


class OutputExistsError(EdgeSDKError, FileExistsError):
    """An output file or folder already exists and holds something; nothing is overwritten without ``--force``."""


class RecordFormatError(EdgeSDKError, ValueError):
    """A record file exists but its content cannot be used as ECG: an unparsable or empty WFDB header, a
    signal file of the wrong size, ragged or binary CSV, a corrupt ``.npz``, an invalid sample rate, gain or
    timestamps, or units that are not a voltage."""


class OutputPathError(EdgeSDKError, OSError):
    """An output path cannot be written: a part of it is a file, a folder is not writable, the disk is full or
    read-only. The message names the path and the system's reason."""


class SplitError(DatasetError, ValueError):
    """A record-level split cannot be made: fractions that are negative or do not sum to 1, or record names
    and labels of different lengths."""


class ConfigError(EdgeSDKError, ValueError):
    """A parameter given to an SDK object is out of range (e.g. a negative backoff)."""


class MissingDependencyError(EdgeSDKError, ImportError):
    """An optional dependency (an ``ecg-edge[...]`` extra) is needed for what was asked and is not installed."""


# ----------------------------------------------------------------------------- BLE / Polar PMD

class PmdError(EdgeSDKError):
    """The sensor answered a PMD command with an error status, or sent bytes that do not parse.
    ``status``: the PMD status code (:class:`edge_sdk.sources.polar.pmd.Status`) when the sensor sent one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class MtuTooSmallError(PmdError):
    """The ATT MTU is too small for ECG frames (the H10 needs >= about 70 bytes)."""

    INVALID_MTU_STATUS = 10  # PMD status INVALID_MTU

    def __init__(self, mtu: int | None, minimum: int = 70):
        got = "the sensor rejected START with INVALID_MTU" if mtu is None else f"the negotiated ATT MTU is {mtu} bytes"
        super().__init__(
            f"{got}; Polar H10 ECG needs an ATT MTU of at least {minimum} (232 is best). Use a Bluetooth "
            "adapter/OS that negotiates a larger MTU (on Linux/BlueZ make sure the MTU exchange happens, e.g. "
            "a recent BlueZ; on Android request 232), then connect again.", self.INVALID_MTU_STATUS)
        self.mtu = mtu


class PmdTimeoutError(PmdError):
    """The sensor did not answer a control point command in time."""


class ReconnectFailedError(EdgeSDKError):
    """The link was lost and every reconnection attempt failed."""


class LinkLostError(EdgeSDKError):
    """The link dropped while the connection was being set up or a command was pending."""

    def __init__(self, address: str = "", what: str = "a control point command"):
        super().__init__(f"the link to {address} dropped during {what}; keep the strap in range and on the "
                         "chest, then connect again")
