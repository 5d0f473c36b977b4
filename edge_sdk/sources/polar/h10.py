"""Polar H10 ECG over Bluetooth LE through ``bleak``: connect, start PMD ECG, timestamp, survive link loss.

Sequence (``shared/reference/polar_pmd.md``): connect; check the ATT MTU (>= :data:`~.pmd.MIN_MTU`);
enable control point indications, then data notifications; read the features; GET_SETTINGS; START.
Data frames are decoded, placed on the sensor time axis by :class:`~..timestamps.FrameTimestamper`,
mapped to host time by :class:`~..timestamps.ClockMapper` and yielded as :class:`~..base.EcgChunk`.
Link loss triggers reconnection with exponential backoff and jitter; a sensor-initiated stop is
answered with a new START. Gaps are reported, never bridged.
"""
from __future__ import annotations

import asyncio
from collections import deque
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import EdgeSDKError, LinkLostError, MtuTooSmallError, PmdTimeoutError, ReconnectFailedError
from ..base import EcgChunk, EcgSource, SourceEvent, SourceItem
from ..timestamps import ClockMapper, FrameTimestamper
from .pmd import (BATTERY_LEVEL, HR_MEASUREMENT, MIN_MTU, PMD_CONTROL, PMD_DATA, ControlPointAssembler,
                  ControlResponse, HeartRateMeasurement, MeasurementType, Opcode, PmdError, SensorStopped,
                  SettingType, Status, get_settings_command, parse_ecg_frame, parse_features,
                  parse_heart_rate, parse_settings, start_command, stop_command)

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
        max_reconnects: reconnection attempts after a link loss before giving up (None: forever).
        backoff_initial_s, backoff_max_s: first and largest delay between attempts (s); doubles each
            attempt, with jitter (each delay drawn uniformly in [d/2, d]).
        heart_rate: also subscribe to the Heart Rate Measurement characteristic (see :meth:`on_heart_rate`).
        clock: host clock returning Unix seconds (default ``time.time``; the emulator passes its sped-up one).
        seed: seed of the backoff jitter (None: random).
        client_kwargs: passed to ``BleakClient`` (e.g. ``bluez={...}``).

    Iterating yields :class:`EcgChunk` and :class:`SourceEvent` (kinds ``connected``, ``already_streaming``,
    ``gap`` (detail ``gap_s``, ``samples``, ``reason``: lost_frames / reconnect / restart), ``duplicate``,
    ``sensor_stopped``, ``restarted``, ``disconnected``, ``reconnecting`` (``attempt``, ``delay_s``,
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
                 max_reconnects: int | None = 10, backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 heart_rate: bool = False, clock: Callable[[], float] = time.time, seed: int | None = None,
                 **client_kwargs: Any) -> None:
        super().__init__()
        self.address = address
        self.backend = backend
        self.sample_rate = int(sample_rate)
        self.nominal_fs_hz = float(sample_rate)
        self.connect_timeout_s = float(connect_timeout_s)
        self.command_timeout_s = float(command_timeout_s)
        self.max_reconnects = max_reconnects
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.heart_rate = heart_rate
        self.clock = clock
        self.client_kwargs = client_kwargs
        self._rng = random.Random(seed)

        self.timestamper = FrameTimestamper(nominal_fs_hz=self.nominal_fs_hz)
        self.clock_mapper = ClockMapper()
        #: (host time in Unix s, measurement) of every Heart Rate notification.
        #: the most recent (host time s, measurement) pairs; bounded (about 1 h at one a second)
        self.heart_rates: deque[tuple[float, HeartRateMeasurement]] = deque(maxlen=3600)
        self.mtu: int | None = None
        self.features: set[MeasurementType] = set()
        self.settings: dict[SettingType, list[int]] = {}
        self.battery_percent: int | None = None

        self._hr_callbacks: list[Callable[[float, HeartRateMeasurement], None]] = []
        self._client: Any = None
        self._queue: asyncio.Queue = asyncio.Queue()
        self._outbox: list[SourceEvent] = []
        self._pending: dict[int, asyncio.Future] = {}
        self._assembler = ControlPointAssembler()
        self._generation = 0
        self._closing = False
        self._ended = False
        self._segment_break: str | None = None  # "reconnect" / "restart": next frame starts a new segment
        self._sequence = 0

    # ------------------------------------------------------------------ public API

    def on_heart_rate(self, callback: Callable[[float, HeartRateMeasurement], None]) -> None:
        """Call ``callback(host_time_s, measurement)`` for every Heart Rate notification (needs heart_rate=True)."""
        self._hr_callbacks.append(callback)

    @property
    def fs_hz(self) -> float:
        """Current estimate of the sample rate on the sensor clock (Hz)."""
        return self.timestamper.fs_hz

    async def stream(self) -> AsyncIterator[SourceItem]:
        """Connect, start ECG and yield chunks and events until :meth:`close` (raises on fatal errors)."""
        self._closing = False
        self._ended = False
        try:
            await self._connect_and_start(reconnect=False)
            for ev in self._drain():
                yield ev
            while True:
                item = await self._queue.get()
                if isinstance(item, _Closed):
                    break
                if getattr(item, "generation", self._generation) != self._generation:
                    continue  # left over from a previous connection
                if isinstance(item, _Data):
                    chunk = self._on_frame(item)
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
        from bleak import BleakClient

        generation = self._generation

        def on_disconnect(_client: Any) -> None:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(LinkLostError(self.address))
            self._queue.put_nowait(_Disconnected(generation))

        return BleakClient(self.address, disconnected_callback=on_disconnect, timeout=self.connect_timeout_s,
                           backend=self.backend, **self.client_kwargs)

    async def _negotiated_mtu(self, client: Any) -> int:
        """ATT MTU in bytes. On BlueZ bleak reports 23 unless asked to acquire the real value first."""
        acquire = getattr(getattr(client, "_backend", None), "_acquire_mtu", None)
        if callable(acquire):
            try:
                await acquire()
            except Exception as exc:  # noqa: BLE001 - best effort, fall back to the reported value
                logger.debug("could not acquire the MTU: %s", exc)
        return int(client.mtu_size)

    async def _connect_and_start(self, reconnect: bool) -> None:
        """One full session setup; raises :class:`LinkLostError` if the link drops meanwhile."""
        self._generation += 1
        self._assembler = ControlPointAssembler()
        client = self._new_client()
        self._client = client
        await client.connect()
        try:
            self.mtu = await self._negotiated_mtu(client)
            if self.mtu < MIN_MTU:
                raise MtuTooSmallError(self.mtu, MIN_MTU)
            generation = self._generation
            await client.start_notify(PMD_CONTROL, lambda _c, data: self._on_control(data, generation))
            await client.start_notify(PMD_DATA, lambda _c, data: self._queue.put_nowait(
                _Data(bytes(data), self.clock(), generation)))
            self.features = parse_features(bytes(await client.read_gatt_char(PMD_CONTROL)))
            if MeasurementType.ECG not in self.features:
                raise PmdError(f"device {self.address} does not offer ECG (features "
                               f"{sorted(f.name for f in self.features)}): connect to a Polar H10")
            if self.heart_rate:
                await client.start_notify(HR_MEASUREMENT, lambda _c, data: self._on_heart_rate(data))
            await self._read_battery(client)
            response = await self._command(get_settings_command())
            self._check(response, "GET_SETTINGS")
            self.settings = parse_settings(response.params)
            rates = self.settings.get(SettingType.SAMPLE_RATE, [])
            if rates and self.sample_rate not in rates:
                raise PmdError(f"the sensor offers ECG at {rates} Hz, not {self.sample_rate}: "
                               f"pass sample_rate={rates[0]}", Status.INVALID_SAMPLE_RATE)
            resolution = (self.settings.get(SettingType.RESOLUTION) or [14])[0]
            await self._start(resolution)
        except BaseException:
            await self._disconnect_quietly(client)
            raise
        self._emit("connected", address=self.address, mtu=self.mtu, reconnect=reconnect,
                   battery_percent=self.battery_percent,
                   sample_rates_hz=self.settings.get(SettingType.SAMPLE_RATE, []))

    async def _read_battery(self, client: Any) -> None:
        try:
            self.battery_percent = int(bytes(await client.read_gatt_char(BATTERY_LEVEL))[0])
        except Exception as exc:  # noqa: BLE001 - optional characteristic
            logger.debug("no battery level: %s", exc)

    async def _start(self, resolution: int = 14) -> None:
        """Send START; ALREADY_IN_STATE means the sensor is streaming already (event, go on)."""
        response = await self._command(start_command(MeasurementType.ECG, self.sample_rate, resolution))
        if response.status == Status.ALREADY_IN_STATE:
            self._emit("already_streaming", address=self.address)
            return
        self._check(response, "START")

    def _check(self, response: ControlResponse, what: str) -> None:
        if response.status == Status.INVALID_MTU:
            raise MtuTooSmallError(None, MIN_MTU)
        if not response.ok:
            raise PmdError(f"{what} failed with status {response.status.name} ({int(response.status)}); "
                           "check the sample rate / resolution and that no other app is using the strap",
                           response.status)

    async def _command(self, command: bytes) -> ControlResponse:
        """Write ``command`` to the control point and await its (reassembled) response."""
        op = command[0]
        fut = asyncio.get_running_loop().create_future()
        self._pending[op] = fut
        try:
            await self._client.write_gatt_char(PMD_CONTROL, command, response=True)
            return await asyncio.wait_for(fut, self.command_timeout_s)
        except TimeoutError:
            raise PmdTimeoutError(f"no response to {Opcode(op).name} within {self.command_timeout_s} s: "
                                  "control point indications may be off; reconnect or power-cycle the strap "
                                  "(take it off the chest for a few seconds)") from None
        finally:
            if self._pending.get(op) is fut:
                del self._pending[op]

    async def _disconnect_quietly(self, client: Any) -> None:
        try:
            await client.disconnect()
        except Exception as exc:  # noqa: BLE001 - the link may be gone already
            logger.debug("disconnect: %s", exc)

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
        await self._disconnect_quietly(client)

    # ------------------------------------------------------------------ callbacks (bleak)

    def _on_control(self, data: bytearray, generation: int) -> None:
        """bleak callback of the control point: never raises; bad indications become events."""
        n_abandoned = len(self._assembler.abandoned)
        try:
            message = self._assembler.feed(bytes(data))
        except PmdError as exc:
            logger.warning("ignoring control point indication: %s", exc)
            self._emit("malformed_control", error=str(exc), data=bytes(data).hex(" "))
            message = None
        for dropped in self._assembler.abandoned[n_abandoned:]:
            self._emit("abandoned_response", head=dropped.head.hex(" "), params=dropped.params.hex(" "),
                       reason=dropped.reason)
        if isinstance(message, SensorStopped):
            self._queue.put_nowait(_Stopped(message, generation))
        elif isinstance(message, ControlResponse):
            fut = self._pending.get(int(message.opcode))
            if fut is not None and not fut.done():
                fut.set_result(message)
            else:
                logger.debug("unsolicited control response %s", message)

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

    def _on_frame(self, item: _Data) -> EcgChunk | None:
        try:
            frame = parse_ecg_frame(item.payload)
        except PmdError as exc:
            self._emit("malformed_frame", error=str(exc), length=len(item.payload))
            return None
        n = int(frame.samples_uv.shape[0])
        if n == 0:
            return None
        previous_last = self.timestamper.last_time_s
        if self._segment_break:
            self.timestamper.reset()  # keeps the tracked period
        timing = self.timestamper.place(frame.unix_time_s, n)
        if timing.duplicate:
            self._emit("duplicate", timestamp_ns=frame.timestamp_ns, samples=n)
            return None
        if timing.clock_jump_s:  # sensor clock stepped or a wild stamp: placed without a gap, axis re-anchored
            self._emit("clock_jump", jump_s=timing.clock_jump_s, reason=self._segment_break or "sensor_clock",
                       timestamp_ns=frame.timestamp_ns)
        gap, reason = float(timing.gap_before_s), "lost_frames"
        if self._segment_break:
            if previous_last is not None:
                step = float(timing.times_s[0]) - previous_last - timing.period_s
                if step < -0.5 * timing.period_s:  # e.g. the strap was power-cycled and its clock reset
                    self._emit("clock_jump", jump_s=step, reason=self._segment_break)
                gap = step if step > 0.5 * timing.period_s else 0.0
                reason = self._segment_break
            self._segment_break = None
        if gap > 0:
            self._emit("gap", gap_s=gap, samples=int(round(gap / timing.period_s)), reason=reason,
                       before_sensor_time_s=float(timing.times_s[0]))
        self.clock_mapper.observe(float(timing.times_s[-1]), item.received_host_s)
        self._sequence += 1
        return EcgChunk(samples_uv=frame.samples_uv.astype(np.float64), sensor_time_s=timing.times_s,
                        host_time_s=self.clock_mapper.to_host(timing.times_s), received_host_s=item.received_host_s,
                        fs_hz=self.timestamper.fs_hz, gap_before_s=gap, sequence=self._sequence)

    async def _restart(self, message: SensorStopped) -> None:
        self._emit("sensor_stopped", measurement_types=message.mtypes)
        if MeasurementType.ECG not in message.mtypes:
            return
        resolution = (self.settings.get(SettingType.RESOLUTION) or [14])[0]
        try:
            await self._start(resolution)
        except PmdError:
            raise
        except Exception:  # noqa: BLE001 - LinkLostError or the backend's error for a dropped link
            if self._client is not None and self._client.is_connected:
                raise
            return  # the link dropped: its disconnection is queued and handled next
        self._segment_break = "restart"
        self._emit("restarted", address=self.address)

    def _backoff_s(self, attempt: int) -> float:
        """Delay (s) before reconnection attempt ``attempt`` (0-based): exponential, capped, jittered."""
        d = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** attempt)
        return d / 2 + self._rng.uniform(0.0, d / 2)

    async def _reconnect(self) -> AsyncIterator[SourceEvent]:
        """Reconnect with backoff, yielding events as they happen; raises :class:`ReconnectFailedError`
        when attempts run out."""
        old, self._client = self._client, None
        if old is not None:
            await self._disconnect_quietly(old)
        attempt = 0
        last_error: BaseException | None = None
        while self.max_reconnects is None or attempt < self.max_reconnects:
            delay = self._backoff_s(attempt)
            self._emit("reconnecting", attempt=attempt + 1, delay_s=delay,
                       error=None if last_error is None else repr(last_error))
            for ev in self._drain():
                yield ev
            await asyncio.sleep(delay)  # backoff
            if self._closing:
                return
            try:
                self._segment_break = "reconnect"
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
