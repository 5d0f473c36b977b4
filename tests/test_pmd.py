"""PMD byte logic against the exact sequences of shared/reference/polar_pmd.md, plus frame timestamping."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from edge_sdk.sources.polar.pmd import (MIN_MTU, PMD_EPOCH_OFFSET_S, ControlPointAssembler, ControlResponse,
                                        MeasurementType, Opcode, PmdError, SensorStopped, SettingType, Status,
                                        encode_ecg_frame, encode_heart_rate, get_settings_command,
                                        parse_ecg_frame, parse_features, parse_heart_rate, parse_settings,
                                        samples_per_frame, start_command, stop_command)
from edge_sdk.sources.timestamps import ClockMapper, FrameTimestamper

H = bytes.fromhex


def feed_one(data: bytes) -> ControlResponse | SensorStopped:
    message = ControlPointAssembler().feed(data)
    assert message is not None
    return message


# ----------------------------------------------------------------------------- commands and responses

def test_command_bytes_match_the_h10_exchange():
    assert get_settings_command() == H("01 00")
    assert start_command() == H("02 00 00 01 82 00 01 01 0E 00")
    assert stop_command() == H("03 00")


def test_get_settings_response_130hz_14bit():
    r = feed_one(H("F0 01 00 00 00 00 01 82 00 01 01 0E 00"))
    assert isinstance(r, ControlResponse)
    assert (r.opcode, r.mtype, r.status, r.ok) == (Opcode.GET_SETTINGS, MeasurementType.ECG, Status.OK, True)
    assert parse_settings(r.params) == {SettingType.SAMPLE_RATE: [130], SettingType.RESOLUTION: [14]}


@pytest.mark.parametrize("raw, opcode, status", [
    ("F0 02 00 00 00 00", Opcode.START, Status.OK),
    ("F0 03 00 00 00", Opcode.STOP, Status.OK),
    ("F0 02 00 05 00", Opcode.START, Status.INVALID_PARAMETER),  # START without parameters
    ("F0 02 00 0A 00", Opcode.START, Status.INVALID_MTU),  # START at MTU 23
    ("F0 02 00 06 00", Opcode.START, Status.ALREADY_IN_STATE),
])
def test_control_responses(raw, opcode, status):
    r = feed_one(H(raw))
    assert isinstance(r, ControlResponse)
    assert (r.opcode, r.status, r.ok) == (opcode, status, status == Status.OK)


def test_response_over_two_indications_is_reassembled():
    asm = ControlPointAssembler()
    assert asm.feed(H("F0 01 00 00 01 00 01 82 00")) is None  # more != 0: wait
    r = asm.feed(H("F0 01 00 00 00 01 01 0E 00"))  # continuation: bytes from index 5 appended
    assert isinstance(r, ControlResponse) and r.ok
    assert r.params == H("00 01 82 00 01 01 0E 00")
    # the assembler is ready for the next message
    assert feed_one(H("F0 02 00 00 00 00")).opcode == Opcode.START
    assert asm.feed(H("F0 03 00 00 00")).opcode == Opcode.STOP


def test_sensor_initiated_stop_indication():
    assert feed_one(H("01 00")) == SensorStopped([MeasurementType.ECG])


def test_features_of_the_h10():
    assert parse_features(H("0F 05 00")) == {MeasurementType.ECG, MeasurementType.ACC}
    assert parse_features(H("0F 01")) == {MeasurementType.ECG}


@pytest.mark.parametrize("bad", ["", "F0 02", "7E 01 02", "F0 02 00 63 00"])
def test_malformed_control_indications_raise(bad):
    with pytest.raises(PmdError):
        ControlPointAssembler().feed(H(bad))


def test_short_continuation_raises():
    asm = ControlPointAssembler()
    asm.feed(H("F0 01 00 00 01 00 01"))
    with pytest.raises(PmdError, match="continuation"):
        asm.feed(H("F0 01"))


def test_malformed_features_raise():
    with pytest.raises(PmdError):
        parse_features(H("F0 05 00"))
    with pytest.raises(PmdError):
        parse_features(H("0F"))


# ----------------------------------------------------------------------------- ECG frames

def test_frame_layout_and_decoding():
    ts = 599_616_000_123_456_789  # ns since 2000-01-01 of the LAST sample
    raw = (H("00") + struct.pack("<Q", ts) + H("00")
           + H("FF FF FF") + H("E8 03 00") + H("18 FC FF") + H("FF FF 7F") + H("00 00 80"))
    frame = parse_ecg_frame(raw)
    assert frame.timestamp_ns == ts and frame.frame_type == 0
    assert frame.samples_uv.tolist() == [-1, 1000, -1000, (1 << 23) - 1, -(1 << 23)]
    assert frame.unix_time_s == pytest.approx(ts / 1e9 + PMD_EPOCH_OFFSET_S, abs=1e-6)
    assert encode_ecg_frame(ts, frame.samples_uv) == raw


def test_unset_sensor_clock_is_2019():
    ts = (1_546_300_800 - PMD_EPOCH_OFFSET_S) * 10 ** 9  # 2019-01-01T00:00:00Z
    assert parse_ecg_frame(encode_ecg_frame(ts, np.zeros(3))).unix_time_s == 1_546_300_800


def test_samples_per_frame_fills_the_mtu():
    assert samples_per_frame(232) == 73
    assert len(encode_ecg_frame(0, np.zeros(73))) == 232 - 3
    assert samples_per_frame(23) == 3
    assert samples_per_frame(MIN_MTU) == 19


@pytest.mark.parametrize("bad", [
    "00 01 02",  # shorter than the header
    "02 00 00 00 00 00 00 00 00 00 01 02 03",  # ACC, not ECG
    "00 00 00 00 00 00 00 00 00 80 01 02 03",  # delta-compressed
    "00 00 00 00 00 00 00 00 00 00 01 02",  # payload not a multiple of 3
])
def test_malformed_frames_raise(bad):
    with pytest.raises(PmdError):
        parse_ecg_frame(H(bad))


def test_out_of_range_samples_cannot_be_encoded():
    with pytest.raises(PmdError):
        encode_ecg_frame(0, np.array([1 << 23]))


# ----------------------------------------------------------------------------- heart rate

def test_heart_rate_with_rr_in_1024ths():
    hr = parse_heart_rate(H("16 4A 43 03 2B 03"))  # RR present, contact supported + detected, 74 bpm
    assert hr.bpm == 74 and hr.contact is True and hr.energy_kj is None
    assert hr.rr_s == [0x0343 / 1024, 0x032B / 1024]


def test_heart_rate_u16_energy_no_contact_support():
    hr = parse_heart_rate(H("19 2C 01 10 00 00 04"))
    assert hr.bpm == 300 and hr.energy_kj == 16 and hr.contact is None and hr.rr_s == [1.0]


def test_heart_rate_round_trip_and_errors():
    hr = parse_heart_rate(encode_heart_rate(61, [0.984375, 1.0]))
    assert hr.bpm == 61 and hr.rr_s == [0.984375, 1.0] and hr.contact is True
    assert parse_heart_rate(H("00 48")).rr_s == []
    with pytest.raises(PmdError):
        parse_heart_rate(H("10"))


# ----------------------------------------------------------------------------- timestamps

def test_first_frame_rule_uses_nominal_period():
    ts = FrameTimestamper(130.0)
    t = ts.place(1000.0, 73)
    assert t.gap_before_s == 0 and not t.duplicate
    np.testing.assert_allclose(t.times_s, 1000.0 - np.arange(72, -1, -1) / 130.0)


def test_next_frame_uses_the_timestamp_delta():
    ts = FrameTimestamper(130.0)
    ts.place(1000.0, 73)
    t = ts.place(1000.0 + 73 / 129.0, 73)  # delta = (ts - ts_prev) / n
    np.testing.assert_allclose(t.times_s, 1000.0 + np.arange(1, 74) / 129.0)


def test_lost_frames_are_a_gap_not_bridged():
    ts = FrameTimestamper(130.0)
    ts.place(1000.0, 73)
    t = ts.place(1000.0 + 3 * 73 / 130.0, 73)  # two frames lost
    assert t.gap_before_s == pytest.approx(2 * 73 / 130.0)
    assert t.times_s.shape == (73,)
    assert t.times_s[0] == pytest.approx(1000.0 + (2 * 73 + 1) / 130.0)
    assert ts.n_gaps == 1


def test_duplicates_are_flagged():
    ts = FrameTimestamper(130.0)
    ts.place(1000.0, 73)
    t = ts.place(1000.0, 73)
    assert t.duplicate and t.times_s.size == 0 and ts.n_duplicates == 1


def test_130_045_hz_stream_is_tracked_within_0_01_hz():
    fs, n = 130.045, 73
    ts = FrameTimestamper(130.0)
    for k in range(1, 300):
        t = ts.place(2000.0 + k * n / fs, n)
        assert t.gap_before_s == 0
    assert abs(ts.fs_hz - fs) < 0.01


def test_clock_mapper_recovers_drift():
    rng = np.random.default_rng(1)
    drift_ppm = -40.0
    sensor = 5e8 + np.arange(0, 600, 0.56)
    host = 1.7e9 + (sensor - sensor[0]) * (1 + drift_ppm * 1e-6) + 0.01 + rng.exponential(0.005, sensor.size)
    cm = ClockMapper()
    for s, h in zip(sensor, host):
        cm.observe(float(s), float(h))
    assert cm.drift_ppm == pytest.approx(drift_ppm, abs=3.0)
    true_host = 1.7e9 + (sensor[-1] - sensor[0]) * (1 + drift_ppm * 1e-6) + 0.01  # arrival minus delay
    assert float(cm.to_host(sensor[-1])) == pytest.approx(true_host, abs=0.005)
