"""A multi-sensor gateway: several ECG sensors in one process, one EcgStream each, sharing the event loop;
prints one line per window tagged with the sensor.

    python examples/gateway.py AA:BB:CC:DD:EE:01 AA:BB:CC:DD:EE:02       # real Polar H10 straps
    python examples/gateway.py --emulate 4 --seconds 30 --speed 5         # 4 emulated H10s (MIT-BIH records)

Each stream resamples, preprocesses and runs inference on its own; inference runs in worker threads, so BLE
reception of the other sensors goes on. Emulation needs `[emulate]` and ../shared.
"""
import argparse
import asyncio
from contextlib import AsyncExitStack

from edge_sdk.sources.polar import PolarH10Source
from edge_sdk.stream import EcgStream

EMULATED_RECORDS = ["201", "100", "203", "210", "219", "221", "105", "119"]


async def run_sensor(tag: str, source, a, counts: dict) -> None:
    stream = EcgStream(source, a.bundle, threads=1)
    t0 = None
    async for p in stream:
        t0 = p.start_sensor_s if t0 is None else t0
        counts[tag] = counts.get(tag, 0) + 1
        print(f"[{tag}] {p.end_sensor_s - t0:6.1f} s  {', '.join(p.detected) or '-'}  "
              f"end-to-end {p.latency_ms['end_to_end']:.0f} ms", flush=True)
        if a.seconds and p.end_sensor_s - t0 >= a.seconds - 0.01:
            break


async def main(a) -> dict:
    counts: dict[str, int] = {}
    async with AsyncExitStack() as stack:
        sources = {}
        if a.emulate:
            from ecg_edge.emulator import emulated_h10, load_mitdb_ecg

            for i in range(a.emulate):
                rec = EMULATED_RECORDS[i % len(EMULATED_RECORDS)]
                ecg = load_mitdb_ecg(rec, seconds=(a.seconds or 60) + 30)
                address, backend, sensor = await stack.enter_async_context(emulated_h10(ecg, speed=a.speed))
                src = PolarH10Source(address, backend=backend, clock=sensor.host_clock)
                src.clock_rate = a.speed
                sources[f"h10-{i}:mitdb/{rec}"] = src
        else:
            sources = {addr: PolarH10Source(addr) for addr in a.addresses}
        if not sources:
            raise SystemExit("give sensor addresses or --emulate N")
        await asyncio.gather(*(run_sensor(tag, src, a, counts) for tag, src in sources.items()))
    print("windows per sensor: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("addresses", nargs="*", help="Bluetooth addresses of Polar H10 straps")
    ap.add_argument("--emulate", type=int, default=0, metavar="N", help="N emulated H10s instead")
    ap.add_argument("--seconds", type=float, default=None, help="stop each sensor after this many seconds of ECG")
    ap.add_argument("--speed", type=float, default=1.0, help="emulator speed-up")
    ap.add_argument("--bundle", default="bundles/default")
    asyncio.run(main(ap.parse_args()))
