"""An AT port's line stream that reopens itself: the I/O half of `AtEngine`.

`LinePort` opens the serial URL, frames what it reads into lines for `_dispatch`, and,
when the port fails, calls `_port_lost`, tells the connection handlers and reopens the
same URL with `Backoff` until it works again (a USB modem re-enumerating, a pty
re-created behind a stable symlink, a TCP server restarting).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

import serial

from bridge.at.framer import Line, LineFramer
from bridge.at.stats import AtStats
from bridge.at.trace import DEFAULT_MAX_BYTES, Transcript
from bridge.at.transport import SerialConnection, open_serial
from bridge.backoff import Backoff
from bridge.errors import PortLost, TranscriptError

__all__ = ["ConnectionHandler", "LinePort"]

log = logging.getLogger(__name__)

ConnectionHandler = Callable[[bool], None]


class LinePort(ABC):
    """The port, its framer and its reconnection; subclasses handle the lines."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int,
        reconnect_initial: float,
        reconnect_max: float,
        max_line: int,
        trace_file: str | None = None,
        trace_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.port = url
        self.stats = AtStats()
        self._baudrate = baudrate
        self._reconnect = Backoff(reconnect_initial, reconnect_max)
        self._max_line = max_line
        self._framer = LineFramer(max_line)
        self._connection_handlers: list[ConnectionHandler] = []
        self._connection: SerialConnection | None = None
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._closing = False
        self._opened_at = 0.0
        self.trace = (
            None if not trace_file else Transcript(trace_file, port=url, max_bytes=trace_max_bytes)
        )

    def add_connection_handler(self, handler: ConnectionHandler) -> None:
        """Call `handler(False)` when the port is lost and `handler(True)` once re-opened."""
        self._connection_handlers.append(handler)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Return once the port is open (at once when it is)."""
        if self._closing:
            raise PortLost(f"AT engine on {self.port} is closed")
        await self._connected.wait()

    def _start_trace(self) -> None:
        if self.trace is None:
            return
        try:
            self.trace.open()
        except OSError as exc:
            raise TranscriptError(
                f"cannot write the AT transcript {self.trace.path} of {self.port}: {exc}; "
                "check the path and its directory's permissions"
            ) from exc

    # -- for the subclass ------------------------------------------------------------------

    @abstractmethod
    def _dispatch(self, text: str) -> None:
        """One complete line read from the port."""

    @abstractmethod
    def _port_lost(self, exc: PortLost) -> None:
        """The port failed: whatever waits on it must be told `exc`."""

    @abstractmethod
    def _port_reopened(self) -> None:
        """The port is open again, before the connection handlers hear of it."""

    # -- incoming bytes (hot path) ---------------------------------------------------------

    def _on_data(self, connection: SerialConnection, data: bytes) -> None:
        if connection is not self._connection:
            return
        self.stats.bytes_read += len(data)
        dispatch = self._dispatch
        trace = self.trace
        for event in self._framer.feed(data):
            if isinstance(event, Line):
                if trace is not None:
                    trace.received(event.text)
                dispatch(event.text)
            else:
                self.stats.overflows += 1
                if trace is not None:
                    trace.event(f"overlong line dropped ({event.dropped} bytes)")
                log.warning(
                    "AT port %s: dropped an overlong line (%d bytes > %d)",
                    self.port,
                    event.dropped,
                    self._max_line,
                )

    # -- opening, loss and reconnection ----------------------------------------------------

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, open_serial, self.port, self._baudrate)
        try:
            port = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # Closed while opening: the port still opens in its thread; close it there.
            opening.add_done_callback(_close_opened_port)
            raise
        except (OSError, ValueError) as exc:  # SerialException is an OSError
            raise PortLost(f"cannot open modem port {self.port}: {exc}") from exc
        connection = SerialConnection(port, loop, self._on_data, self._on_port_lost)
        # A partial line from before the loss must not be glued to the first new one.
        self._framer = LineFramer(self._max_line)
        self._connection = connection
        connection.start()
        self._opened_at = time.monotonic()
        self._lost.clear()
        self._connected.set()
        if self.trace is not None:
            self.trace.event(f"port opened at {self._baudrate} baud")

    def _on_port_lost(self, connection: SerialConnection, exc: BaseException) -> None:
        if connection is not self._connection or self._closing:
            return
        log.warning("AT port %s lost: %s", self.port, exc)
        if self.trace is not None:
            self.trace.event(f"port lost: {exc}")
        self._connected.clear()
        self._port_lost(PortLost(f"modem port {self.port} was lost: {exc}"))
        self._lost.set()
        self._notify_connection(False)

    async def _reconnect_forever(self) -> None:
        backoff = self._reconnect
        while True:
            await self._lost.wait()
            await self._drop_connection()
            # A port that fails again soon after reopening (a flapping USB link) keeps
            # backing off instead of being reopened several times a second.
            if time.monotonic() - self._opened_at >= backoff.maximum:
                backoff.reset()
            attempts = 0
            while True:
                await asyncio.sleep(backoff.next())
                attempts += 1
                try:
                    await self._open()
                except PortLost as exc:
                    log.debug("AT port %s reopen attempt %d failed: %s", self.port, attempts, exc)
                    continue
                break
            self.stats.reconnects += 1
            self._port_reopened()
            log.info("AT port %s re-opened after %d attempt(s)", self.port, attempts)
            self._notify_connection(True)

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.stop()

    def _notify_connection(self, up: bool) -> None:
        for handler in self._connection_handlers:
            try:
                handler(up)
            except Exception:
                self.stats.handler_errors += 1
                log.exception("connection handler failed on %s", up)


def _close_opened_port(opening: asyncio.Future[serial.SerialBase]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        # Off the loop: closing a socket:// port sleeps (pyserial gives the server time).
        threading.Thread(target=opening.result().close, name="at-close", daemon=True).start()
