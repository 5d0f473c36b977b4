"""Polar Measurement Data (PMD) protocol: UUIDs, commands, control-point responses, ECG data frames.

Pure byte logic, no BLE: used by :class:`~edge_sdk.sources.polar.h10.PolarH10Source` and by the emulator.
Byte facts follow Polar's public measurement-data specification (see ``shared/reference/polar_pmd.md``).
"""
from __future__ import annotations

import logging
import struct
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from ...errors import PmdError

logger = logging.getLogger(__name__)

PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
HR_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
HR_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"

#: Seconds from 1970-01-01 to 2000-01-01 (PMD timestamps count ns from 2000-01-01T00:00:00Z).
PMD_EPOCH_OFFSET_S = 946_684_800
#: Smallest ATT MTU the H10 accepts for ECG streaming (about 70; 232 is its maximum).
MIN_MTU = 70
MAX_MTU = 232
ECG_FRAME_HEADER = 10
ECG_SAMPLE_BYTES = 3
#: Byte 9 of an H10 ECG frame: uncompressed 3-byte signed samples in microvolts.
ECG_FRAME_TYPE_UV24 = 0x00


class Opcode(IntEnum):
    GET_SETTINGS = 0x01
    START = 0x02
    STOP = 0x03


class MeasurementType(IntEnum):
    ECG = 0x00
    PPG = 0x01
    ACC = 0x02
    PPI = 0x03
    GYRO = 0x05
    MAG = 0x06


class Status(IntEnum):
    OK = 0
    INVALID_OP_CODE = 1
    INVALID_MEASUREMENT_TYPE = 2
    NOT_SUPPORTED = 3
    INVALID_LENGTH = 4
    INVALID_PARAMETER = 5
    ALREADY_IN_STATE = 6
    INVALID_RESOLUTION = 7
    INVALID_SAMPLE_RATE = 8
    INVALID_RANGE = 9
    INVALID_MTU = 10
    INVALID_NUMBER_OF_CHANNELS = 11
    INVALID_STATE = 12
    DEVICE_IN_CHARGER = 13
    DISK_FULL = 14


class SettingType(IntEnum):
    SAMPLE_RATE = 0
    RESOLUTION = 1
    RANGE = 2


# ----------------------------------------------------------------------------- commands

def encode_settings(settings: dict[SettingType, int]) -> bytes:
    out = bytearray()
    for st, value in settings.items():
        out += bytes([int(st), 1]) + struct.pack("<H", value)
    return bytes(out)


def get_settings_command(mtype: MeasurementType = MeasurementType.ECG) -> bytes:
    return bytes([Opcode.GET_SETTINGS, mtype])


def start_command(mtype: MeasurementType = MeasurementType.ECG, sample_rate: int = 130, resolution: int = 14) -> bytes:
    """``02 00 00 01 82 00 01 01 0E 00`` for ECG at 130 Hz, 14 bit."""
    return bytes([Opcode.START, mtype]) + encode_settings({SettingType.SAMPLE_RATE: sample_rate,
                                                           SettingType.RESOLUTION: resolution})


def stop_command(mtype: MeasurementType = MeasurementType.ECG) -> bytes:
    return bytes([Opcode.STOP, mtype])


# ----------------------------------------------------------------------------- control point

FEATURES_HEADER = 0x0F
RESPONSE_HEADER = 0xF0


def parse_features(data: bytes) -> set[MeasurementType]:
    """The control point's read value ``0F <bitmask> ...`` -> supported measurement types."""
    if len(data) < 2 or data[0] != FEATURES_HEADER:
        raise PmdError(f"control point read {data.hex(' ')} is not a feature report (0F ...)")
    mask = data[1]
    return {m for m in MeasurementType if mask & (1 << int(m))}


def parse_settings(params: bytes) -> dict[SettingType, list[int]]:
    """``[type, count, u16 values...]*`` -> {setting: [values]}; range values are u16 too on the H10."""
    out: dict[SettingType, list[int]] = {}
    i = 0
    while i + 2 <= len(params):
        st, count = params[i], params[i + 1]
        i += 2
        vals = [struct.unpack_from("<H", params, i + 2 * k)[0] for k in range(count) if i + 2 * k + 2 <= len(params)]
        i += 2 * count
        try:
            out[SettingType(st)] = vals
        except ValueError:
            pass  # setting types this SDK does not use (channels, factor...) are skipped
    return out


@dataclass
class ControlResponse:
    opcode: Opcode
    mtype: int
    status: Status
    params: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status == Status.OK


@dataclass
class SensorStopped:
    """Indication ``01 <types>``: the sensor stopped these measurements by itself."""

    mtypes: list[int]


@dataclass
class AbandonedResponse:
    """A multi-part response that was dropped before its last part: a new response (different
    ``F0 op type status`` header) arrived, or a continuation was malformed. ``head``: its 4 header bytes;
    ``params``: the parameter bytes gathered so far; ``reason``: why it was dropped."""

    head: bytes
    params: bytes
    reason: str


class ControlPointAssembler:
    """Joins responses that span several indications: while byte 4 (``more``) is non-zero, the next
    indication's bytes from index 5 on are appended. ``feed`` returns a complete message or None.

    Every part of a multi-part response repeats the header ``F0 op type status``. An indication with a
    different header arriving mid-assembly is a NEW response (e.g. the ``F0 02`` answer to START): the
    half-built one is abandoned, logged and appended to :attr:`abandoned`, and assembly starts afresh, so
    the new response is not lost. Malformed input raises :class:`PmdError` and resets the assembler.
    """

    KEEP_ABANDONED = 64

    def __init__(self) -> None:
        self._head: bytes | None = None
        self._params = bytearray()
        #: the latest multi-part responses dropped before completion (oldest first; bounded, a connection can
        #: last for days); :attr:`n_abandoned` counts them all
        self.abandoned: deque[AbandonedResponse] = deque(maxlen=self.KEEP_ABANDONED)
        self.n_abandoned = 0

    def _abandon(self, reason: str) -> None:
        if self._head is not None:
            dropped = AbandonedResponse(self._head, bytes(self._params), reason)
            self.abandoned.append(dropped)
            self.n_abandoned += 1
            logger.warning("abandoned a half-assembled PMD response %s (%d parameter bytes): %s",
                           self._head.hex(" "), len(dropped.params), reason)
        self._head, self._params = None, bytearray()

    def feed(self, data: bytes) -> ControlResponse | SensorStopped | None:
        """Take one control point indication; return the completed message, or None while parts are pending.

        Raises :class:`PmdError` for an empty, truncated or unknown indication, an unknown opcode or status.
        """
        data = bytes(data)
        if not data:
            raise PmdError("empty control point indication; ignore it (the sensor repeats nothing)")
        if self._head is not None and len(data) >= 4 and data[0] == RESPONSE_HEADER and data[:4] != self._head:
            self._abandon(f"a new response {data[:4].hex(' ')} began before its last part")
        if self._head is not None and data[0] == 0x01:  # parts repeat F0...: this is the sensor stopping
            self._abandon(f"the sensor stopped a measurement ({data.hex(' ')}) before its last part")
            return SensorStopped(list(data[1:]))
        if self._head is not None:  # continuation
            if len(data) < 5:
                self._abandon(f"continuation {data.hex(' ')} is shorter than 5 bytes")
                raise PmdError(f"continuation indication {data.hex(' ')} is shorter than 5 bytes; the "
                               "response being assembled was dropped: send the command again")
            self._params += data[5:]
            more = data[4]
        elif data[0] == RESPONSE_HEADER:
            if len(data) < 4:
                raise PmdError(f"control response {data.hex(' ')} is shorter than 4 bytes "
                               "(F0 op type status); send the command again")
            self._head = data[:4]
            self._params = bytearray(data[5:])
            more = data[4] if len(data) > 4 else 0
        elif data[0] == 0x01:
            return SensorStopped(list(data[1:]))
        else:
            raise PmdError(f"unexpected control point indication {data.hex(' ')}: neither a response (F0 ...) "
                           "nor a sensor stop (01 ...); it is ignored")
        if more:
            return None
        head, params = self._head, bytes(self._params)
        self._head, self._params = None, bytearray()
        try:
            opcode = Opcode(head[1])
        except ValueError:
            raise PmdError(f"unknown PMD opcode 0x{head[1]:02x} in response {head.hex(' ')}; this SDK sends "
                           "only GET_SETTINGS (01), START (02) and STOP (03): the response is ignored") from None
        try:
            status = Status(head[3])
        except ValueError:
            raise PmdError(f"unknown PMD status {head[3]} in {head.hex(' ')}; check the sensor firmware") from None
        return ControlResponse(opcode, head[2], status, params)


# ----------------------------------------------------------------------------- data frames

@dataclass
class EcgFrame:
    """One ECG data notification: ``timestamp_ns`` of the LAST sample (ns since 2000-01-01), samples in uV."""

    timestamp_ns: int
    samples_uv: np.ndarray  # (n,) int32 microvolts
    frame_type: int = 0

    @property
    def unix_time_s(self) -> float:
        return self.timestamp_ns / 1e9 + PMD_EPOCH_OFFSET_S


def parse_ecg_frame(data: bytes) -> EcgFrame:
    """Decode ``00 <u64 ts ns> <frame type 00> <3-byte signed LE uV>*`` into samples in microvolts.

    Raises :class:`PmdError` when malformed: shorter than the 10-byte header, not ECG (byte 0), a frame
    type other than 0x00 (delta-compressed or another layout), or a payload not a multiple of 3 bytes.
    """
    data = bytes(data)
    if len(data) < ECG_FRAME_HEADER:
        raise PmdError(f"ECG frame of {len(data)} bytes is shorter than its 10-byte header")
    if data[0] != MeasurementType.ECG:
        raise PmdError(f"frame of measurement type {data[0]} is not ECG (0)")
    frame_type = data[9]
    if frame_type & 0x80:
        raise PmdError(f"delta-compressed ECG frame (type 0x{frame_type:02x}) is not produced by the H10; "
                       "the frame is skipped")
    if frame_type != ECG_FRAME_TYPE_UV24:
        raise PmdError(f"ECG frame type 0x{frame_type:02x} is not supported (only 0x00, 3-byte microvolt "
                       "samples, as sent by the H10); the frame is skipped")
    payload = data[ECG_FRAME_HEADER:]
    if len(payload) % ECG_SAMPLE_BYTES:
        raise PmdError(f"ECG payload of {len(payload)} bytes is not a multiple of 3")
    raw = np.frombuffer(payload, np.uint8).reshape(-1, 3).astype(np.int32)
    values = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
    values = np.where(values & 0x800000, values - (1 << 24), values)
    return EcgFrame(struct.unpack_from("<Q", data, 1)[0], values.astype(np.int32), frame_type)


def encode_ecg_frame(timestamp_ns: int, samples_uv: np.ndarray) -> bytes:
    """Inverse of :func:`parse_ecg_frame` (used by the emulator and tests)."""
    v = np.asarray(samples_uv, np.int64)
    if v.size and (v.min() < -(1 << 23) or v.max() >= (1 << 23)):
        raise PmdError("ECG samples must fit in 24-bit signed microvolts")
    v = v & 0xFFFFFF
    body = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], 1).astype(np.uint8).tobytes()
    return bytes([MeasurementType.ECG]) + struct.pack("<Q", timestamp_ns) + bytes([0x00]) + body


def samples_per_frame(mtu: int) -> int:
    """ECG samples in one notification at ATT MTU ``mtu``: (MTU - 3 - 10) / 3, 73 at MTU 232."""
    return max(0, (mtu - 3 - ECG_FRAME_HEADER) // ECG_SAMPLE_BYTES)


# ----------------------------------------------------------------------------- heart rate service

@dataclass
class HeartRateMeasurement:
    bpm: int
    rr_s: list[float] = field(default_factory=list)
    contact: bool | None = None
    energy_kj: int | None = None


def parse_heart_rate(data: bytes) -> HeartRateMeasurement:
    """Heart Rate Measurement (0x2A37): flags, u8/u16 bpm, optional u16 energy (kJ), RR intervals (u16 in
    1/1024 s, returned in seconds).

    Raises :class:`PmdError` when the bytes are fewer than the flags announce (e.g. ``01 50``: u16 heart
    rate flagged, one byte present) or an RR interval is cut off.
    """
    data = bytes(data)
    if len(data) < 2:
        raise PmdError(f"heart rate measurement {data.hex(' ')} is too short (needs flags + rate); "
                       "the notification is ignored")
    flags = data[0]
    need = 1 + (2 if flags & 0x01 else 1) + (2 if flags & 0x08 else 0)
    if len(data) < need:
        raise PmdError(f"heart rate measurement {data.hex(' ')} has {len(data)} bytes but its flags 0x{flags:02x} "
                       f"announce at least {need}; the notification is ignored")
    i = 1
    if flags & 0x01:
        bpm = struct.unpack_from("<H", data, i)[0]
        i += 2
    else:
        bpm = data[i]
        i += 1
    contact = bool(flags & 0x02) if flags & 0x04 else None
    energy = None
    if flags & 0x08:
        energy = struct.unpack_from("<H", data, i)[0]
        i += 2
    rr: list[float] = []
    if flags & 0x10:
        if (len(data) - i) % 2:
            raise PmdError(f"heart rate measurement {data.hex(' ')} ends in half an RR interval (RR values are "
                           "u16); the notification is ignored")
        rr = [v / 1024.0 for (v,) in struct.iter_unpack("<H", data[i:])]
    return HeartRateMeasurement(bpm, rr, contact, energy)


def encode_heart_rate(bpm: int, rr_s: list[float], contact: bool = True) -> bytes:
    flags = 0x10 | 0x04 | (0x02 if contact else 0)
    return bytes([flags, min(bpm, 255)]) + b"".join(struct.pack("<H", int(round(r * 1024))) for r in rr_s)
