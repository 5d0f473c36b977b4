"""The BLE connection of a Polar sensor through ``bleak``: client creation, ATT MTU, battery, disconnect.

Only transport here; the PMD protocol is in :mod:`.pmd_session`, frame timing in :mod:`.frame_timing`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from .pmd import BATTERY_LEVEL

logger = logging.getLogger(__name__)


def new_client(address: str, on_disconnect: Callable[[Any], None], timeout_s: float, backend: type | None = None,
               **client_kwargs: Any) -> Any:
    """A ``bleak.BleakClient`` for ``address`` (``backend``: bleak backend class, e.g. the emulator's)."""
    from bleak import BleakClient

    return BleakClient(address, disconnected_callback=on_disconnect, timeout=timeout_s, backend=backend,
                       **client_kwargs)


async def negotiated_mtu(client: Any) -> int:
    """ATT MTU in bytes. On BlueZ bleak reports 23 unless asked to acquire the real value first."""
    acquire = getattr(getattr(client, "_backend", None), "_acquire_mtu", None)
    if callable(acquire):
        try:
            await acquire()
        except Exception as exc:  # noqa: BLE001 - best effort, fall back to the reported value
            logger.debug("could not acquire the MTU: %s", exc)
    return int(client.mtu_size)


async def read_battery_percent(client: Any) -> int | None:
    """Battery level (%) from the Battery Service, or ``None`` where the sensor has none."""
    try:
        return int(bytes(await client.read_gatt_char(BATTERY_LEVEL))[0])
    except Exception as exc:  # noqa: BLE001 - optional characteristic
        logger.debug("no battery level: %s", exc)
        return None


async def disconnect_quietly(client: Any) -> None:
    """Disconnect, ignoring errors (the link may be gone already)."""
    try:
        await client.disconnect()
    except Exception as exc:  # noqa: BLE001
        logger.debug("disconnect: %s", exc)
