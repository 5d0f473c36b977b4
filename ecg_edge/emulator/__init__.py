"""Hardware-free BLE test bench: an emulated Polar H10 (bumble peripheral) and a bleak backend reaching it
over bumble's in-process ``LocalLink``, so the real ``bleak.BleakClient`` code path runs in tests.

Usage::

    from ecg_edge.emulator import emulated_h10
    from edge_sdk.sources.polar.h10 import PolarH10Source

    async with emulated_h10(speed=20) as (address, backend, sensor):
        source = PolarH10Source(address, backend=backend, clock=sensor.host_clock)
        async for item in source:
            ...
"""
from .bumble_backend import BumbleBleakClient, BumbleCentral, bumble_backend
from .polar_h10 import (EmulatedEcg, EmulatedPolarH10, SentFrame, SentHeartRate, emulated_h10,
                        load_mitdb_ecg)

__all__ = ["BumbleBleakClient", "BumbleCentral", "bumble_backend", "EmulatedEcg", "EmulatedPolarH10",
           "SentFrame", "SentHeartRate", "emulated_h10", "load_mitdb_ecg"]
