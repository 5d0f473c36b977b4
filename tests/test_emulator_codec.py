"""The emulator's own PMD encoder (written from polar_pmd.md) against the SDK's decoder, and both against the
documented H10 bytes: the BLE tests cross-check the codec instead of sharing it."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ecg_edge.emulator import pmd_bytes
from edge_sdk.sources.polar.pmd import SettingType, parse_ecg_frame, parse_heart_rate, parse_settings


def test_documented_h10_settings_bytes():
    params = bytes.fromhex("00 01 82 00 01 01 0E 00")  # GET response params: 130 Hz, 14 bit
    assert pmd_bytes.read_settings(params) == {0: [130], 1: [14]}
    assert parse_settings(params) == {SettingType.SAMPLE_RATE: [130], SettingType.RESOLUTION: [14]}
    assert pmd_bytes.samples_per_frame(232) == 73


@settings(max_examples=150, deadline=None, derandomize=True)
@given(ts=st.integers(0, 2**63 - 1),
       samples=st.lists(st.integers(-(1 << 23), (1 << 23) - 1), min_size=1, max_size=73))
def test_emulator_frames_decode_in_the_sdk(ts, samples):
    frame = pmd_bytes.ecg_frame(ts, samples)
    assert len(frame) == 10 + 3 * len(samples)
    got = parse_ecg_frame(frame)
    assert got.timestamp_ns == ts and np.array_equal(got.samples_uv.astype(np.int64), np.asarray(samples, np.int64))


def test_emulator_heart_rate_decodes_in_the_sdk():
    hr = parse_heart_rate(pmd_bytes.heart_rate(74, [0.8076171875, 0.81], contact=True))
    assert hr.bpm == 74 and hr.contact is True
    assert np.allclose(hr.rr_s, [0.8076171875, round(0.81 * 1024) / 1024])
