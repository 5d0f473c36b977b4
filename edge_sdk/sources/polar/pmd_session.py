"""The PMD control point of one connection: send a command, await its reassembled response, check it.

Indications arrive through :meth:`PmdSession.on_indication` (the bleak callback; it never raises: bad
bytes become ``malformed_control`` / ``abandoned_response`` events). A sensor-initiated stop goes to
``on_stopped``. No BLE client here, only a ``write(bytes)`` coroutine, so it is tested alone.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from ...errors import LinkLostError, MtuTooSmallError, PmdError, PmdTimeoutError
from .pmd import (MIN_MTU, ControlPointAssembler, ControlResponse, MeasurementType, Opcode, SensorStopped, Status,
                  start_command)

logger = logging.getLogger(__name__)


class PmdSession:
    """Control-point traffic of one connection. ``write(command)`` sends bytes to the control point;
    ``emit(kind, **detail)`` receives events; ``on_stopped(message)`` hears sensor-initiated stops."""

    def __init__(self, write: Callable[[bytes], Awaitable[Any]], command_timeout_s: float,
                 emit: Callable[..., Any], on_stopped: Callable[[SensorStopped], None], address: str = ""):
        self._write = write
        self.command_timeout_s = float(command_timeout_s)
        self._emit = emit
        self._on_stopped = on_stopped
        self.address = address
        self.assembler = ControlPointAssembler()
        self.pending: dict[int, asyncio.Future] = {}

    def on_indication(self, data: bytes | bytearray) -> None:
        """Feed one control point indication: never raises; bad indications become events."""
        n_abandoned = self.assembler.n_abandoned
        try:
            message = self.assembler.feed(bytes(data))
        except PmdError as exc:
            logger.warning("ignoring control point indication: %s", exc)
            self._emit("malformed_control", error=str(exc), data=bytes(data).hex(" "))
            message = None
        new = min(self.assembler.n_abandoned - n_abandoned, len(self.assembler.abandoned))
        for dropped in list(self.assembler.abandoned)[len(self.assembler.abandoned) - new:]:
            self._emit("abandoned_response", head=dropped.head.hex(" "), params=dropped.params.hex(" "),
                       reason=dropped.reason)
        if isinstance(message, SensorStopped):
            self._on_stopped(message)
        elif isinstance(message, ControlResponse):
            fut = self.pending.get(int(message.opcode))
            if fut is not None and not fut.done():
                fut.set_result(message)
            else:
                logger.debug("unsolicited control response %s", message)

    def link_lost(self) -> None:
        """Fail every command still waiting for its response (the link dropped)."""
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(LinkLostError(self.address))

    async def command(self, command: bytes) -> ControlResponse:
        """Write ``command`` and await its (reassembled) response; :class:`PmdTimeoutError` after the timeout."""
        op = command[0]
        fut = asyncio.get_running_loop().create_future()
        self.pending[op] = fut
        try:
            await self._write(command)
            return await asyncio.wait_for(fut, self.command_timeout_s)
        except TimeoutError:
            raise PmdTimeoutError(f"no response to {Opcode(op).name} within {self.command_timeout_s} s: "
                                  "control point indications may be off; reconnect or power-cycle the strap "
                                  "(take it off the chest for a few seconds)") from None
        finally:
            if self.pending.get(op) is fut:
                del self.pending[op]

    @staticmethod
    def check(response: ControlResponse, what: str) -> None:
        """Raise the named error of a failed response (:class:`MtuTooSmallError`, :class:`PmdError`)."""
        if response.status == Status.INVALID_MTU:
            raise MtuTooSmallError(None, MIN_MTU)
        if not response.ok:
            raise PmdError(f"{what} failed with status {response.status.name} ({int(response.status)}); "
                           "check the sample rate / resolution and that no other app is using the strap",
                           response.status)

    async def start_ecg(self, sample_rate: int, resolution: int = 14) -> bool:
        """Send START for ECG; ``False`` (and an ``already_streaming`` event) when the sensor was streaming."""
        response = await self.command(start_command(MeasurementType.ECG, sample_rate, resolution))
        if response.status == Status.ALREADY_IN_STATE:
            self._emit("already_streaming", address=self.address)
            return False
        self.check(response, "START")
        return True
