"""The emulated H10's own PMD byte layer, written from the protocol facts (``shared/reference/polar_pmd.md``)
and deliberately independent of ``edge_sdk.sources.polar.pmd``: the SDK's decoder is tested against an
encoder it did not write, so a shared misunderstanding cannot hide in both.

Byte layouts (all little-endian):

* control point response (indication): ``F0 op type status more [params]``;
* settings: ``[setting_type, count, u16 value * count] *`` (0 sample rate, 1 resolution, 2 range);
* ECG notification: ``00`` | u64 ns since 2000-01-01 of the *last* sample | frame type ``00`` |
  n x 3-byte signed microvolts, n = (MTU - 3 - 10) // 3;
* Heart Rate Measurement 0x2A37: flags (bit1 contact detected, bit2 contact supported, bit4 RR present),
  u8 bpm, u16 RR intervals in 1/1024 s.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

PMD_SERVICE = "FB005C80-02E7-F387-1CAD-8ACD2D8DF0C8".lower()
PMD_CONTROL = "FB005C81-02E7-F387-1CAD-8ACD2D8DF0C8".lower()
PMD_DATA = "FB005C82-02E7-F387-1CAD-8ACD2D8DF0C8".lower()
HR_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
HR_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"
#: Unix time of 2000-01-01T00:00:00Z, the PMD clock's zero.
PMD_EPOCH_OFFSET_S = 946_684_800
MIN_MTU, MAX_MTU = 70, 232

Opcode = SimpleNamespace(GET_SETTINGS=1, START=2, STOP=3)
MeasurementType = SimpleNamespace(ECG=0, ACC=2)
SettingType = SimpleNamespace(SAMPLE_RATE=0, RESOLUTION=1, RANGE=2)
Status = SimpleNamespace(OK=0, INVALID_OP_CODE=1, INVALID_MEASUREMENT_TYPE=2, NOT_SUPPORTED=3, INVALID_LENGTH=4,
                         INVALID_PARAMETER=5, ALREADY_IN_STATE=6, INVALID_RESOLUTION=7, INVALID_SAMPLE_RATE=8,
                         INVALID_RANGE=9, INVALID_MTU=10)


def samples_per_frame(mtu: int) -> int:
    """ECG samples that fit one notification: 3 bytes of ATT header, 10 of frame header, 3 per sample."""
    return max(0, (int(mtu) - 13) // 3)


def read_settings(params: bytes) -> dict[int, list[int]]:
    """START/GET_SETTINGS parameters -> ``{setting type: [u16 values]}``; a truncated list ends the parse."""
    out: dict[int, list[int]] = {}
    pos = 0
    while pos + 2 <= len(params):
        kind, count = params[pos], params[pos + 1]
        pos += 2
        end = pos + 2 * count
        if end > len(params):
            break
        out[kind] = [int.from_bytes(params[j:j + 2], "little") for j in range(pos, end, 2)]
        pos = end
    return out


def ecg_frame(timestamp_ns: int, samples_uv) -> bytes:
    """One ECG notification for ``samples_uv`` (integers, microvolts, 24-bit signed)."""
    head = bytes([0x00]) + int(timestamp_ns).to_bytes(8, "little") + bytes([0x00])
    body = b"".join(int(v).to_bytes(3, "little", signed=True) for v in np.asarray(samples_uv, np.int64))
    return head + body


def heart_rate(bpm: int, rr_s, contact: bool = True) -> bytes:
    """A Heart Rate Measurement with u8 bpm, contact supported (+ detected), and RR intervals in seconds."""
    flags = 0b10100 | (0b10 if contact else 0)
    rr = b"".join(int(round(r * 1024)).to_bytes(2, "little") for r in rr_s)
    return bytes([flags, min(int(bpm), 255)]) + rr
