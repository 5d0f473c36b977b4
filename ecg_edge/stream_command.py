"""The ``stream`` command: any source -> EcgStream -> one printed line per prediction."""
from __future__ import annotations

import asyncio
import json
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from edge_sdk.sources import EcgSource, ReplaySource, SourceEvent
from edge_sdk.stream import EcgStream, Prediction

#: file types of the session picture (``--report``), as matplotlib writes them
REPORT_FORMATS = (".png", ".svg", ".pdf")


def format_prediction(p: Prediction, t0: float) -> str:
    """One line: time, detected labels with probability >= threshold (or the top label when none is),
    quality flags and latency."""
    quality = ",".join(p.quality) or "ok"
    if p.detected:
        found = "detected: " + ", ".join(f"{n} {p.probabilities[n]:.2f}>={p.thresholds[n]:.2f}" for n in p.detected)
    else:
        top = p.top_label
        found = f"nothing detected (top: {top} {p.probabilities[top]:.2f}<{p.thresholds[top]:.2f})"
    return (f"{p.end_sensor_s - t0:7.1f} s  {found}  quality {quality}  latency: end-to-end "
            f"{p.latency_ms['end_to_end']:6.1f} ms, SDK {p.latency_ms['since_arrival']:5.1f} ms")


def print_event(ev: SourceEvent) -> None:
    detail = " ".join(f"{k}={v}" for k, v in ev.detail.items())
    print(f"  [{ev.kind}] {detail}", file=sys.stderr, flush=True)


@asynccontextmanager
async def open_source(address: str | None, emulate: bool, replay: str | None, record: str = "210",
                      speed: float = 1.0, fs: float | None = None, duration: float | None = None,
                      **emulator_options) -> AsyncIterator[EcgSource]:
    """A source for the command line: replay file, emulated H10 (bumble) fed with MIT-BIH, or a real H10."""
    if replay:
        yield ReplaySource(replay, speed=speed, fs_hz=fs, duration_s=duration)
        return
    from edge_sdk.sources.polar.h10 import PolarH10Source

    if emulate:
        from .emulator import emulated_h10, load_mitdb_ecg

        seconds = None if duration is None else duration + 30.0
        ecg = load_mitdb_ecg(record, seconds=seconds)
        async with emulated_h10(ecg, speed=speed or 1.0, **emulator_options) as (addr, backend, sensor):
            # the emulator may run faster than real time: its host clock keeps host and sensor times comparable
            source = PolarH10Source(addr, backend=backend, clock=sensor.host_clock)
            source.clock_rate = speed or 1.0  # EcgStream reports latency in physical time
            yield source
        return
    yield PolarH10Source(address)


async def stream_predictions(source: EcgSource, bundle: str, duration: float | None = None, print_lines: bool = True,
                             as_json: bool = False, holder: list | None = None, collect: list | None = None,
                             **stream_options) -> EcgStream:
    """Run an :class:`EcgStream` over ``source``, printing a line (or JSON line) per prediction, until the
    source ends or ``duration`` seconds of ECG; ``holder`` receives the stream at once (for summaries after
    an interruption); ``collect`` receives every prediction (for the session report)."""
    stream = EcgStream(source, bundle, on_event=print_event if print_lines else None, **stream_options)
    if holder is not None:
        holder.append(stream)
    t0 = None
    predictions = stream.stream()
    try:
        async for p in predictions:
            t0 = p.start_sensor_s if t0 is None else t0
            if collect is not None:
                collect.append(p)
            if print_lines:
                if as_json:
                    print(json.dumps({"t_s": round(p.end_sensor_s - t0, 3), **p.to_dict()}, default=str), flush=True)
                else:
                    print(format_prediction(p, t0), flush=True)
            if duration is not None and p.end_sensor_s - t0 >= duration - 0.01:
                break
    finally:
        await predictions.aclose()
    return stream


def record_line(stream: EcgStream) -> str:
    """The recording's label by the card's record rule, with its scores (after at least one window)."""
    d = stream.record_decision()
    scores = ", ".join(f"{n} {v:.2f}" for n, v in sorted(d.scores.items(), key=lambda kv: -kv[1]))
    flags = f"; quality: {', '.join(d.flags)}" if d.flags else ""
    return (f"recording: {d.label} (the card's record rule, {d.method}, over {d.n_windows} windows; {scores}"
            f"{flags})")


def summary(stream: EcgStream) -> str:
    """What a session did: samples, windows, dropped windows, and latency per stage."""
    secs = stream.samples_received / stream.fs_estimate if stream.fs_estimate else 0.0
    lines = [f"{stream.samples_received} samples ({secs:.1f} s of ECG at {stream.fs_estimate:.1f} Hz), "
             f"{stream.prediction_count} predictions, {stream.windows_dropped} windows dropped"]
    window_s = stream.config.window_seconds
    if stream.prediction_count == 0:
        # a window's first and last samples at the model rate are (window_samples - 1) / fs apart: the source's
        # samples must span that (exactly 10 s of samples at 300 Hz span 9.997 s, one sample short)
        span_needed = (stream.config.window_samples - 1) / stream.config.fs_hz
        span = (stream.samples_received - 1) / stream.fs_estimate if stream.samples_received > 1 else 0.0
        lines.append(f"no prediction: a window needs {window_s:g} s of continuous ECG"
                     + (f" (its first and last samples {span_needed:.3f} s apart) and the stream's samples span "
                        f"{span:.3f} s" if span < span_needed else
                        " (gaps or invalid samples split the stream; see the events above)"))
    if stream.record_decision() is not None:
        lines.append(record_line(stream))
    if stream.latency.samples:
        lines.append("latency per stage (ms):\n" + stream.latency.table())
    return "\n".join(lines)


def run_stream(a) -> EcgStream | None:
    """The ``stream`` command; Ctrl-C ends the session cleanly (recording closed) and prints its summary."""
    holder: list[EcgStream] = []
    predictions: list[Prediction] = []
    report = getattr(a, "report", None)
    if report:  # checked before the session, not after hours of it
        from edge_sdk.errors import ConfigError
        from edge_sdk.outputs import check_new_file, check_writable_parent

        if Path(report).suffix.lower() not in REPORT_FORMATS:
            raise ConfigError(f"--report {report}: the picture is written as {', '.join(REPORT_FORMATS)}; end the "
                              "file name with one of them")
        if a.save and Path(a.save).suffix.lower() != ".csv":
            raise ConfigError(f"--save {a.save}: recordings are CSV files, and --report reads the recording back; "
                              "end the file name with .csv")
        check_new_file(report, a.force, "session report")
        check_new_file(f"{report}.json", a.force, "session report data")
        check_writable_parent(report, "session report")
    record_to, tmp = a.save, None
    if report and not record_to:  # the report draws the received samples: record them to a temporary file
        import tempfile
        tmp = tempfile.TemporaryDirectory(prefix="ecg-edge-report-")
        record_to = f"{tmp.name}/session.csv"

    async def main():
        async with open_source(a.address, a.emulate, a.replay, a.record, a.speed, a.fs, a.duration) as src:
            return await stream_predictions(src, a.bundle, a.duration, True, a.json, holder, predictions,
                                            runtime=a.runtime, precision=a.precision, hop_s=a.hop, threads=a.threads,
                                            record_to=record_to, overwrite_recording=a.force)

    try:
        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
        if holder:
            print("\n" + summary(holder[0]))
        if report and holder and holder[0].samples_received:
            from .report import write_session_report

            write_session_report(report, predictions, record_to)
            print(f"report: {report} (data: {report}.json)")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return holder[0] if holder else None
