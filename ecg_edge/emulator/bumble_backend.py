"""A bleak client backend that talks real ATT over a bumble ``LocalLink`` (no Bluetooth hardware).

``bleak.BleakClient(address, backend=bumble_backend(link))`` then connects, exchanges the ATT MTU,
discovers services, reads, writes and subscribes exactly as it would on a phone or laptop, but the
radio is bumble's in-process link to an emulated peripheral (e.g.
:class:`~ecg_edge.emulator.polar_h10.EmulatedPolarH10`).

``BleakClient`` instantiates its backend class itself, so the link is bound by a factory:
:func:`bumble_backend` returns a subclass of :class:`BumbleBleakClient` whose instances share one
emulated central adapter (a bumble ``Device`` + ``Controller``) on that link, created on first use.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bleak.uuids import normalize_uuid_str
from bumble import att, core, gatt, hci
from bumble.controller import Controller
from bumble.device import Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy, DescriptorProxy
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

logger = logging.getLogger(__name__)

#: ATT MTU a phone typically asks for (and the Polar H10's maximum).
DEFAULT_CENTRAL_MTU = 232
DEFAULT_CENTRAL_ADDRESS = "F0:F0:F0:F0:F0:F0"

_PROPERTY_NAMES: dict[int, str] = {
    0x01: "broadcast", 0x02: "read", 0x04: "write-without-response", 0x08: "write",
    0x10: "notify", 0x20: "indicate", 0x40: "authenticated-signed-writes", 0x80: "extended-properties",
}


def _uuid_str(uuid: core.UUID) -> str:
    """bumble UUID -> bleak's normalised lower-case 128-bit string."""
    return normalize_uuid_str(uuid.to_hex_str("-"))


class _CentralController(Controller):
    """bumble's emulated controller, with LE Create Connection Cancel as the spec has it.

    The stock emulated controller ignores the cancel, so a connection attempt with a timeout never ends
    while the peripheral is silent. A real controller (Core spec Vol 4 Part E 7.8.13) drops the pending
    connection and reports LE Connection Complete with status Unknown Connection Identifier (0x02).
    """

    def on_hci_le_create_connection_cancel_command(
            self, command: hci.HCI_LE_Create_Connection_Cancel_Command) -> hci.HCI_StatusReturnParameters:
        pending = self.pending_le_connection
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        self.pending_le_connection = None
        failure = hci.HCI_LE_Connection_Complete_Event(
            status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR, connection_handle=0,
            role=hci.Role.CENTRAL, peer_address_type=pending.peer_address.address_type,
            peer_address=pending.peer_address, connection_interval=0, peripheral_latency=0,
            supervision_timeout=0, central_clock_accuracy=0)
        # after the Command Complete that the caller sends for our return value
        asyncio.get_running_loop().call_soon(self.send_hci_packet, failure)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)


class BumbleCentral:
    """The emulated central adapter: one bumble ``Device`` whose controller sits on ``link``.

    ``address``: the central's own Bluetooth address. Created and powered on lazily inside the running
    event loop (bumble controllers need one).
    """

    def __init__(self, link: LocalLink, address: str = DEFAULT_CENTRAL_ADDRESS) -> None:
        self.link = link
        self.address = address
        self.device: Device | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Device:
        """Return the powered-on central ``Device``, creating it on first call."""
        async with self._lock:
            if self.device is None:
                controller = _CentralController("bleak-central", link=self.link, public_address=self.address)
                device = Device(address=Address(self.address), host=Host(controller, AsyncPipeSink(controller)))
                await device.power_on()
                self.device = device
            return self.device


class BumbleBleakClient(BaseBleakClient):
    """bleak backend over a bumble central. Use :func:`bumble_backend` to get a class bound to a link.

    Keyword args (besides bleak's ``disconnected_callback``, ``timeout`` in seconds and ``services``):
    ``central_mtu``: the ATT MTU (bytes) the central requests after connecting; the negotiated MTU is
    ``min(central_mtu, server's MTU)`` and is exposed as :attr:`mtu_size`.
    """

    central: ClassVar[BumbleCentral | None] = None
    default_central_mtu: ClassVar[int] = DEFAULT_CENTRAL_MTU

    def __init__(self, address_or_ble_device: BLEDevice | str, services: set[str] | None = None,
                 central_mtu: int | None = None, **kwargs: Any) -> None:
        kwargs.pop("bluez", None)
        kwargs.pop("winrt", None)
        super().__init__(address_or_ble_device, disconnected_callback=kwargs.pop("disconnected_callback", None),
                         timeout=kwargs.pop("timeout", 10.0))
        if self.central is None:
            raise BleakError("BumbleBleakClient is not bound to a link: pass backend=bumble_backend(link)")
        self._requested_services = services
        self._central_mtu = int(central_mtu or self.default_central_mtu)
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._disconnecting = False
        self._name: str | None = None
        self._subscriptions: dict[int, Callable[[bytes], None]] = {}

    # ------------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        """The peripheral's GAP Device Name (0x2A00) if it has one, else its address."""
        return self._name or self.address

    @property
    def mtu_size(self) -> int:
        """Negotiated ATT MTU in bytes (23 before the exchange)."""
        if self._connection is None:
            return att.ATT_DEFAULT_MTU
        return int(self._connection.att_mtu)

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    # ------------------------------------------------------------------ connection

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect (within ``timeout`` s), exchange the MTU, discover services; optionally pair."""
        if self._connection is not None:
            return
        assert self.central is not None
        device = await self.central.get()
        try:
            connection = await device.connect(Address(self.address), timeout=self._timeout)
        except core.TimeoutError as exc:
            raise TimeoutError(f"no connection to {self.address} within {self._timeout} s "
                               "(is the peripheral advertising?)") from exc
        except core.BaseBumbleError as exc:
            raise BleakError(f"connection to {self.address} failed: {exc}") from exc
        self._connection = connection
        self._disconnecting = False
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
        try:
            self._peer = Peer(connection)
            await self._peer.request_mtu(self._central_mtu)
            self.services = await self._discover()
            self._name = await self._read_device_name()
            if pair:
                await self.pair()
        except BaseException:
            await self.disconnect()
            raise

    async def disconnect(self) -> None:
        """Disconnect (the disconnected callback is only called for disconnections we did not ask for)."""
        connection = self._connection
        if connection is None:
            return
        self._disconnecting = True
        try:
            await connection.disconnect()
        except core.BaseBumbleError as exc:  # already gone
            logger.debug("disconnect: %s", exc)
        self._cleanup()

    def _on_disconnection(self, reason: int) -> None:
        solicited = self._disconnecting
        self._cleanup()
        if not solicited and self._disconnected_callback is not None:
            self._disconnected_callback()

    def _cleanup(self) -> None:
        self._connection = None
        self._peer = None
        self._subscriptions.clear()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Pair (LE Secure Connections, Just Works unless the peripheral asks for more)."""
        await self._require_connection().pair()

    async def unpair(self) -> None:
        """Forget the bonding keys for this peripheral and disconnect."""
        assert self.central is not None
        device = await self.central.get()
        if device.keystore is not None:
            try:
                await device.keystore.delete(str(Address(self.address)))
            except KeyError:
                pass
        await self.disconnect()

    # ------------------------------------------------------------------ discovery

    async def _discover(self) -> BleakGATTServiceCollection:
        peer = self._require_peer()
        uuids = [core.UUID(u) for u in self._requested_services] if self._requested_services else []
        collection = BleakGATTServiceCollection()
        for svc in await peer.discover_services(uuids):
            service = BleakGATTService(svc, svc.handle, _uuid_str(svc.uuid))
            collection.add_service(service)
            for ch in await svc.discover_characteristics():
                props = [name for bit, name in _PROPERTY_NAMES.items() if int(ch.properties) & bit]
                char = BleakGATTCharacteristic(ch, ch.handle, _uuid_str(ch.uuid), props,  # type: ignore[arg-type]
                                               lambda: self.mtu_size - 3, service)
                collection.add_characteristic(char)
                for d in await ch.discover_descriptors():
                    collection.add_descriptor(BleakGATTDescriptor(d, d.handle, _uuid_str(d.type), char))
        return collection

    async def _read_device_name(self) -> str | None:
        peer = self._require_peer()
        chars = peer.get_characteristics_by_uuid(gatt.GATT_DEVICE_NAME_CHARACTERISTIC)
        if not chars:
            return None
        try:
            return bytes(await chars[0].read_value()).decode("utf-8", "replace")
        except att.ATT_Error:
            return None

    # ------------------------------------------------------------------ I/O

    def _require_connection(self) -> Connection:
        if self._connection is None:
            raise BleakError(f"not connected to {self.address}: call connect() first")
        return self._connection

    def _require_peer(self) -> Peer:
        self._require_connection()
        assert self._peer is not None
        return self._peer

    async def _att(self, coro: Any) -> Any:
        """Run a GATT client call, mapping bumble errors to bleak's."""
        try:
            return await coro
        except att.ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc
        except core.TimeoutError as exc:
            raise TimeoutError(str(exc)) from exc
        except asyncio.CancelledError:
            if self._connection is None:  # the link went down under a pending request
                raise BleakError(f"{self.address} disconnected during a GATT request") from None
            raise

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
                             **kwargs: Any) -> bytearray:
        peer = self._require_peer()
        proxy: CharacteristicProxy = characteristic.obj
        cached = peer.gatt_client.cached_values.get(proxy.handle) if use_cached else None
        if cached is not None:  # (time received, value) of the last read / notification
            return bytearray(cached[1])
        return bytearray(await self._att(proxy.read_value()))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False,
                                   **kwargs: Any) -> bytearray:
        peer = self._require_peer()
        proxy: DescriptorProxy = descriptor.obj
        cached = peer.gatt_client.cached_values.get(proxy.handle) if use_cached else None
        if cached is not None:
            return bytearray(cached[1])
        return bytearray(await self._att(proxy.read_value()))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: SizedBuffer,
                              response: bool) -> None:
        self._require_connection()
        proxy: CharacteristicProxy = characteristic.obj
        await self._att(proxy.write_value(bytes(data), with_response=response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        self._require_connection()
        proxy: DescriptorProxy = descriptor.obj
        await self._att(proxy.write_value(bytes(data), with_response=True))

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs: Any) -> None:
        """Write the CCCD: notifications when the characteristic has them, else indications."""
        self._require_connection()
        proxy: CharacteristicProxy = characteristic.obj

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        self._subscriptions[characteristic.handle] = on_value
        await self._att(proxy.subscribe(on_value, prefer_notify=True))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._require_connection()
        proxy: CharacteristicProxy = characteristic.obj
        subscriber = self._subscriptions.pop(characteristic.handle, None)
        await self._att(proxy.unsubscribe(subscriber, force=True))


def bumble_backend(link: LocalLink, central_mtu: int = DEFAULT_CENTRAL_MTU,
                   central_address: str = DEFAULT_CENTRAL_ADDRESS) -> type[BumbleBleakClient]:
    """Return a :class:`BumbleBleakClient` subclass bound to ``link``, for ``BleakClient(..., backend=...)``.

    ``central_mtu``: ATT MTU (bytes) requested after each connection. All clients of the returned class
    share one central adapter with address ``central_address``.
    """
    return type("BumbleBleakClientOnLink", (BumbleBleakClient,),  # type: ignore[return-value]
                {"central": BumbleCentral(link, central_address), "default_central_mtu": central_mtu})


__all__ = ["BumbleBleakClient", "BumbleCentral", "bumble_backend", "DEFAULT_CENTRAL_MTU"]
