"""The emulated Polar H10: a bumble GATT peripheral with the H10's PMD and Heart Rate services, fed with a
real MIT-BIH record, reached by the real bleak client over an in-process link. Optional faults.

    python examples/emulated_h10.py --record 210 --seconds 60 --speed 10
    python examples/emulated_h10.py --disconnect-after-frames 100 --seconds 40 --speed 5   # link loss: reconnects

Needs `pip install "ecg-edge[emulate]"` and ../shared (MIT-BIH).
"""
import argparse
import asyncio

from ecg_edge.emulator import emulated_h10, load_mitdb_ecg
from edge_sdk.sources.polar import PolarH10Source
from edge_sdk.stream import EcgStream


async def main(a) -> None:
    ecg = load_mitdb_ecg(a.record, seconds=a.seconds + 30)
    options = {"speed": a.speed, "clock_skew_ppm": a.skew_ppm, "disconnect_after_frames": a.disconnect_after_frames}
    async with emulated_h10(ecg, **options) as (address, backend, sensor):
        source = PolarH10Source(address, backend=backend, clock=sensor.host_clock, heart_rate=True)
        source.clock_rate = a.speed
        stream = EcgStream(source, a.bundle, on_event=lambda ev: print(f"  [{ev.kind}] {ev.detail}"))
        t0 = None
        async for p in stream:
            t0 = p.start_sensor_s if t0 is None else t0
            print(f"{p.end_sensor_s - t0:6.1f} s  {', '.join(p.detected) or '-'}  "
                  f"end-to-end {p.latency_ms['end_to_end']:.0f} ms")
            if p.end_sensor_s - t0 >= a.seconds - 0.01:
                break
        print(f"{stream.samples_received} samples, sensor rate {stream.fs_estimate:.3f} Hz, "
              f"{len(source.heart_rates)} heart-rate notifications")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", default="210", help="MIT-BIH record (210: atrial fibrillation, held out from training)")
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of ECG to stream")
    ap.add_argument("--speed", type=float, default=10.0, help="speed-up (1 = real time)")
    ap.add_argument("--skew-ppm", type=float, default=0.0, help="sensor clock skew against the host, ppm")
    ap.add_argument("--disconnect-after-frames", type=int, default=None, help="fault: drop the link after N frames")
    ap.add_argument("--bundle", default="bundles/default")
    asyncio.run(main(ap.parse_args()))
