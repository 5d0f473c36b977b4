"""Replay a recorded ECG file (WFDB, CSV or npz) through the SDK and print one line per 10-s window.

    python examples/replay_record.py ../shared/data/cinc2017/training2017/A00009 --speed 0
    python examples/replay_record.py session.csv --speed 1 --duration 60

--speed 1 replays in real time, 0 as fast as possible. Labels come from the bundle's card; the last line is
the record's label by the card's record rule.
"""
import argparse
import asyncio

from edge_sdk.sources import ReplaySource
from edge_sdk.stream import EcgStream


async def main(a) -> None:
    source = ReplaySource(a.record, speed=a.speed, duration_s=a.duration, fs_hz=a.fs)
    stream = EcgStream(source, a.bundle, runtime=a.runtime, precision="int8")
    t0 = None
    async for p in stream:
        t0 = p.start_sensor_s if t0 is None else t0
        found = ", ".join(p.detected) or f"nothing above threshold (top {p.top_label})"
        print(f"{p.start_sensor_s - t0:6.1f} s  {found}  "
              f"p={p.probabilities[p.top_label]:.2f}  quality={','.join(p.quality) or 'ok'}")
    print(f"{stream.prediction_count} windows\n" + stream.latency.table())
    decision = stream.record_decision()  # one label for the whole record, by the card's record rule
    if decision is not None:
        print(f"record: {decision.label} ({decision.method} rule over {decision.n_windows} windows"
              + (f"; {', '.join(decision.flags)}" if decision.flags else "") + ")")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("record", help="WFDB path without extension, .csv (see --fs) or .npz")
    ap.add_argument("--bundle", default="bundles/default")
    ap.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "tflite"])
    ap.add_argument("--speed", type=float, default=0.0, help="1 = real time, 0 = as fast as possible")
    ap.add_argument("--duration", type=float, default=None, help="seconds of the record to replay")
    ap.add_argument("--fs", type=float, default=None, help="sample rate of a CSV without a time column")
    asyncio.run(main(ap.parse_args()))
