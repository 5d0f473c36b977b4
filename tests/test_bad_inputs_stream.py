"""What a custom source, a long session and the stream command can get wrong ends in a named error or an
event, never in a raw traceback, a window stitched across a time step, or a file overwritten.

Sources here cut real Challenge 2017 records into chunks the way a third-party ``EcgSource`` might, with
one thing wrong each.
"""
from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

import numpy as np
import pytest

from ecg_edge.cli import main
from edge_sdk.errors import ConfigError, OutputExistsError, OutputPathError, SignalError
from edge_sdk.records import Record, read_record
from edge_sdk.signal import StreamingResampler
from edge_sdk.sources import EcgChunk, EcgSource, ReplaySource, SourceEvent
from edge_sdk.stream import EcgGateway, EcgStream
from edge_sdk.stream.latency import LatencyStats
from edge_sdk.stream.recorder import Recorder

FS = 300.0
CHUNK = 150


class ChunkSource(EcgSource):
    """Yields the given items (chunks, events or anything else), as a third-party source would."""

    name = "custom"
    nominal_fs_hz = FS

    def __init__(self, items: list, fail_after: BaseException | None = None) -> None:
        super().__init__()
        self.items, self.fail_after = items, fail_after

    async def stream(self) -> AsyncIterator:
        for item in self.items:
            await asyncio.sleep(0)
            yield item
        if self.fail_after is not None:
            raise self.fail_after


def chunks(signal_mv: np.ndarray, t0: float = 1000.0, shift: dict[int, float] | None = None) -> list[EcgChunk]:
    """``signal_mv`` in chunks of 0.5 s at 300 Hz; ``shift[k]``: seconds added to the times from chunk k on."""
    out, offset = [], 0.0
    for k, i in enumerate(range(0, len(signal_mv), CHUNK)):
        offset += (shift or {}).get(k, 0.0)
        t = t0 + offset + np.arange(i, min(i + CHUNK, len(signal_mv))) / FS
        out.append(EcgChunk(signal_mv[i:i + CHUNK] * 1e3, t, t.copy(), float(t[-1]), FS))
    return out


def run(source: EcgSource, bundle_dir, **kw) -> tuple[EcgStream, list]:
    stream = EcgStream(source, bundle_dir, **kw)
    return stream, asyncio.run(stream.run())


@pytest.fixture(scope="module")
def ecg(cinc) -> np.ndarray:
    return cinc.read("A00001").signal_mv[:9000]  # 30 s, 300 Hz


@pytest.mark.parametrize("bad, match", [
    (lambda c: EcgChunk(c.samples_uv, c.sensor_time_s[:-1], c.host_time_s, c.received_host_s, FS), "one length"),
    (lambda c: EcgChunk(c.samples_uv[None], c.sensor_time_s, c.host_time_s, c.received_host_s, FS), "one length"),
    (lambda c: EcgChunk(c.samples_uv, np.r_[np.nan, c.sensor_time_s[1:]], c.host_time_s, c.received_host_s, FS),
     "NaN/inf times"),
    (lambda c: EcgChunk(c.samples_uv, c.sensor_time_s[::-1].copy(), c.host_time_s, c.received_host_s, FS),
     "do not increase"),
    (lambda c: EcgChunk(c.samples_uv, c.sensor_time_s, c.host_time_s, c.received_host_s, 0.0), "rate must be"),
    (lambda c: EcgChunk(np.array(["a"] * len(c)), c.sensor_time_s, c.host_time_s, c.received_host_s, FS),
     "not numbers"),
    (lambda c: None, "yielded NoneType"),
])
def test_a_malformed_chunk_from_a_custom_source_is_a_signal_error_naming_it(ecg, bundle_dir, tmp_path, bad, match):
    items = chunks(ecg)
    items[3] = bad(items[3])
    with pytest.raises(SignalError, match=match) as e:
        run(ChunkSource(items), bundle_dir, record_to=tmp_path / "r.csv")  # checked before it is recorded
    assert "'custom'" in str(e.value)


def test_list_samples_are_taken_as_numbers(ecg, bundle_dir):
    items = [EcgChunk(list(c.samples_uv), list(c.sensor_time_s), list(c.host_time_s), c.received_host_s, FS)
             for c in chunks(ecg)]
    _, got = run(ChunkSource(items), bundle_dir)
    _, want = run(ChunkSource(chunks(ecg)), bundle_dir)
    assert [p.probabilities for p in got] == [p.probabilities for p in want] and want


@pytest.mark.parametrize("step, kind", [(-3600.0, "clock_jump"), (3.0, "gap")])
def test_an_undeclared_time_step_restarts_the_stream_instead_of_bridging_it(ecg, bundle_dir, step, kind):
    """A chunk whose times jump (back an hour; forward 3 s with gap_before_s 0) used to be joined to the
    previous ones: a window ending before it started, or 3 s of straight line inside a window."""
    _, preds = run(ChunkSource(chunks(ecg, shift={30: step})), bundle_dir)  # the step 15 s in
    assert any(e.kind == kind and e.detail["reason"] == "chunk_times" for p in preds for e in p.events)
    for p in preds:
        assert 9.9 < p.end_sensor_s - p.start_sensor_s < 10.0  # no window spans the step
    assert len({p.segment for p in preds}) == 2


def test_bad_rates_and_hops_are_named_errors(ecg, bundle_dir):
    for fs in (0, -500.0, float("nan"), float("inf"), 1e9, "500"):
        with pytest.raises(ConfigError, match="fs_out_hz"):
            StreamingResampler(fs)
    with pytest.raises(SignalError, match="less than one sample"):
        EcgStream(ChunkSource(chunks(ecg)), bundle_dir, hop_s=0.0005)
    with pytest.raises(ConfigError, match="threads"):
        EcgStream(ChunkSource(chunks(ecg)), bundle_dir, threads=100_000)


def test_latency_stats_ignore_a_nan_and_refuse_an_empty_window():
    s = LatencyStats(window=5)
    for v in (0.001, float("nan"), 0.002, float("inf")):
        s.add("x", v)
    assert s.summary()["x"]["p50"] == pytest.approx(1.5) and s.summary()["x"]["n"] == 2 and s.not_finite["x"] == 2
    for w in (0, -1, 2.5):
        with pytest.raises(ConfigError):
            LatencyStats(window=w)


def test_recorder_refuses_its_events_file_and_paths_it_cannot_create(tmp_path):
    (tmp_path / "s.csv.events.jsonl").write_text("old events\n")
    with pytest.raises(OutputExistsError, match="events file"):
        Recorder(tmp_path / "s.csv")
    assert (tmp_path / "s.csv.events.jsonl").read_text() == "old events\n" and not (tmp_path / "s.csv").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputPathError, match="cannot create the folder"):
        Recorder(tmp_path / "afile" / "s.csv")
    r = Recorder(tmp_path / "new" / "s.csv")
    r.close()
    with pytest.raises(OutputPathError, match="closed"):
        r.write(SourceEvent("end"))


def test_a_stream_with_nan_samples_records_a_file_that_replays_with_a_gap(ecg, bundle_dir, tmp_path):
    """The recorder used to write 'nan' rows, which its own reader refuses."""
    x = ecg.copy()
    x[4500:4530] = np.nan  # 0.1 s of invalid samples, 15 s in
    live, live_preds = run(ReplaySource(Record("n", x, FS), speed=0), bundle_dir, record_to=tmp_path / "r.csv")
    rec = read_record(tmp_path / "r.csv")
    assert rec.signal_mv.size == x.size - 30 and live.recorder.samples_not_finite == 30
    notes = [json.loads(line) for line in (tmp_path / "r.csv.events.jsonl").read_text().splitlines()]
    assert sum(n["detail"]["samples"] for n in notes if n["kind"] == "non_finite_samples_not_written") == 30
    replay, replay_preds = run(ReplaySource(tmp_path / "r.csv", speed=0), bundle_dir)
    assert any(e.kind == "gap" for e in replay.source.events)
    assert [p.top_label for p in replay_preds] == [p.top_label for p in live_preds] and live_preds


def test_gateway_reports_a_failed_sensor_at_once_and_refuses_late_sensors(ecg, bundle_dir):
    seen: list[tuple[float, str]] = []

    async def go():
        gw = EcgGateway(bundle_dir)
        gw.add(ChunkSource(chunks(ecg[:300]), fail_after=RuntimeError("sensor B lost for good")), name="B",
               on_event=lambda ev: seen.append(("B", ev.kind)))
        gw.add(ReplaySource(Record("A", ecg, FS), speed=2.0), name="A")  # real time x2: 15 s
        first_failed_at = None
        with pytest.raises(RuntimeError, match="sensor B lost"):
            async for name, _ in gw:
                if first_failed_at is None and gw.failed:
                    first_failed_at = name
                with pytest.raises(ConfigError, match="before iterating"):
                    gw.add(ReplaySource(Record("C", ecg, FS), speed=0), name="C")
        return gw, first_failed_at

    gw, first = asyncio.run(go())
    assert ("B", "source_failed") in seen and "B" in gw.failed
    assert first == "A"  # known while A was still streaming, not when it ended


def _stream_args(bundle_dir, *extra) -> list[str]:
    return ["stream", "--speed", "0", "--bundle", str(bundle_dir), *extra]


def test_stream_command_checks_report_threads_and_rate_before_streaming(shared, bundle_dir, tmp_path, capsys):
    a00001 = str(shared / "data" / "cinc2017" / "training2017" / "A00001")
    mine = tmp_path / "mine.png"
    mine.write_text("precious")
    assert main(_stream_args(bundle_dir, "--replay", a00001, "--report", str(mine))) == 2
    err = capsys.readouterr()
    assert "--force" in err.err and mine.read_text() == "precious" and "detected" not in err.out
    (tmp_path / "afile").write_text("x")
    for extra, match in [(["--report", str(tmp_path / "afile" / "r.png")], "cannot create the folder"),
                         (["--save", str(tmp_path / "afile" / "r.csv")], "cannot create the folder"),
                         (["--threads", "100000"], "threads must be"),
                         (["--report", str(tmp_path / "r.txt")], "end the file name with one of them"),
                         (["--report", str(tmp_path / "r.png"), "--save", str(tmp_path / "r.png.json")],
                          "recordings are CSV files"),
                         (["--save", str(tmp_path / "r.txt")], "end the file name with .csv"),
                         (["--fs", "500"], "states its own sample rate, 300 Hz")]:
        assert main(_stream_args(bundle_dir, "--replay", a00001, *extra)) == 2, extra
        assert match in capsys.readouterr().err
    report = tmp_path / "new" / "sub" / "r.png"  # a report folder that does not exist yet is created
    assert main(_stream_args(bundle_dir, "--replay", a00001, "--duration", "15", "--report", str(report))) == 0
    assert report.stat().st_size > 0 and json.loads(report.with_name("r.png.json").read_text())
