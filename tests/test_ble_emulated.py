"""PolarH10Source through the REAL ``bleak.BleakClient`` against an emulated H10 on a bumble LocalLink.

The emulator streams real MIT-BIH ECG (record 100, MLII) at ``SPEED`` x real time; sensor timestamps
advance at the sensor's own rate and the source uses the emulator's matching host clock.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from bleak import BleakClient

from ecg_edge.emulator import EmulatedEcg, EmulatedPolarH10, emulated_h10, load_mitdb_ecg
from edge_sdk.sources.base import EcgChunk, SourceEvent
from edge_sdk.sources.polar.h10 import MtuTooSmallError, PolarH10Source, ReconnectFailedError
from edge_sdk.sources.polar.pmd import PMD_CONTROL, PMD_DATA, Status, parse_ecg_frame, samples_per_frame

SPEED = 20.0
N = samples_per_frame(232)  # 73 samples per frame
H = bytes.fromhex


@pytest.fixture(scope="module")
def ecg(mitdb) -> EmulatedEcg:
    return load_mitdb_ecg("100", fs_hz=130.0, mitdb=mitdb, seconds=120)


@dataclass
class Run:
    items: list[Any]
    sensor: EmulatedPolarH10
    source: PolarH10Source

    @property
    def chunks(self) -> list[EcgChunk]:
        return [i for i in self.items if isinstance(i, EcgChunk)]

    @property
    def events(self) -> list[SourceEvent]:
        return [i for i in self.items if isinstance(i, SourceEvent)]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, kind: str) -> list[SourceEvent]:
        return [e for e in self.events if e.kind == kind]

    def received_uv(self) -> np.ndarray:
        return np.concatenate([c.samples_uv for c in self.chunks])

    def sent_uv(self) -> np.ndarray:
        """What the sensor notified, once per frame (duplicates once, dropped frames not at all)."""
        return np.concatenate([f.samples_uv for f in self.sensor.frames if f.sent])


async def _collect(source: PolarH10Source, n_chunks: int, timeout_s: float) -> list[Any]:
    items: list[Any] = []
    gen = source.stream()

    async def consume() -> None:
        count = 0
        async for item in gen:
            items.append(item)
            count += isinstance(item, EcgChunk)
            if count >= n_chunks:
                return

    try:
        await asyncio.wait_for(consume(), timeout_s)
    finally:
        await source.close()
        await gen.aclose()
    return items


def run(ecg: EmulatedEcg, n_chunks: int, source_kwargs: dict | None = None, timeout_s: float = 30.0,
        **emulator_options) -> Run:
    """Stream ``n_chunks`` chunks from an emulated H10 with ``emulator_options`` (faults)."""
    emulator_options.setdefault("speed", SPEED)

    async def main() -> Run:
        async with emulated_h10(ecg, **emulator_options) as (address, backend, sensor):
            kwargs = dict(backoff_initial_s=0.05, connect_timeout_s=0.3, command_timeout_s=3.0, seed=1)
            kwargs.update(source_kwargs or {})
            source = PolarH10Source(address, backend=backend, clock=sensor.host_clock, **kwargs)
            items = await _collect(source, n_chunks, timeout_s)
            return Run(items, sensor, source)

    return asyncio.run(main())


def assert_bit_exact(r: Run) -> None:
    got = r.received_uv()
    sent = r.sent_uv()
    assert got.dtype == np.float64
    assert got.shape[0] == N * len(r.chunks) and got.shape[0] <= sent.shape[0]
    np.testing.assert_array_equal(got, sent[: got.shape[0]].astype(np.float64))


def missing_samples_between_connections(sensor: EmulatedPolarH10, first_conn: int, second_conn: int) -> int:
    before = [f for f in sensor.frames if f.connection == first_conn][-1]
    after = [f for f in sensor.frames if f.connection == second_conn][0]
    return after.first_sample - (before.first_sample + N)


# ----------------------------------------------------------------------------- (a) normal stream

def test_normal_stream_is_bit_exact_real_ecg(ecg):
    r = run(ecg, 40)
    assert r.kinds()[0] == "connected" and r.of("connected")[0].detail["mtu"] == 232
    assert not r.of("gap") and not r.of("duplicate")
    assert [e.kind for e in r.source.events][-1] == "end"
    assert_bit_exact(r)
    # the emulator played contiguous real MIT-BIH samples
    frames = [f for f in r.sensor.frames][: len(r.chunks)]
    for prev, f in zip(frames, frames[1:]):
        assert f.first_sample == prev.first_sample + N
    idx = np.arange(frames[0].first_sample, frames[-1].first_sample + N) % ecg.samples_uv.shape[0]
    np.testing.assert_array_equal(r.received_uv(), ecg.samples_uv[idx])
    assert np.ptp(r.received_uv()) > 1000  # QRS complexes in microvolts, not a flat line
    # per-sample times: last sample at the frame timestamp, 1/130 s apart, no gaps
    t = np.concatenate([c.sensor_time_s for c in r.chunks])
    np.testing.assert_allclose(np.diff(t), 1 / 130.0, atol=1e-6)
    for c, f in zip(r.chunks, frames):
        assert c.sensor_time_s[-1] == pytest.approx(parse_ecg_frame(
            b"\x00" + f.timestamp_ns.to_bytes(8, "little") + b"\x00").unix_time_s, abs=1e-6)
        assert c.gap_before_s == 0
    assert all(np.all(np.diff(c.host_time_s) > 0) for c in r.chunks)
    assert [c.sequence for c in r.chunks] == list(range(1, len(r.chunks) + 1))
    # the control point exchange is the H10's, GET_SETTINGS split over two indications
    assert r.sensor.control_log[:5] == [
        ("rx", H("01 00")), ("tx", H("F0 01 00 00 01 00 01 82 00")), ("tx", H("F0 01 00 00 00 01 01 0E 00")),
        ("rx", H("02 00 00 01 82 00 01 01 0E 00")), ("tx", H("F0 02 00 00 00 00"))]
    assert ("rx", H("03 00")) in r.sensor.control_log[5:]  # close() sent STOP
    assert r.source.settings and r.source.battery_percent == 87


# ----------------------------------------------------------------------------- (b) MTU too small

def test_negotiated_mtu_too_small_raises_named_error(ecg):
    with pytest.raises(MtuTooSmallError, match=r"ATT MTU is 23 bytes.*at least 70") as info:
        run(ecg, 5, max_mtu=23)
    assert info.value.mtu == 23 and info.value.status == Status.INVALID_MTU


def test_sensor_answering_invalid_mtu_raises_named_error(ecg):
    async def main() -> EmulatedPolarH10:
        async with emulated_h10(ecg, speed=SPEED, max_mtu=90, min_mtu=100) as (address, backend, sensor):
            source = PolarH10Source(address, backend=backend, clock=sensor.host_clock)
            with pytest.raises(MtuTooSmallError, match="INVALID_MTU"):
                await _collect(source, 5, 10.0)
            return sensor

    sensor = asyncio.run(main())
    assert ("tx", H("F0 02 00 0A 00")) in sensor.control_log
    assert not sensor.frames


# ----------------------------------------------------------------------------- (c) link loss

def test_link_loss_reconnects_with_backoff_and_resumes(ecg):
    r = run(ecg, 35, disconnect_after_frames=15, reconnect_delay_s=15.0)  # 0.75 s silent at 20x
    kinds = r.kinds()
    assert kinds.count("connected") == 2 and kinds.count("disconnected") == 1
    i_disc = kinds.index("disconnected")
    i_conn = kinds.index("connected", i_disc)
    attempts = [e for e in r.events[i_disc:i_conn] if e.kind == "reconnecting"]
    assert len(attempts) >= 2, kinds  # the first attempts time out while the strap is silent
    for k, e in enumerate(attempts):
        nominal = 0.05 * 2 ** k
        assert e.detail["attempt"] == k + 1 and nominal / 2 <= e.detail["delay_s"] <= nominal
    assert attempts[1].detail["error"] and "TimeoutError" in attempts[1].detail["error"]
    assert r.events[i_conn].detail["reconnect"] is True
    assert r.sensor.n_connections == 2 and r.sensor.n_disconnections >= 1
    # the outage is a gap of exactly the samples the sensor took while nobody listened
    (gap,) = r.of("gap")
    missing = missing_samples_between_connections(r.sensor, 1, 2)
    assert missing > 0 and gap.detail["reason"] == "reconnect"
    assert gap.detail["gap_s"] == pytest.approx(missing / 130.0, abs=1e-4)
    after = next(c for c in r.chunks if c.gap_before_s > 0)
    assert after.gap_before_s == pytest.approx(missing / 130.0, abs=1e-4)
    assert_bit_exact(r)
    assert r.source.fs_hz == pytest.approx(130.0, abs=1e-3)  # tracked rate survived the reset


def test_reconnection_gives_up_with_a_named_error(ecg):
    with pytest.raises(ReconnectFailedError, match="2 reconnection attempts failed"):
        run(ecg, 30, source_kwargs=dict(max_reconnects=2, connect_timeout_s=0.1),
            disconnect_after_frames=5, reconnect_delay_s=1e6)


# ----------------------------------------------------------------------------- (d) dropped frames

def test_dropped_frames_are_gaps_and_duplicates_are_dropped(ecg):
    r = run(ecg, 30, drop_frames={8, 9, 20}, duplicate_frames={14})
    gaps = r.of("gap")
    assert [g.detail["reason"] for g in gaps] == ["lost_frames", "lost_frames"]
    assert gaps[0].detail["gap_s"] == pytest.approx(2 * N / 130.0, abs=1e-6)
    assert gaps[1].detail["gap_s"] == pytest.approx(N / 130.0, abs=1e-6)
    assert [g.detail["samples"] for g in gaps] == [2 * N, N]
    assert len(r.of("duplicate")) == 1
    # nothing bridged: every chunk is exactly one received frame, time jumps over the hole
    gap_chunks = [c for c in r.chunks if c.gap_before_s > 0]
    assert [c.gap_before_s for c in gap_chunks] == pytest.approx([2 * N / 130.0, N / 130.0], abs=1e-6)
    for prev, c in zip(r.chunks, r.chunks[1:]):
        if c.gap_before_s == 0:
            continue
        assert c.sensor_time_s[0] - prev.sensor_time_s[-1] == pytest.approx(c.gap_before_s + 1 / 130.0, abs=1e-6)
    assert_bit_exact(r)
    dropped = {f.index for f in r.sensor.frames if not f.sent}
    assert dropped == {8, 9, 20}


def test_a_long_loss_with_the_link_up_is_a_gap_not_a_clock_jump(ecg):
    """120 frames (67 s) lost while the link stays up: the sensor's stamps and the host's arrival times both
    advance by 67 s, so it is a gap of exactly those samples (it was a clock_jump that cut the 67 s out of the
    time axis, longer than ``max_gap_s``)."""
    r = run(ecg, 60, drop_frames=set(range(40, 160)), timeout_s=60.0)
    assert r.of("clock_jump") == []
    (gap,) = r.of("gap")
    assert gap.detail["reason"] == "lost_frames" and gap.detail["samples"] == 120 * N
    assert gap.detail["gap_s"] == pytest.approx(120 * N / 130.0, abs=1e-3)
    assert_bit_exact(r)


def test_a_silent_strap_is_stalled_and_reconnected(ecg):
    """The strap stops sending with the link up and says nothing: the source used to wait forever."""
    r = run(ecg, 30, source_kwargs=dict(data_timeout_s=0.5), silent_after_frames=10)
    kinds = r.kinds()
    assert kinds.count("stalled") == 1 and kinds.count("connected") == 2, kinds
    assert kinds.index("stalled") < kinds.index("reconnecting") < kinds.index("connected", kinds.index("stalled"))
    (gap,) = r.of("gap")
    assert gap.detail["reason"] == "reconnect"
    assert gap.detail["gap_s"] == pytest.approx(missing_samples_between_connections(r.sensor, 1, 2) / 130.0, abs=1e-4)
    assert len(r.chunks) == 30 and r.sensor.n_connections == 2
    assert_bit_exact(r)


# ----------------------------------------------------------------------------- (e) clock drift

def test_clock_drift_rate_and_skew_are_estimated(mitdb):
    # 130.045 Hz is a measured H10 rate. The skew is exaggerated (real crystals: tens of ppm) so that the
    # drift stands out of scheduling jitter within ~4 s of wall time on a busy machine.
    true_fs, skew_ppm = 130.045, 2000.0
    ecg = load_mitdb_ecg("100", fs_hz=true_fs, mitdb=mitdb, seconds=120)
    r = run(ecg, 150, true_fs_hz=true_fs, clock_skew_ppm=skew_ppm)
    sensor_fs = true_fs / (1 + skew_ppm * 1e-6)  # the rate the sensor's own timestamps show
    assert abs(r.source.fs_hz - sensor_fs) < 0.01
    assert abs(r.chunks[-1].fs_hz - sensor_fs) < 0.01
    # host = sensor * (1 - skew): a sensor clock running fast gives a drift of about -skew ppm
    drift = r.source.clock_mapper.drift_ppm
    assert -1.3 * skew_ppm < drift < -0.7 * skew_ppm
    # in host seconds the rate is the true one
    assert r.source.fs_hz / r.source.clock_mapper.skew == pytest.approx(true_fs, abs=0.1)
    assert not r.of("gap")
    assert_bit_exact(r)


# ----------------------------------------------------------------------------- (f) sensor stop

def test_sensor_initiated_stop_is_restarted(ecg):
    r = run(ecg, 30, stop_after_frames=15)
    kinds = r.kinds()
    i_stop = kinds.index("sensor_stopped")
    assert kinds[i_stop + 1] == "restarted"
    assert r.of("sensor_stopped")[0].detail["measurement_types"] == [0]
    log = r.sensor.control_log
    i_ind = log.index(("tx", H("01 00")))
    assert log[i_ind + 1] == ("rx", H("02 00 00 01 82 00 01 01 0E 00"))
    assert log[i_ind + 2] == ("tx", H("F0 02 00 00 00 00"))
    assert len([f for f in r.sensor.frames if f.sent]) >= 30
    stop_frame = r.sensor.frames[14]
    resumed = r.sensor.frames[15]
    missing = resumed.first_sample - (stop_frame.first_sample + N)
    gaps = r.of("gap")
    if missing > 0:  # samples taken between the stop and the new START are lost, and reported
        assert [g.detail["reason"] for g in gaps] == ["restart"]
        assert gaps[0].detail["gap_s"] == pytest.approx(missing / 130.0, abs=1e-4)
    else:  # nothing lost: no gap may be reported either
        assert gaps == []
    assert_bit_exact(r)


# ----------------------------------------------------------------------------- (g) already streaming

def test_already_in_state_on_start_is_handled(ecg):
    r = run(ecg, 20, already_streaming=True)
    assert "already_streaming" in r.kinds() and "connected" in r.kinds()
    assert ("tx", H("F0 02 00 06 00")) in r.sensor.control_log
    assert not r.of("gap")
    assert_bit_exact(r)


# ----------------------------------------------------------------------------- (h) heart rate

def test_heart_rate_side_channel_delivers_rr_intervals(ecg):
    seen: list[Any] = []

    async def main() -> Run:
        async with emulated_h10(ecg, speed=SPEED) as (address, backend, sensor):
            source = PolarH10Source(address, backend=backend, clock=sensor.host_clock, heart_rate=True)
            source.on_heart_rate(lambda t, hr: seen.append((t, hr)))
            items = await _collect(source, 45, 30.0)
            return Run(items, sensor, source)

    r = asyncio.run(main())
    assert len(r.source.heart_rates) >= 15 and seen == list(r.source.heart_rates)
    rr_got = [x for _, hr in r.source.heart_rates for x in hr.rr_s]
    rr_sent = [x for m in r.sensor.heart_rates for x in m.rr_s]
    assert len(rr_got) >= 15 and rr_got == rr_sent[: len(rr_got)]
    # RR intervals are the annotated beats of the record (1/1024 s resolution)
    rr_annot = np.round(np.diff(ecg.r_peaks) / 130.0 * 1024) / 1024
    start = next(i for i in range(len(rr_annot)) if np.array_equal(rr_annot[i:i + 10], rr_got[:10]))
    np.testing.assert_array_equal(rr_got, rr_annot[start:start + len(rr_got)])
    assert all(0.3 < x < 2.0 for x in rr_got)
    bpms = [hr.bpm for _, hr in r.source.heart_rates]
    assert 55 < np.median(bpms) < 95  # record 100 is sinus rhythm around 75 bpm
    assert all(hr.contact for _, hr in r.source.heart_rates)


# ----------------------------------------------------------------------------- raw bleak exchange

def test_raw_bleak_exchange_matches_the_h10(ecg):
    """The emulator, seen through plain BleakClient calls, answers like polar_pmd.md."""

    async def main() -> list[Any]:
        async with emulated_h10(ecg, speed=SPEED) as (address, backend, sensor):
            async with BleakClient(address, backend=backend) as client:
                assert client.mtu_size == 232
                assert client.services.get_characteristic(PMD_CONTROL).properties == ["read", "write", "indicate"]
                assert client.services.get_characteristic(PMD_DATA).properties == ["notify"]
                indications: asyncio.Queue[bytes] = asyncio.Queue()
                await client.start_notify(PMD_CONTROL, lambda _c, d: indications.put_nowait(bytes(d)))
                assert bytes(await client.read_gatt_char(PMD_CONTROL))[:3] == H("0F 05 00")
                out = []
                for cmd in ("02 00", "03 00", "05 00", "01 02"):
                    await client.write_gatt_char(PMD_CONTROL, H(cmd), response=True)
                    out.append(await asyncio.wait_for(indications.get(), 5))
                return out

    assert asyncio.run(main()) == [H("F0 02 00 05 00"), H("F0 03 00 06 00"), H("F0 05 00 01 00"),
                                   H("F0 01 02 03 00")]
