"""Polar H10 ECG over Bluetooth LE through ``bleak``: connect, start PMD ECG, timestamp, survive link loss.

Sequence (``shared/reference/polar_pmd.md``): connect; check the ATT MTU (>= :data:`~.pmd.MIN_MTU`);
enable control point indications, then data notifications; read the features; GET_SETTINGS; START.
Data frames are decoded, placed on the sensor time axis by :class:`~..timestamps.FrameTimestamper`,
mapped to host time by :class:`~..timestamps.ClockMapper` and yielded as :class:`~..base.EcgChunk`.
Link loss triggers reconnection with exponential backoff and jitter; a sensor-initiated stop is
answered with a new START. Gaps are reported, never bridged.

The parts, each testable alone: :mod:`.connection` (bleak client, MTU, battery), :mod:`.pmd_session`
(control point commands and responses), :mod:`.frame_timing` (frame bytes -> timed chunks and events),
:mod:`.reconnect` (backoff policy). :class:`PolarH10Source` wires them into one :class:`~..base.EcgSource`.
"""
from __future__ import annotations

import asyncio
import logging
import math
import numbers
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError, MtuTooSmallError, PmdError, PmdTimeoutError, ReconnectFailedError
from ..base import EcgSource, SourceEvent, SourceItem
from .connection import disconnect_quietly, negotiated_mtu, new_client, read_battery_percent
from .frame_timing import FrameTiming
from .pmd import (HR_MEASUREMENT, MIN_MTU, PMD_CONTROL, PMD_DATA, HeartRateMeasurement, MeasurementType,
                  SensorStopped, SettingType, Status, get_settings_command, parse_features, parse_heart_rate,
                  parse_settings, stop_command)
from .pmd_session import PmdSession
from .reconnect import ReconnectPolicy

logger = logging.getLogger(__name__)


@dataclass
class _Data:
    payload: bytes
    received_host_s: float
    generation: int


@dataclass
class _Stopped:
    message: SensorStopped
    generation: int


@dataclass
class _Disconnected:
    generation: int


class _Closed:
    pass


class PolarH10Source(EcgSource):
    """ECG stream of a Polar H10 through ``bleak.BleakClient``.

    Args:
        address: Bluetooth address (or platform id) of the strap.
        backend: bleak client backend class (None: the platform's; the emulator passes its own).
        sample_rate: ECG sample rate to request (Hz); the H10 offers 130.
        connect_timeout_s: seconds allowed for one connection attempt.
        command_timeout_s: seconds to wait for a control point response.
        data_timeout_s: seconds (event-loop time) without an ECG frame after which a connected strap counts
            as stalled: event ``stalled``, then the reconnection path (None: wait forever). The H10 sends a
            frame about every 0.6 s.
        max_reconnects: reconnection attempts after a link loss before giving up (None: forever).
        backoff_initial_s, backoff_max_s: first and largest delay between attempts (s); doubles each
            attempt, with jitter (each delay drawn uniformly in [d/2, d]).
        heart_rate: also subscribe to the Heart Rate Measurement characteristic (see :meth:`on_heart_rate`).
        clock: host clock returning Unix seconds (default ``time.time``; the emulator passes its sped-up one).
        seed: seed of the backoff jitter (None: random).
        client_kwargs: passed to ``BleakClient`` (e.g. ``bluez={...}``).

    Iterating yields :class:`EcgChunk` and :class:`SourceEvent` (kinds ``connected``, ``already_streaming``,
    ``gap`` (detail ``gap_s``, ``samples``, ``reason``: lost_frames / reconnect / restart), ``duplicate``,
    ``sensor_stopped``, ``restarted``, ``stalled`` (``seconds``: no frame for that long, link up),
    ``disconnected``, ``reconnecting`` (``attempt``, ``delay_s``,
    ``error``), ``clock_jump`` (``jump_s``: step of the sensor clock in s; the frame is kept, the time axis
    stays continuous), ``malformed_frame``, ``malformed_control``, ``abandoned_response`` (a multi-part
    control response cut off by a new one), ``malformed_heart_rate``, ``end``). Raises :class:`MtuTooSmallError`,
    :class:`PmdError` (error status), :class:`PmdTimeoutError`, :class:`LinkLostError` (first setup) or
    :class:`ReconnectFailedError`.
    """

    name = "polar_h10"
    nominal_fs_hz = 130.0

    def __init__(self, address: str, backend: type | None = None, sample_rate: int = 130, *,
                 connect_timeout_s: float = 20.0, command_timeout_s: float = 5.0,
                 data_timeout_s: float | None = 10.0, max_reconnects: int | None = 10,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 heart_rate: bool = False, clock: Callable[[], float] = time.time, seed: int | None = None,
                 **client_kwargs: Any) -> None:
        super().__init__()
        if not isinstance(sample_rate, numbers.Integral) or isinstance(sample_rate, bool) or sample_rate <= 0:
            raise ConfigError(f"sample_rate is a whole number of Hz that the sensor offers (the H10: 130), not "
                              f"{sample_rate!r}")
        timeouts = [("connect_timeout_s", connect_timeout_s), ("command_timeout_s", command_timeout_s)]
        for what, value in timeouts + ([("data_timeout_s", data_timeout_s)] if data_timeout_s is not None else []):
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{what} is a positive, finite number of seconds, not {value!r}")
        self.address = address
        self.backend = backend
        self.sample_rate = int(sample_rate)
        self.nominal_fs_hz = float(sample_rate)
        self.connect_timeout_s = float(connect_timeout_s)
        self.command_timeout_s = float(command_timeout_s)
        self.data_timeout_s = None if data_timeout_s is None else float(data_timeout_s)
        self.reconnect_policy = ReconnectPolicy(backoff_initial_s, backoff_max_s, max_reconnects, seed)
        self.heart_rate = heart_rate
        self.clock = clock
        self.client_kwargs = client_kwargs

        self.timing = FrameTiming(self.nominal_fs_hz, self._emit)
        #: the most recent (host time s, measurement) pairs of Heart Rate notifications; bounded (1 h at 1 Hz)
        self.heart_rates: deque[tuple[float, HeartRateMeasurement]] = deque(maxlen=3600)
        self.mtu: int | None = None
        self.features: set[MeasurementType] = set()
        self.settings: dict[SettingType, list[int]] = {}
        self.battery_percent: int | None = None

        self._hr_callbacks: list[Callable[[float, HeartRateMeasurement], None]] = []
        self._client: Any = None
        self._session: PmdSession | None = None
        self._queue: asyncio.Queue = asyncio.Queue()
        self._outbox: list[SourceEvent] = []
        self._generation = 0
        self._closing = False
        self._ended = False

    # ------------------------------------------------------------------ public API

    def on_heart_rate(self, callback: Callable[[float, HeartRateMeasurement], None]) -> None:
        """Call ``callback(host_time_s, measurement)`` for every Heart Rate notification (needs heart_rate=True)."""
        self._hr_callbacks.append(callback)

    @property
    def fs_hz(self) -> float:
        """Current estimate of the sample rate on the sensor clock (Hz)."""
        return self.timing.fs_hz

    @property
    def clock_mapper(self):
        """Sensor -> host clock mapping (drift in ppm, skew) of this stream."""
        return self.timing.clock_mapper

    async def stream(self) -> AsyncIterator[SourceItem]:
        """Connect, start ECG and yield chunks and events until :meth:`close` (raises on fatal errors)."""
        self._closing = False
        self._ended = False
        try:
            await self._connect_and_start(reconnect=False)
            for ev in self._drain():
                yield ev
            while True:
                try:
                    item = await asyncio.wait_for(self._queue.get(), self.data_timeout_s)
                except asyncio.TimeoutError:  # connected, yet nothing came: a hung strap or a half-dead link
                    if self._closing:
                        break
                    self._emit("stalled", address=self.address, seconds=self.data_timeout_s,
                               action="no ECG frame for that long with the link up: reconnecting")
                    async for ev in self._reconnect():
                        yield ev
                    for ev in self._drain():
                        yield ev
                    continue
                if isinstance(item, _Closed):
                    break
                if getattr(item, "generation", self._generation) != self._generation:
                    continue  # left over from a previous connection
                if isinstance(item, _Data):
                    chunk = self.timing.chunk(item.payload, item.received_host_s)
                    for ev in self._drain():
                        yield ev
                    if chunk is not None:
                        yield chunk
                elif isinstance(item, _Stopped):
                    await self._restart(item.message)
                elif isinstance(item, _Disconnected):
                    if self._closing:
                        break
                    self._emit("disconnected", address=self.address)
                    async for ev in self._reconnect():
                        yield ev
                for ev in self._drain():
                    yield ev
            self._ended = True
            self._emit("end")
            for ev in self._drain():
                yield ev
        finally:
            await self._shutdown()
            if not self._ended:  # closed while the consumer was not iterating: callbacks still hear it
                self._ended = True
                self._event("end")

    async def close(self) -> None:
        """Send STOP (errors ignored), disconnect, and end :meth:`stream`."""
        self._closing = True
        await self._shutdown()
        self._queue.put_nowait(_Closed())

    # ------------------------------------------------------------------ events

    def _emit(self, kind: str, **detail: Any) -> SourceEvent:
        ev = self._event(kind, **detail)
        self._outbox.append(ev)
        return ev

    def _drain(self) -> list[SourceEvent]:
        out, self._outbox = self._outbox, []
        return out

    # ------------------------------------------------------------------ connection

    def _new_client(self) -> Any:
        generation = self._generation

        def on_disconnect(_client: Any) -> None:
            if self._session is not None:
                self._session.link_lost()
            self._queue.put_nowait(_Disconnected(generation))

        return new_client(self.address, on_disconnect, self.connect_timeout_s, self.backend, **self.client_kwargs)

    async def _connect_and_start(self, reconnect: bool) -> None:
        """One full session setup; raises :class:`LinkLostError` if the link drops meanwhile."""
        self._generation += 1
        generation = self._generation
        client = self._new_client()
        self._client = client
        self._session = session = PmdSession(
            lambda cmd: client.write_gatt_char(PMD_CONTROL, cmd, response=True), self.command_timeout_s,
            self._emit, lambda message: self._queue.put_nowait(_Stopped(message, generation)), self.address)
        await client.connect()
        try:
            self.mtu = await negotiated_mtu(client)
            if self.mtu < MIN_MTU:
                raise MtuTooSmallError(self.mtu, MIN_MTU)
            await client.start_notify(PMD_CONTROL, lambda _c, data: session.on_indication(data))
            await client.start_notify(PMD_DATA, lambda _c, data: self._queue.put_nowait(
                _Data(bytes(data), self.clock(), generation)))
            self.features = parse_features(bytes(await client.read_gatt_char(PMD_CONTROL)))
            if MeasurementType.ECG not in self.features:
                raise PmdError(f"device {self.address} does not offer ECG (features "
                               f"{sorted(f.name for f in self.features)}): connect to a Polar H10")
            if self.heart_rate:
                await client.start_notify(HR_MEASUREMENT, lambda _c, data: self._on_heart_rate(data))
            self.battery_percent = await read_battery_percent(client)
            response = await session.command(get_settings_command())
            session.check(response, "GET_SETTINGS")
            self.settings = parse_settings(response.params)
            rates = self.settings.get(SettingType.SAMPLE_RATE, [])
            if rates and self.sample_rate not in rates:
                raise PmdError(f"the sensor offers ECG at {rates} Hz, not {self.sample_rate}: "
                               f"pass sample_rate={rates[0]}", Status.INVALID_SAMPLE_RATE)
            await session.start_ecg(self.sample_rate, (self.settings.get(SettingType.RESOLUTION) or [14])[0])
        except BaseException:
            await disconnect_quietly(client)
            raise
        self._emit("connected", address=self.address, mtu=self.mtu, reconnect=reconnect,
                   battery_percent=self.battery_percent,
                   sample_rates_hz=self.settings.get(SettingType.SAMPLE_RATE, []))

    async def _shutdown(self) -> None:
        self._closing = True
        client, self._client = self._client, None
        if client is None:
            return
        if client.is_connected:
            try:
                await asyncio.wait_for(client.write_gatt_char(PMD_CONTROL, stop_command(), response=True),
                                       self.command_timeout_s)
            except Exception as exc:  # noqa: BLE001 - STOP is best effort
                logger.debug("STOP failed: %s", exc)
        await disconnect_quietly(client)

    # ------------------------------------------------------------------ callbacks (bleak)

    def _on_heart_rate(self, data: bytearray) -> None:
        """bleak callback of the Heart Rate Measurement: never raises on bad bytes (event ``malformed_heart_rate``)."""
        host = self.clock()
        try:
            hr = parse_heart_rate(bytes(data))
        except PmdError as exc:
            logger.warning("ignoring heart rate notification: %s", exc)
            self._emit("malformed_heart_rate", error=str(exc), data=bytes(data).hex(" "))
            return
        self.heart_rates.append((host, hr))
        for cb in self._hr_callbacks:
            cb(host, hr)

    # ------------------------------------------------------------------ stream handling

    async def _restart(self, message: SensorStopped) -> None:
        self._emit("sensor_stopped", measurement_types=message.mtypes)
        if MeasurementType.ECG not in message.mtypes:
            return
        resolution = (self.settings.get(SettingType.RESOLUTION) or [14])[0]
        try:
            await self._session.start_ecg(self.sample_rate, resolution)
        except PmdError:
            raise
        except Exception:  # noqa: BLE001 - LinkLostError or the backend's error for a dropped link
            if self._client is not None and self._client.is_connected:
                raise
            return  # the link dropped: its disconnection is queued and handled next
        self.timing.break_segment("restart")
        self._emit("restarted", address=self.address)

    async def _reconnect(self) -> AsyncIterator[SourceEvent]:
        """Reconnect with backoff, yielding events as they happen; raises :class:`ReconnectFailedError`
        when attempts run out."""
        old, self._client = self._client, None
        if old is not None:
            await disconnect_quietly(old)
        attempt = 0
        last_error: BaseException | None = None
        while self.reconnect_policy.may_try(attempt):
            delay = self.reconnect_policy.delay_s(attempt)
            self._emit("reconnecting", attempt=attempt + 1, delay_s=delay,
                       error=None if last_error is None else repr(last_error))
            for ev in self._drain():
                yield ev
            await asyncio.sleep(delay)  # backoff
            if self._closing:
                return
            try:
                self.timing.break_segment("reconnect")
                await self._connect_and_start(reconnect=True)
            except PmdError as exc:
                if not isinstance(exc, PmdTimeoutError):
                    raise  # the sensor refused (MTU, settings): retrying will not help
                last_error = exc
                attempt += 1
            except Exception as exc:  # noqa: BLE001 - bleak and the OS raise many types for a failed attempt
                last_error = exc
                logger.info("reconnection attempt %d to %s failed: %r", attempt + 1, self.address, exc)
                attempt += 1
            else:
                for ev in self._drain():
                    yield ev
                return
        raise ReconnectFailedError(
            f"lost the link to {self.address} and {attempt} reconnection attempts failed (last error: "
            f"{last_error!r}); check that the strap is worn (electrodes moist) and in range, then start "
            "the source again") from last_error
