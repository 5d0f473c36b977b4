"""An emulated Polar H10 chest strap: a bumble peripheral speaking PMD over real ATT, fed with real ECG.

It answers the control point exactly like the H10 in ``shared/reference/polar_pmd.md`` (features read,
GET_SETTINGS split over two indications, START/STOP, error statuses), streams ECG data notifications of
``samples_per_frame(MTU)`` samples stamped with the sensor clock (ns since 2000-01-01 of the last sample),
and sends Heart Rate Measurements with RR intervals taken from the record's annotated beats.

Time model. Physical time ``tau`` (seconds since :meth:`EmulatedPolarH10.start`) runs ``speed`` times
faster than the host's monotonic clock. Sample ``k`` is taken at ``tau = k / true_fs_hz``; the sensor
clock reads ``epoch + tau * (1 + clock_skew_ppm * 1e-6)``. A frame is sent when its last sample has been
taken. :meth:`EmulatedPolarH10.host_clock` is the matching host wall clock (Unix seconds, sped up), to be
passed to the source so that host and sensor clocks are comparable at any ``speed``.

Faults (all off by default): ``max_mtu``/``min_mtu``, ``drop_frames``, ``duplicate_frames``,
``disconnect_after_frames`` (+ ``reconnect_delay_s``), ``stop_after_frames``, ``silent_after_frames``,
``already_streaming``. Everything sent is logged in :attr:`EmulatedPolarH10.frames`, :attr:`heart_rates` and
:attr:`control_log`.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import time
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field

import numpy as np
from bumble.controller import Controller
from bumble.core import AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from edge_sdk.datasets.mitdb import FS_HZ as MITDB_FS_HZ
from edge_sdk.datasets.mitdb import MitBih
from edge_sdk.preprocessing import resample_linear
from .pmd_bytes import (BATTERY_LEVEL, HR_MEASUREMENT, HR_SERVICE, MAX_MTU, MIN_MTU, PMD_CONTROL, PMD_DATA,
                        PMD_EPOCH_OFFSET_S, PMD_SERVICE, MeasurementType, Opcode, SettingType, Status)
from .pmd_bytes import ecg_frame as encode_ecg_frame
from .pmd_bytes import heart_rate as encode_heart_rate
from .pmd_bytes import read_settings as parse_settings
from .pmd_bytes import samples_per_frame

from .bumble_backend import DEFAULT_CENTRAL_MTU, BumbleBleakClient, bumble_backend

BATTERY_SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
BODY_SENSOR_LOCATION = "00002a38-0000-1000-8000-00805f9b34fb"
#: Features read from the control point: ``0F`` + bitmask ECG (bit0) | ACC (bit2).
H10_FEATURES = bytes([0x0F, 0x05, 0x00])
#: GET_SETTINGS parameters of the H10's ECG: 130 Hz, 14 bit.
H10_ECG_SETTINGS = bytes([0x00, 0x01, 0x82, 0x00, 0x01, 0x01, 0x0E, 0x00])
H10_SAMPLE_RATE_HZ = 130
H10_RESOLUTION_BITS = 14
DEFAULT_ADDRESS = "C0:9E:1A:10:00:01"


# ----------------------------------------------------------------------------- ECG content

@dataclass
class EmulatedEcg:
    """The signal the sensor "measures": ``samples_uv`` (n,) int32 microvolts at ``fs_hz`` (the true
    sample rate), ``r_peaks`` sample indices of annotated beats (for RR intervals); played in a loop."""

    samples_uv: np.ndarray
    fs_hz: float
    r_peaks: np.ndarray
    source: str = ""


def load_mitdb_ecg(record: str = "100", fs_hz: float = 130.0, lead: str = "MLII",
                   mitdb: MitBih | None = None, seconds: float | None = None) -> EmulatedEcg:
    """Lead ``lead`` of MIT-BIH ``record``, linearly resampled from 360 Hz to ``fs_hz`` and converted
    mV -> integer microvolts; ``seconds`` limits the length (None: the whole 30 min record)."""
    db = mitdb or MitBih()
    sampto = None if seconds is None else int(seconds * MITDB_FS_HZ)
    rec = db.read(record, lead=lead, sampto=sampto)
    x = resample_linear(rec.signal_mv, rec.fs_hz, fs_hz)
    samples_uv = np.round(x * 1000.0).astype(np.int32)
    beats, _ = db.beats(record)
    n_in, n_out = rec.signal_mv.shape[0], samples_uv.shape[0]
    beats = beats[beats < n_in]
    # resample_linear maps input sample i to output position i * (n_out - 1) / (n_in - 1)
    r_peaks = np.unique(np.round(beats * (n_out - 1) / (n_in - 1)).astype(np.int64))
    return EmulatedEcg(samples_uv, float(fs_hz), r_peaks, f"mitdb/{record}/{rec.lead or lead}")


# ----------------------------------------------------------------------------- logs

@dataclass
class SentFrame:
    """One ECG frame the sensor produced. ``index``: frames produced since power-on (dropped ones count);
    ``first_sample``: physical sample index of its first sample; ``timestamp_ns``: sensor time of the last
    sample (ns since 2000-01-01); ``sent``: False when dropped (fault) or nobody subscribed;
    ``copies``: notifications sent (2 for a duplicated frame); ``connection``: connection number (1-based)."""

    index: int
    first_sample: int
    timestamp_ns: int
    samples_uv: np.ndarray
    sent: bool
    copies: int
    connection: int


@dataclass
class SentHeartRate:
    """One Heart Rate Measurement: physical time (s), bpm and RR intervals (s, quantised to 1/1024 s)."""

    physical_time_s: float
    bpm: int
    rr_s: list[float]
    payload: bytes


@dataclass
class _Link:
    """Per-connection state of the peripheral."""

    connection: Connection
    number: int
    data_subscribed: bool = False
    control_subscribed: bool = False
    heart_rate_subscribed: bool = False
    tasks: list[asyncio.Task] = field(default_factory=list)


# ----------------------------------------------------------------------------- the sensor

class EmulatedPolarH10:
    """A Polar H10 on ``link``. See the module docstring for the time model.

    ``ecg``: the signal (default MIT-BIH 100 MLII at ``true_fs_hz``). ``true_fs_hz``: physical sample rate
    (Hz). ``clock_skew_ppm``: how fast the sensor clock runs (ppm). ``speed``: physical seconds per host
    second. ``sensor_epoch_unix_s``: sensor clock reading at power-on (default: host time then).
    ``max_mtu``: largest ATT MTU (bytes) the sensor negotiates; ``min_mtu``: smallest it streams at
    (START answers INVALID_MTU below). ``drop_frames``: frame indices never sent, or a probability
    (with ``seed``). ``duplicate_frames``: frame indices sent twice. ``disconnect_after_frames``: drop
    the link once after that many frames; ``reconnect_delay_s``: physical seconds before advertising
    again. ``stop_after_frames``: stop by itself once after that many frames (indication ``01 00``).
    ``silent_after_frames``: stop sending ECG once after that many frames without telling (the link stays
    up; a hung sensor): a new connection's START streams again.
    ``already_streaming``: ECG already runs when the first client subscribes (first START -> 6).
    ``heart_rate_interval_s``: physical seconds between HR notifications; RR intervals come from
    ``ecg.r_peaks``, or beats at ``fixed_heart_rate_bpm`` when the signal has fewer than two.
    ``battery_percent``: 0x2A19.
    """

    def __init__(self, link: LocalLink, ecg: EmulatedEcg | None = None, *, address: str = DEFAULT_ADDRESS,
                 name: str = "Polar H10 1A2B3C4D", true_fs_hz: float = 130.0, clock_skew_ppm: float = 0.0,
                 speed: float = 1.0, sensor_epoch_unix_s: float | None = None, max_mtu: int = MAX_MTU,
                 min_mtu: int = MIN_MTU, drop_frames: Collection[int] | float = (), seed: int = 0,
                 duplicate_frames: Collection[int] = (), disconnect_after_frames: int | None = None,
                 reconnect_delay_s: float = 0.0, stop_after_frames: int | None = None,
                 silent_after_frames: int | None = None, already_streaming: bool = False,
                 heart_rate_interval_s: float = 1.0,
                 fixed_heart_rate_bpm: float = 60.0, battery_percent: int = 87) -> None:
        if speed <= 0 or true_fs_hz <= 0:
            raise ValueError(f"speed ({speed}) and true_fs_hz ({true_fs_hz}) must be positive")
        self.link = link
        self.address = address
        self.name = name
        self.ecg = ecg if ecg is not None else load_mitdb_ecg(fs_hz=true_fs_hz)
        if abs(self.ecg.fs_hz - true_fs_hz) > 0.05 * true_fs_hz:
            raise ValueError(f"the ECG is sampled at {self.ecg.fs_hz} Hz but the sensor samples at {true_fs_hz} Hz: "
                             f"resample it first, e.g. load_mitdb_ecg(fs_hz={true_fs_hz})")
        self.true_fs_hz = float(true_fs_hz)
        self.clock_skew_ppm = float(clock_skew_ppm)
        self.speed = float(speed)
        self.sensor_epoch_unix_s = sensor_epoch_unix_s
        self.max_mtu = int(max_mtu)
        self.min_mtu = int(min_mtu)
        self.drop_probability = float(drop_frames) if isinstance(drop_frames, float) else 0.0
        self.drop_frames = set() if isinstance(drop_frames, float) else {int(i) for i in drop_frames}
        self._rng = np.random.default_rng(seed)
        self.duplicate_frames = {int(i) for i in duplicate_frames}
        self.disconnect_after_frames = disconnect_after_frames
        self.reconnect_delay_s = float(reconnect_delay_s)
        self.stop_after_frames = stop_after_frames
        self.silent_after_frames = silent_after_frames
        self.already_streaming = already_streaming
        self.heart_rate_interval_s = float(heart_rate_interval_s)
        self.battery_percent = int(battery_percent)
        n_total = self.ecg.samples_uv.shape[0]
        if self.ecg.r_peaks.shape[0] >= 2:
            self._r_peaks = np.asarray(self.ecg.r_peaks, np.int64)
        else:
            beat = max(1, int(round(self.ecg.fs_hz * 60.0 / fixed_heart_rate_bpm)))
            self._r_peaks = np.arange(0, n_total, beat, dtype=np.int64)

        self.frames: list[SentFrame] = []
        self.heart_rates: list[SentHeartRate] = []
        #: ("rx" | "tx", bytes) of every control point write and indication, in order.
        self.control_log: list[tuple[str, bytes]] = []
        self.streaming = False
        self.n_connections = 0
        self.n_disconnections = 0

        self._m0: float | None = None
        self._unix0 = 0.0
        self._epoch_ns = 0
        self._next_sample = 0
        self._frame_counter = 0
        self._link: _Link | None = None
        self._stream_task: asyncio.Task | None = None
        self._command_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()
        self._device: Device | None = None
        self._control_char: Characteristic | None = None
        self._data_char: Characteristic | None = None
        self._hr_char: Characteristic | None = None
        self._beat_cursor = 0

    # ------------------------------------------------------------------ clocks

    def physical_time_s(self) -> float:
        """Seconds of physical (sensor) time since :meth:`start`."""
        if self._m0 is None:
            return 0.0
        return (time.monotonic() - self._m0) * self.speed

    def host_clock(self) -> float:
        """Host wall clock consistent with ``speed``: Unix seconds at :meth:`start` + physical time."""
        return self._unix0 + self.physical_time_s()

    def sample_time_s(self, k: int) -> float:
        """Physical time (s) at which sample ``k`` is taken."""
        return k / self.true_fs_hz

    def timestamp_ns(self, k: int) -> int:
        """Sensor clock reading (ns since 2000-01-01) when sample ``k`` is taken."""
        return self._epoch_ns + int(round(self.sample_time_s(k) * (1.0 + self.clock_skew_ppm * 1e-6) * 1e9))

    @property
    def sensor_fs_hz(self) -> float:
        """Sample rate as the sensor's own timestamps show it (Hz): true rate / (1 + skew)."""
        return self.true_fs_hz / (1.0 + self.clock_skew_ppm * 1e-6)

    async def _sleep_until_physical(self, tau: float) -> None:
        assert self._m0 is not None
        delay = self._m0 + tau / self.speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing: the sensor produces samples in (sped-up) real time

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Create the controller and device on the link, power on, start advertising."""
        controller = Controller("polar-h10", link=self.link, public_address=self.address)
        device = Device(name=self.name, address=Address(self.address),
                        host=Host(controller, AsyncPipeSink(controller)))
        device.gatt_server.max_mtu = self.max_mtu
        self._add_services(device)
        device.on(device.EVENT_CONNECTION, self._on_connection)
        device.advertising_data = bytes(AdvertisingData([
            (AdvertisingData.FLAGS, bytes([0x06])),
            (AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, struct.pack("<H", 0x180D)),
            (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()),
        ]))
        self._device = device
        await device.power_on()
        self._m0 = time.monotonic()
        self._unix0 = time.time()
        epoch_unix = self._unix0 if self.sensor_epoch_unix_s is None else self.sensor_epoch_unix_s
        self._epoch_ns = int(round((epoch_unix - PMD_EPOCH_OFFSET_S) * 1e9))
        await self._advertise()

    async def close(self) -> None:
        """Stop every task, drop the link and power off."""
        self._stop_streaming()
        for task in list(self._background):
            task.cancel()
        if self._link is not None:
            for task in self._link.tasks:
                task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        device = self._device
        if device is not None:
            if self._link is not None:
                with contextlib.suppress(Exception):
                    await self._link.connection.disconnect()
            with contextlib.suppress(Exception):
                await device.stop_advertising()
            await device.power_off()

    async def _advertise(self) -> None:
        assert self._device is not None
        await self._device.start_advertising(advertising_interval_min=20, advertising_interval_max=20)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ------------------------------------------------------------------ GATT database

    def _add_services(self, device: Device) -> None:
        props = Characteristic.Properties
        self._control_char = Characteristic(
            PMD_CONTROL, props.READ | props.WRITE | props.INDICATE,
            Characteristic.READABLE | Characteristic.WRITEABLE,
            CharacteristicValue(read=lambda _conn: H10_FEATURES, write=self._on_control_write))
        self._data_char = Characteristic(PMD_DATA, props.NOTIFY, Characteristic.READABLE, b"")
        self._hr_char = Characteristic(HR_MEASUREMENT, props.NOTIFY, Characteristic.READABLE, b"")
        battery = Characteristic(BATTERY_LEVEL, props.READ | props.NOTIFY, Characteristic.READABLE,
                                 CharacteristicValue(read=lambda _conn: bytes([self.battery_percent])))
        location = Characteristic(BODY_SENSOR_LOCATION, props.READ, Characteristic.READABLE, bytes([0x01]))
        device.add_service(Service(HR_SERVICE, [self._hr_char, location]))
        device.add_service(Service(BATTERY_SERVICE, [battery]))
        device.add_service(Service(PMD_SERVICE, [self._control_char, self._data_char]))
        for char in (self._control_char, self._data_char, self._hr_char):
            char.on(char.EVENT_SUBSCRIPTION, lambda conn, notify, indicate, c=char:
                    self._on_subscription(c, conn, notify, indicate))

    # ------------------------------------------------------------------ connection events

    def _on_connection(self, connection: Connection) -> None:
        self.n_connections += 1
        self._link = _Link(connection, self.n_connections)
        connection.on(connection.EVENT_DISCONNECTION, lambda reason: self._on_disconnection(connection))

    def _on_disconnection(self, connection: Connection) -> None:
        if self._link is None or self._link.connection is not connection:
            return
        self.n_disconnections += 1
        self._stop_streaming()  # the H10 ends the measurement when the link goes
        for task in self._link.tasks:
            task.cancel()
        self._link = None
        self._spawn(self._advertise_after(self.reconnect_delay_s))

    async def _advertise_after(self, physical_delay_s: float) -> None:
        await self._sleep_until_physical(self.physical_time_s() + physical_delay_s)
        await self._advertise()

    def _on_subscription(self, char: Characteristic, connection: Connection, notify: bool, indicate: bool) -> None:
        link = self._link
        if link is None or link.connection is not connection:
            return
        if char is self._control_char:
            link.control_subscribed = indicate
        elif char is self._data_char:
            link.data_subscribed = notify
            if notify and self.already_streaming and self.n_connections == 1 and not self.streaming:
                self._start_streaming(link)  # a previous session left the measurement running
        elif char is self._hr_char:
            if notify and not link.heart_rate_subscribed:
                link.tasks.append(self._spawn(self._heart_rate_loop(link)))
            link.heart_rate_subscribed = notify

    # ------------------------------------------------------------------ control point

    def _on_control_write(self, connection: Connection, value: bytes) -> None:
        value = bytes(value)
        self.control_log.append(("rx", value))
        # answer after the write response, like the sensor does
        self._spawn(self._handle_command(connection, value))

    async def _indicate(self, connection: Connection, value: bytes) -> None:
        link = self._link
        if link is None or link.connection is not connection or not link.control_subscribed:
            return  # without indications enabled no response comes
        assert self._device is not None and self._control_char is not None
        self.control_log.append(("tx", value))
        await self._device.indicate_subscriber(connection, self._control_char, value)

    async def _respond(self, connection: Connection, op: int, mtype: int, status: Status, params: bytes = b"") -> None:
        await self._indicate(connection, bytes([0xF0, op, mtype, int(status), 0x00]) + params)

    async def _handle_command(self, connection: Connection, cmd: bytes) -> None:
        async with self._command_lock:
            if not cmd:
                return
            op = cmd[0]
            mtype = cmd[1] & 0x3F if len(cmd) > 1 else 0
            if op not in (Opcode.GET_SETTINGS, Opcode.START, Opcode.STOP):
                return await self._respond(connection, op, mtype, Status.INVALID_OP_CODE)
            if len(cmd) < 2:
                return await self._respond(connection, op, mtype, Status.INVALID_LENGTH)
            if mtype != MeasurementType.ECG:
                status = Status.NOT_SUPPORTED if mtype == MeasurementType.ACC else Status.INVALID_MEASUREMENT_TYPE
                return await self._respond(connection, op, mtype, status)
            if op == Opcode.GET_SETTINGS:
                # the real H10 sends this in one indication; split in two to exercise reassembly
                await self._indicate(connection, bytes([0xF0, op, mtype, 0x00, 0x01]) + H10_ECG_SETTINGS[:4])
                await self._indicate(connection, bytes([0xF0, op, mtype, 0x00, 0x00]) + H10_ECG_SETTINGS[4:])
            elif op == Opcode.START:
                await self._handle_start(connection, cmd)
            else:
                if self.streaming:
                    self._stop_streaming()
                    await self._respond(connection, op, mtype, Status.OK)
                else:
                    await self._respond(connection, op, mtype, Status.ALREADY_IN_STATE)

    async def _handle_start(self, connection: Connection, cmd: bytes) -> None:
        op, mtype = Opcode.START, MeasurementType.ECG
        settings = parse_settings(cmd[2:])
        if connection.att_mtu < self.min_mtu:
            status = Status.INVALID_MTU
        elif SettingType.SAMPLE_RATE not in settings or SettingType.RESOLUTION not in settings:
            status = Status.INVALID_PARAMETER
        elif settings[SettingType.SAMPLE_RATE] != [H10_SAMPLE_RATE_HZ]:
            status = Status.INVALID_SAMPLE_RATE
        elif settings[SettingType.RESOLUTION] != [H10_RESOLUTION_BITS]:
            status = Status.INVALID_RESOLUTION
        elif self.streaming:
            status = Status.ALREADY_IN_STATE
        else:
            await self._respond(connection, op, mtype, Status.OK, b"\x00")  # F0 02 00 00 00 00
            if self._link is not None and self._link.connection is connection:
                self._start_streaming(self._link)
            return
        await self._respond(connection, op, mtype, status)

    # ------------------------------------------------------------------ ECG streaming

    def _start_streaming(self, link: _Link) -> None:
        self.streaming = True
        self._next_sample = int(math.floor(self.physical_time_s() * self.true_fs_hz)) + 1
        self._stream_task = self._spawn(self._stream(link))

    def _stop_streaming(self) -> None:
        self.streaming = False
        task, self._stream_task = self._stream_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _frame_dropped(self, index: int) -> bool:
        if index in self.drop_frames:
            return True
        return self.drop_probability > 0 and bool(self._rng.random() < self.drop_probability)

    async def _stream(self, link: _Link) -> None:
        assert self._device is not None and self._data_char is not None
        n = samples_per_frame(link.connection.att_mtu)
        total = self.ecg.samples_uv.shape[0]
        while self.streaming and self._link is link:
            first = self._next_sample
            last = first + n - 1
            await self._sleep_until_physical(self.sample_time_s(last))
            self._next_sample = last + 1
            index = self._frame_counter
            self._frame_counter += 1
            samples = self.ecg.samples_uv[np.arange(first, last + 1) % total].copy()
            ts = self.timestamp_ns(last)
            payload = encode_ecg_frame(ts, samples)
            copies = 0
            if link.data_subscribed and not self._frame_dropped(index):
                copies = 2 if index in self.duplicate_frames else 1
                for _ in range(copies):
                    await self._device.notify_subscriber(link.connection, self._data_char, payload)
            self.frames.append(SentFrame(index, first, ts, samples, copies > 0, copies, link.number))
            if self.stop_after_frames is not None and self._frame_counter >= self.stop_after_frames:
                self.stop_after_frames = None
                self._stop_streaming()
                await self._indicate(link.connection, bytes([0x01, MeasurementType.ECG]))
                return
            if self.silent_after_frames is not None and self._frame_counter >= self.silent_after_frames:
                self.silent_after_frames = None
                self.streaming = False  # no indication, link up: the central hears nothing more
                return
            if self.disconnect_after_frames is not None and self._frame_counter >= self.disconnect_after_frames:
                self.disconnect_after_frames = None
                self._spawn(link.connection.disconnect())
                return

    # ------------------------------------------------------------------ heart rate

    def _beat_sample(self, j: int) -> int:
        """Physical sample index of beat ``j`` of the looped record (j may be negative)."""
        nb = self._r_peaks.shape[0]
        return int(self._r_peaks[j % nb]) + (j // nb) * int(self.ecg.samples_uv.shape[0])

    async def _heart_rate_loop(self, link: _Link) -> None:
        assert self._device is not None and self._hr_char is not None
        if self._r_peaks.shape[0] < 2:
            return  # a signal shorter than two beats has no RR intervals
        # beats before this subscription (e.g. during a link outage) are not reported
        now_k = self.physical_time_s() * self.true_fs_hz
        nb, total = self._r_peaks.shape[0], self.ecg.samples_uv.shape[0]
        j = int(now_k // total) * nb
        while self._beat_sample(j) <= now_k or self._beat_sample(j - 1) < 0:
            j += 1  # the first RR needs a previous beat after power-on
        self._beat_cursor = j
        bpm = 0
        tau = self.physical_time_s()
        while self._link is link and link.heart_rate_subscribed:
            tau += self.heart_rate_interval_s
            await self._sleep_until_physical(tau)
            end_k = tau * self.true_fs_hz
            rr = []
            while self._beat_sample(self._beat_cursor) <= end_k:
                j = self._beat_cursor
                rr.append((self._beat_sample(j) - self._beat_sample(j - 1)) / self.true_fs_hz)
                self._beat_cursor += 1
            rr_q = [round(r * 1024) / 1024 for r in rr]
            if rr:
                bpm = int(round(60.0 / float(np.mean(rr))))
            payload = encode_heart_rate(bpm, rr_q)
            if self._link is link and link.heart_rate_subscribed:
                await self._device.notify_subscriber(link.connection, self._hr_char, payload)
                self.heart_rates.append(SentHeartRate(tau, bpm, rr_q, payload))


# ----------------------------------------------------------------------------- both ends in one process

@contextlib.asynccontextmanager
async def emulated_h10(ecg: EmulatedEcg | None = None, *, central_mtu: int = DEFAULT_CENTRAL_MTU,
                       **options) -> AsyncIterator[tuple[str, type[BumbleBleakClient], EmulatedPolarH10]]:
    """Build a ``LocalLink``, an advertising :class:`EmulatedPolarH10` (``options`` are its keyword
    arguments) and a bleak backend class for a central requesting ``central_mtu`` bytes.

    Usage::

        async with emulated_h10(ecg, speed=20, drop_frames={5}) as (address, backend, sensor):
            source = PolarH10Source(address, backend=backend, clock=sensor.host_clock)
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def ignore_teardown_race(lp: asyncio.AbstractEventLoop, context: dict) -> None:
        # bumble's Host answers an HCI command-complete whose waiter was already resolved or cancelled
        # when both emulated controllers are powered off at once; harmless, but noisy on stderr
        if isinstance(context.get("exception"), asyncio.InvalidStateError) and "on_packet" in str(context.get("handle")):
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(ignore_teardown_race)
    link = LocalLink()
    sensor = EmulatedPolarH10(link, ecg, **options)
    await sensor.start()
    backend = bumble_backend(link, central_mtu=central_mtu)
    try:
        yield sensor.address, backend, sensor
    finally:
        await sensor.close()
        central = backend.central.device if backend.central is not None else None
        if central is not None:
            await central.power_off()
        await asyncio.sleep(0.05)  # let late HCI events of the teardown arrive while the filter is on
        loop.set_exception_handler(previous)


__all__ = ["EmulatedPolarH10", "EmulatedEcg", "SentFrame", "SentHeartRate", "emulated_h10", "load_mitdb_ecg",
           "H10_FEATURES", "H10_ECG_SETTINGS"]
