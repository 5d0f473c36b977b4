"""Bad bytes from the sensor end in a named error (PmdError) or an event, never a raw exception.

Explicit regressions use the byte strings of the reliability issue; the hypothesis tests feed arbitrary
bytes to every PMD / Heart Rate parser (deterministic: ``derandomize=True``).
"""
from __future__ import annotations

import logging
import struct

import numpy as np
import pytest

from edge_sdk.sources.polar.pmd_session import PmdSession
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.sources.polar.h10 import PolarH10Source
from edge_sdk.sources.polar.pmd import (ControlPointAssembler, ControlResponse, EcgFrame, HeartRateMeasurement,
                                        Opcode, PmdError, SensorStopped, Status, encode_ecg_frame,
                                        parse_ecg_frame, parse_heart_rate, parse_settings)

H = bytes.fromhex
FAST = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- explicit regressions

def test_unknown_opcode_is_a_named_error():
    with pytest.raises(PmdError, match="opcode 0x07"):
        ControlPointAssembler().feed(H("F0 07 00 00 00"))


def test_pmd_error_is_an_sdk_error():
    assert issubclass(PmdError, EdgeSDKError)


def test_assembler_recovers_after_an_unknown_opcode():
    asm = ControlPointAssembler()
    with pytest.raises(PmdError):
        asm.feed(H("F0 07 00 00 00"))
    assert asm.feed(H("F0 02 00 00 00 00")).opcode == Opcode.START


def test_new_response_mid_assembly_starts_a_new_one_and_reports_the_old(caplog):
    asm = ControlPointAssembler()
    assert asm.feed(H("F0 01 00 00 01 00 01 82 00")) is None  # GET_SETTINGS, more parts announced
    with caplog.at_level(logging.WARNING, logger="edge_sdk.sources.polar.pmd"):
        r = asm.feed(H("F0 02 00 00 00 00"))  # ...but the START answer arrives
    assert isinstance(r, ControlResponse)
    assert (r.opcode, r.status, r.params) == (Opcode.START, Status.OK, H("00"))
    assert len(asm.abandoned) == 1
    assert asm.abandoned[0].head == H("F0 01 00 00") and asm.abandoned[0].params == H("00 01 82 00")
    assert "abandoned" in caplog.text
    # and the assembler is clean afterwards
    assert asm.feed(H("F0 03 00 00 00")).opcode == Opcode.STOP


def test_continuation_with_the_same_header_is_still_appended():
    asm = ControlPointAssembler()
    asm.feed(H("F0 01 00 00 01 00 01 82 00"))
    r = asm.feed(H("F0 01 00 00 00 01 01 0E 00"))
    assert r.params == H("00 01 82 00 01 01 0E 00") and list(asm.abandoned) == []


def test_malformed_continuation_resets_the_assembler():
    asm = ControlPointAssembler()
    asm.feed(H("F0 01 00 00 01 00 01"))
    with pytest.raises(PmdError, match="continuation"):
        asm.feed(H("F0 01"))
    assert len(asm.abandoned) == 1
    assert asm.feed(H("F0 02 00 00 00 00")).opcode == Opcode.START  # not appended to the dropped one


@pytest.mark.parametrize("raw", ["01 50", "09 50", "08 50 01", "10 50 01", "19 2C 01 10 00 00"])
def test_truncated_heart_rate_is_a_named_error(raw):
    # 01 50: u16 rate flagged, 1 byte; 09/08: energy flagged, missing; 10/19: half an RR interval
    with pytest.raises(PmdError, match="heart rate"):
        parse_heart_rate(H(raw))


@pytest.mark.parametrize("frame_type", [0x01, 0x02, 0x03, 0x7F])
def test_ecg_frame_types_other_than_0_are_rejected(frame_type):
    raw = H("00") + struct.pack("<Q", 10 ** 18) + bytes([frame_type]) + H("01 00 00 02 00 00")
    with pytest.raises(PmdError, match=f"frame type 0x{frame_type:02x}"):
        parse_ecg_frame(raw)


# ----------------------------------------------------------------------------- bleak callbacks never raise

@pytest.fixture
def source() -> PolarH10Source:
    return PolarH10Source("00:11:22:33:44:55", heart_rate=True, clock=lambda: 1000.0)


def _session(events: list) -> PmdSession:
    return PmdSession(write=None, command_timeout_s=1.0, emit=lambda kind, **d: events.append((kind, d)),
                      on_stopped=lambda message: events.append(("stopped", message)))


@pytest.mark.parametrize("raw", ["F0 07 00 00 00", "", "7E 01", "F0 02", "F0 02 00 63 00"])
def test_control_indications_that_do_not_parse_become_events(raw):
    events: list = []
    _session(events).on_indication(bytearray(H(raw)))  # must not raise
    kind, detail = events[-1]
    assert kind == "malformed_control" and detail["data"] == H(raw).hex(" ")


def test_an_abandoned_response_is_reported_and_the_new_one_delivered():
    import asyncio

    events: list = []
    session = _session(events)

    async def scenario() -> ControlResponse:
        fut = asyncio.get_running_loop().create_future()
        session.pending[int(Opcode.START)] = fut
        session.on_indication(bytearray(H("F0 01 00 00 01 00 01 82 00")))
        session.on_indication(bytearray(H("F0 02 00 00 00 00")))
        return await asyncio.wait_for(fut, 1.0)

    r = asyncio.run(scenario())
    assert r.opcode == Opcode.START and r.ok
    assert [k for k, _ in events] == ["abandoned_response"]
    assert events[0][1]["head"] == "f0 01 00 00"


def test_a_sensor_stop_goes_to_on_stopped():
    events: list = []
    _session(events).on_indication(bytearray(H("01 00")))
    assert events[-1][0] == "stopped" and events[-1][1].mtypes == [0]


def test_a_sensor_stop_during_a_multi_part_response_is_a_stop_not_a_continuation():
    """Used to be read as a too-short continuation: the stop was lost and ECG never restarted."""
    events: list = []
    session = _session(events)
    session.on_indication(bytearray(H("F0 01 00 00 01 00 01 82 00")))  # part 1 of 2
    session.on_indication(bytearray(H("01 00")))
    assert [k for k, _ in events] == ["abandoned_response", "stopped"]
    assert events[-1][1].mtypes == [0]


def test_abandoned_responses_are_counted_and_the_kept_ones_bounded():
    asm = ControlPointAssembler()
    for k in range(3 * ControlPointAssembler.KEEP_ABANDONED):
        asm.feed(H(f"F0 0{1 + k % 2} 00 00 01 00 01"))  # a first part, cut off by another response's first part
    assert asm.n_abandoned == 3 * ControlPointAssembler.KEEP_ABANDONED - 1
    assert len(asm.abandoned) == ControlPointAssembler.KEEP_ABANDONED


@pytest.mark.parametrize("kw", [{"sample_rate": 0}, {"sample_rate": "abc"}, {"sample_rate": 130.5},
                                {"connect_timeout_s": 0}, {"command_timeout_s": float("nan")},
                                {"connect_timeout_s": -1}, {"backoff_initial_s": float("inf"),
                                                            "backoff_max_s": float("inf")},
                                {"max_reconnects": 2.5}])
def test_bad_source_parameters_are_config_errors_before_any_connection(kw):
    with pytest.raises(ConfigError):
        PolarH10Source("00:11:22:33:44:55", **kw)


def test_heart_rate_callback_turns_bad_notifications_into_events(source):
    seen: list[HeartRateMeasurement] = []
    source.on_heart_rate(lambda _t, hr: seen.append(hr))
    source._on_heart_rate(bytearray(H("01 50")))  # must not raise
    assert source.events[-1].kind == "malformed_heart_rate" and seen == [] and list(source.heart_rates) == []
    source._on_heart_rate(bytearray(H("16 4A 43 03")))
    assert [hr.bpm for hr in seen] == [74]


def test_frame_of_another_type_is_a_malformed_frame_event_not_ecg():
    from edge_sdk.sources.polar.frame_timing import FrameTiming

    events: list = []
    timing = FrameTiming(130.0, lambda kind, **d: events.append((kind, d)))
    raw = H("00") + struct.pack("<Q", 10 ** 18) + H("01") + H("01 00 00") * 73
    assert timing.chunk(raw, 1000.0) is None
    kind, detail = events[-1]
    assert kind == "malformed_frame" and "frame type 0x01" in detail["error"]


# ----------------------------------------------------------------------------- property-based

@FAST
@given(st.binary(max_size=64))
def test_any_bytes_parse_as_heart_rate_or_raise_pmd_error(data):
    try:
        hr = parse_heart_rate(data)
    except PmdError:
        return
    assert isinstance(hr, HeartRateMeasurement) and 0 <= hr.bpm <= 0xFFFF
    assert all(0 <= r < 64 for r in hr.rr_s)


@FAST
@given(st.binary(max_size=250))
def test_any_bytes_parse_as_ecg_frame_or_raise_pmd_error(data):
    try:
        frame = parse_ecg_frame(data)
    except PmdError:
        return
    assert isinstance(frame, EcgFrame) and frame.frame_type == 0
    assert frame.samples_uv.dtype == np.int32 and len(data) == 10 + 3 * frame.samples_uv.size
    assert encode_ecg_frame(frame.timestamp_ns, frame.samples_uv) == data  # decoding loses nothing


@FAST
@given(st.lists(st.binary(max_size=24), max_size=12))
def test_any_indication_sequence_gives_messages_or_pmd_errors(parts):
    asm = ControlPointAssembler()
    for part in parts:
        try:
            msg = asm.feed(part)
        except PmdError:
            continue
        assert msg is None or isinstance(msg, (ControlResponse, SensorStopped))
        if isinstance(msg, ControlResponse):
            assert isinstance(msg.opcode, Opcode) and isinstance(msg.status, Status)
            parse_settings(msg.params)  # never raises on any parameter bytes


_settings_params = st.binary(min_size=1, max_size=30)


@FAST
@given(params=_settings_params, cut=st.integers(1, 29), other_op=st.sampled_from([Opcode.START, Opcode.STOP]),
       other_status=st.sampled_from(list(Status)))
def test_a_new_response_is_never_swallowed_by_a_half_assembled_one(params, cut, other_op, other_status):
    cut = min(cut, len(params))
    asm = ControlPointAssembler()
    assert asm.feed(H("F0 01 00 00 01") + params[:cut]) is None  # first part of GET_SETTINGS
    new = bytes([0xF0, other_op, 0x00, other_status, 0x00])
    r = asm.feed(new)
    assert isinstance(r, ControlResponse) and (r.opcode, r.status, r.params) == (other_op, other_status, b"")
    assert [a.params for a in asm.abandoned] == [params[:cut]]


@FAST
@given(params=_settings_params, n_parts=st.integers(1, 5))
def test_a_response_split_into_parts_is_reassembled(params, n_parts):
    bounds = np.linspace(0, len(params), n_parts + 1).astype(int)
    asm = ControlPointAssembler()
    out = None
    for k in range(n_parts):
        more = 1 if k < n_parts - 1 else 0
        out = asm.feed(H("F0 01 00 00") + bytes([more]) + params[bounds[k]:bounds[k + 1]])
        assert (out is None) == bool(more)
    assert out.params == params and list(asm.abandoned) == []
