"""A real Polar H10: scan for straps, connect by address, record the ECG to a CSV file (and print the
model's labels per window while recording).

    python examples/polar_h10.py --scan                                   # list nearby Polar H10 straps
    python examples/polar_h10.py AA:BB:CC:DD:EE:FF --out h10.csv --duration 300
    python examples/polar_h10.py --emulate --out h10.csv --duration 20    # no strap: the emulated H10

Needs `pip install "ecg-edge[ble]"` (bleak) and Bluetooth; --emulate needs `[emulate]` (bumble) and
../shared (MIT-BIH). The CSV (sensor_time_s, host_time_s, ecg_uv) replays with examples/replay_record.py.
"""
import argparse
import asyncio

from edge_sdk.sources.polar import PolarH10Source
from edge_sdk.stream import EcgStream


async def scan(seconds: float) -> None:
    from bleak import BleakScanner

    devices = await BleakScanner.discover(timeout=seconds)
    straps = [d for d in devices if (d.name or "").startswith("Polar H10")]
    for d in straps:
        print(f"{d.address}  {d.name}")
    if not straps:
        print("no Polar H10 found: wear the strap (it sleeps when dry) and keep it near")


async def record(source: PolarH10Source, a) -> None:
    stream = EcgStream(source, a.bundle, record_to=a.out, overwrite_recording=a.force)
    t0 = None
    async for p in stream:
        t0 = p.start_sensor_s if t0 is None else t0
        print(f"{p.end_sensor_s - t0:6.1f} s  {', '.join(p.detected) or '-'}  quality={','.join(p.quality) or 'ok'}")
        if a.duration and p.end_sensor_s - t0 >= a.duration - 0.01:
            break
    print(f"{stream.samples_received} samples recorded to {a.out}")


async def main(a) -> None:
    if a.scan:
        await scan(a.scan_seconds)
        return
    if a.emulate:  # the same PolarH10Source over an emulated strap (bumble) instead of a radio
        from ecg_edge.emulator import emulated_h10, load_mitdb_ecg

        ecg = load_mitdb_ecg(a.record, seconds=(a.duration or 60) + 30)
        async with emulated_h10(ecg, speed=a.speed) as (address, backend, sensor):
            source = PolarH10Source(address, backend=backend, clock=sensor.host_clock)
            source.clock_rate = a.speed
            await record(source, a)
        return
    if not a.address:
        raise SystemExit("give the strap's ADDRESS (see --scan), or --emulate")
    await record(PolarH10Source(a.address, heart_rate=True), a)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("address", nargs="?", help="Bluetooth address (macOS: the CoreBluetooth UUID)")
    ap.add_argument("--scan", action="store_true", help="list nearby Polar H10 straps and exit")
    ap.add_argument("--scan-seconds", type=float, default=8.0)
    ap.add_argument("--out", default="h10_session.csv", help="CSV recording of every received sample")
    ap.add_argument("--force", action="store_true", help="overwrite --out")
    ap.add_argument("--duration", type=float, default=None, help="stop after this many seconds of ECG")
    ap.add_argument("--bundle", default="bundles/default")
    ap.add_argument("--emulate", action="store_true", help="an emulated H10 fed with MIT-BIH --record")
    ap.add_argument("--record", default="201")
    ap.add_argument("--speed", type=float, default=1.0, help="emulator speed-up (1 = real time)")
    asyncio.run(main(ap.parse_args()))
