"""The asyncio AT engine: one command at a time, final result codes, URC routing.

Commands wait in a FIFO and go on the wire one at a time. The next one is written from
the read callback the moment the previous one's final result code is parsed, before any
task runs: on a slow line every task switch between an OK and the next command would be
idle line time.

Every line read from the port goes to exactly one place:

* the running command: its echo (dropped), its final result code (ends it), its
  information lines (any line that is no URC, and lines with the command's own prefix,
  ``+FOO:`` for ``AT+FOO...``, even when that prefix is registered as a URC);
* a URC handler, by registered prefix, at any time, even in the middle of a reply;
* the unsolicited handlers: everything else that arrives while no command runs (boot
  lines, a late reply to a timed-out command, garbage).

After a command times out (or its caller is cancelled) its reply may still arrive, so
before the next command the engine resyncs: it sends ``AT+CMEE?`` and passes every line
to the unsolicited handlers until that probe's own ``+CMEE:`` line and final result have
been seen. The modem answers commands in order, so anything older has been flushed.

A command whose caller is cancelled stays on the wire until its final result (or its
timeout): its reply is read and dropped, so it cannot be taken for the next command's.

When the port fails the engine fails the running and queued commands with `PortLost`,
tells the connection handlers, and reopens the same URL with exponential backoff until it
works again (a USB modem re-enumerating, a pty re-created behind a stable symlink, a TCP
server restarting).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import serial

from bridge.at.framer import DEFAULT_MAX_LINE, Line, LineFramer
from bridge.at.results import FinalResult, parse_final_result
from bridge.at.transport import SerialConnection, open_serial
from bridge.errors import AtTimeout, ModemError, PortLost

__all__ = ["RESYNC_PROBE", "AtEngine", "AtStats", "owned_prefix"]

log = logging.getLogger(__name__)

# Its "+CMEE:" line tells the probe's own reply from a late one of an abandoned command.
RESYNC_PROBE = "AT+CMEE?"
# "AT+GTCOAPOPEN=..." owns "+GTCOAPOPEN:"; also "AT^FOO", "AT$FOO", "AT%FOO" styles.
_COMMAND_NAME = re.compile(r"AT([+^$%][A-Z0-9_]+)", re.IGNORECASE)

UrcHandler = Callable[[str], None]
ConnectionHandler = Callable[[bool], None]


def owned_prefix(command: str) -> str | None:
    """The information-line prefix `command` answers with (``+FOO:`` for ``AT+FOO=1``)."""
    match = _COMMAND_NAME.match(command)
    return f"{match.group(1).upper()}:" if match else None


@dataclass(slots=True)
class AtStats:
    """Counters for health reporting; they only ever grow."""

    bytes_read: int = 0
    bytes_written: int = 0
    lines: int = 0
    urcs: int = 0
    overflows: int = 0
    unsolicited: int = 0
    timeouts: int = 0
    reconnects: int = 0
    commands: int = 0
    echoes: int = 0
    resyncs: int = 0
    handler_errors: int = 0


@dataclass(slots=True, eq=False)
class _Pending:
    """A command queued or on the wire, waiting for its final result code."""

    command: str
    owned: str | None
    limit: float
    # Information lines on OK, ModemError on an error result; None for the resync probe.
    future: asyncio.Future[list[str]] | None
    lines: list[str] = field(default_factory=list)
    # The resync probe: the queued command it clears the way for.
    probe_for: _Pending | None = None
    # For the resync probe: its own "+CMEE:" line has been seen.
    marked: bool = False
    timer: asyncio.TimerHandle | None = None


class AtEngine:
    """An AT command port: ``async with AtEngine("/dev/ttyUSB2") as at: await at.command("AT")``."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        command_timeout: float = 5.0,
        reconnect_initial: float = 0.2,
        reconnect_max: float = 5.0,
        max_line: int = DEFAULT_MAX_LINE,
    ) -> None:
        self.port = url
        self.stats = AtStats()
        self._baudrate = baudrate
        self._command_timeout = command_timeout
        self._reconnect_initial = reconnect_initial
        self._reconnect_max = reconnect_max
        self._max_line = max_line
        self._framer = LineFramer(max_line)
        self._urc_handlers: list[tuple[str, UrcHandler]] = []
        self._urc_prefixes: tuple[str, ...] = ()
        self._unsolicited_handlers: list[UrcHandler] = []
        self._connection_handlers: list[ConnectionHandler] = []
        self._connection: SerialConnection | None = None
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._queue: deque[_Pending] = deque()
        self._pending: _Pending | None = None
        self._needs_resync = False
        self._closing = False
        self._opened_at = 0.0
        self._tasks: asyncio.TaskGroup | None = None
        self._supervisor: asyncio.Task[None] | None = None

    # -- lifetime --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._open()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._supervisor = self._tasks.create_task(self._reconnect_forever())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        self._fail_all(PortLost(f"AT engine on {self.port} is closed"))
        try:
            if self._tasks is not None:
                # Not the body's exception: it must propagate as it is, not in a group.
                await self._tasks.__aexit__(None, None, None)
        finally:
            await self._drop_connection()
            self._connected.clear()

    # -- registration ----------------------------------------------------------------------

    def add_urc_handler(self, prefix: str, handler: UrcHandler) -> None:
        """Send every line starting with `prefix` to `handler` (unless a command owns it)."""
        if not prefix:
            raise ValueError("a URC prefix must not be empty")
        self._urc_handlers.append((prefix, handler))
        self._urc_prefixes = tuple(p for p, _ in self._urc_handlers)

    def add_unsolicited_handler(self, handler: UrcHandler) -> None:
        """Send every line nobody else takes to `handler` (boot lines, late replies)."""
        self._unsolicited_handlers.append(handler)

    def add_connection_handler(self, handler: ConnectionHandler) -> None:
        """Call `handler(False)` when the port is lost and `handler(True)` once re-opened."""
        self._connection_handlers.append(handler)

    # -- state -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Return once the port is open (at once when it is)."""
        if self._closing:
            raise PortLost(f"AT engine on {self.port} is closed")
        await self._connected.wait()

    # -- commands --------------------------------------------------------------------------

    # The contract's signature: a per-command limit the engine enforces with its own timer.
    async def command(self, cmd: str, *, timeout: float | None = None) -> list[str]:  # noqa: ASYNC109
        """Run `cmd` and return its information lines.

        Raises `ModemError` for an error result code, `AtTimeout` when no final result
        code arrives within `timeout` (default: the engine's command_timeout) once it is
        on the wire, and `PortLost` at once when the port is gone or goes away meanwhile.
        """
        return await self.submit(cmd, timeout=timeout)

    def submit(self, cmd: str, *, timeout: float | None = None) -> asyncio.Future[list[str]]:
        """Queue `cmd` behind the commands already waiting; the future settles as
        `command` returns or raises. Queueing the next command before the current one
        ends lets the engine write it without a task switch in between."""
        if "\r" in cmd or "\n" in cmd:
            raise ValueError(f"an AT command is one line; {cmd!r} has a line break")
        self._live_connection(cmd)
        limit = self._command_timeout if timeout is None else timeout
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(cmd, owned_prefix(cmd), limit, future))
        if self._pending is None:
            self._start_next()
        return future

    def _live_connection(self, cmd: str) -> SerialConnection:
        if self._closing:
            raise PortLost(f"AT engine on {self.port} is closed; cannot send {cmd!r}")
        connection = self._connection
        if connection is None or not self._connected.is_set():
            raise PortLost(f"modem port {self.port} is not available; cannot send {cmd!r}")
        return connection

    def _start_next(self) -> None:
        """The wire is free: write the next queued command (the resync probe first if
        an abandoned command's reply may still come)."""
        queue = self._queue
        while self._pending is None and queue:
            head = queue[0]
            assert head.future is not None
            if head.future.done():  # its caller was cancelled while it waited
                queue.popleft()
                continue
            try:
                connection = self._live_connection(head.command)
            except PortLost as exc:
                self._fail_all(exc)
                return
            if self._needs_resync:
                self.stats.resyncs += 1
                probe = _Pending(RESYNC_PROBE, owned_prefix(RESYNC_PROBE), head.limit, None)
                probe.probe_for = head
                self._write(probe, connection)
            else:
                queue.popleft()
                self._write(head, connection)

    def _write(self, pending: _Pending, connection: SerialConnection) -> None:
        pending.timer = asyncio.get_running_loop().call_later(pending.limit, self._expire, pending)
        self._pending = pending
        data = pending.command.encode() + b"\r"
        self.stats.commands += 1
        self.stats.bytes_written += len(data)
        # A failing write reports the port lost from inside this call: _fail_all then
        # settles this command and the queue.
        connection.write(data)

    def _finished(self, pending: _Pending, final: FinalResult) -> None:
        self._pending = None
        if pending.timer is not None:
            pending.timer.cancel()
        probe_for = pending.probe_for
        if probe_for is not None:
            self._needs_resync = False
            log.info("AT port %s resynchronised before %r", self.port, probe_for.command)
        # Written before the caller hears of this result: the line must not idle.
        self._start_next()
        future = pending.future
        if future is None or future.done():
            return
        if final.ok:
            future.set_result(pending.lines)
        else:
            future.set_exception(
                ModemError(pending.command, final.text, code=final.code, text=final.message)
            )

    def _expire(self, pending: _Pending) -> None:
        if self._pending is not pending:
            return
        self._pending = None
        self._needs_resync = True
        self.stats.timeouts += 1
        limit = pending.limit
        log.warning(
            "AT command %r on %s: no final result within %g s", pending.command, self.port, limit
        )
        probe_for = pending.probe_for
        if probe_for is None:
            future = pending.future
            error = AtTimeout(
                f"modem on {self.port} did not answer {pending.command!r} within {limit:g} s; "
                "check the modem's power and the port"
            )
        else:
            # The command the probe cleared the way for is not sent: the modem is silent.
            if self._queue and self._queue[0] is probe_for:
                self._queue.popleft()
            future = probe_for.future
            error = AtTimeout(
                f"modem on {self.port} did not answer the resync probe {RESYNC_PROBE} "
                f"within {limit:g} s, so {probe_for.command!r} was not sent; check the modem"
            )
        if future is not None and not future.done():
            future.set_exception(error)
        self._start_next()

    def _fail_all(self, exc: BaseException) -> None:
        """Settle the command on the wire and every queued one with `exc`."""
        pending, self._pending = self._pending, None
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()
        waiting = [pending, *self._queue] if pending is not None else list(self._queue)
        self._queue.clear()
        for entry in waiting:
            if entry.future is not None and not entry.future.done():
                entry.future.set_exception(exc)

    # -- incoming lines (hot path) ---------------------------------------------------------

    def _on_data(self, connection: SerialConnection, data: bytes) -> None:
        if connection is not self._connection:
            return
        self.stats.bytes_read += len(data)
        dispatch = self._dispatch
        for event in self._framer.feed(data):
            if isinstance(event, Line):
                dispatch(event.text)
            else:
                self.stats.overflows += 1
                log.warning(
                    "AT port %s: dropped an overlong line (%d bytes > %d)",
                    self.port,
                    event.dropped,
                    self._max_line,
                )

    def _dispatch(self, text: str) -> None:
        self.stats.lines += 1
        pending = self._pending
        if pending is None:
            if not (self._urc_prefixes and self._route_urc(text)):
                self._unsolicited(text)
            return
        if text == pending.command:
            self.stats.echoes += 1
            return
        final = parse_final_result(text)
        probing = pending.probe_for is not None
        if final is not None:
            if probing and not pending.marked:
                self._unsolicited(text)  # a late final result of an abandoned command
                return
            self._finished(pending, final)
            return
        owned = pending.owned
        if owned is not None and text.startswith(owned):
            if probing:
                pending.marked = True
            else:
                pending.lines.append(text)
            return
        if self._urc_prefixes and self._route_urc(text):
            return
        if probing:
            self._unsolicited(text)
        else:
            pending.lines.append(text)

    def _route_urc(self, text: str) -> bool:
        if not text.startswith(self._urc_prefixes):
            return False
        self.stats.urcs += 1
        for prefix, handler in self._urc_handlers:
            if text.startswith(prefix):
                try:
                    handler(text)
                except Exception:
                    self.stats.handler_errors += 1
                    log.exception("URC handler for %r failed on %r", prefix, text[:80])
                return True
        return True  # unreachable: some prefix matched above

    def _unsolicited(self, text: str) -> None:
        self.stats.unsolicited += 1
        log.debug("AT port %s unsolicited line %r", self.port, text[:80])
        for handler in self._unsolicited_handlers:
            try:
                handler(text)
            except Exception:
                self.stats.handler_errors += 1
                log.exception("unsolicited-line handler failed on %r", text[:80])

    # -- port loss and reconnection --------------------------------------------------------

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

    def _on_port_lost(self, connection: SerialConnection, exc: BaseException) -> None:
        if connection is not self._connection or self._closing:
            return
        log.warning("AT port %s lost: %s", self.port, exc)
        self._connected.clear()
        self._fail_all(PortLost(f"modem port {self.port} was lost: {exc}"))
        self._lost.set()
        self._notify_connection(False)

    async def _reconnect_forever(self) -> None:
        delay = self._reconnect_initial
        while True:
            await self._lost.wait()
            await self._drop_connection()
            # A port that fails again soon after reopening (a flapping USB link) keeps
            # backing off instead of being reopened several times a second.
            if time.monotonic() - self._opened_at >= self._reconnect_max:
                delay = self._reconnect_initial
            attempts = 0
            while True:
                await asyncio.sleep(delay)
                attempts += 1
                try:
                    await self._open()
                except PortLost as exc:
                    log.debug("AT port %s reopen attempt %d failed: %s", self.port, attempts, exc)
                    delay = min(delay * 2, self._reconnect_max)
                    continue
                break
            delay = min(delay * 2, self._reconnect_max)
            # Replies to commands sent before the loss may still be in flight.
            self._needs_resync = True
            self.stats.reconnects += 1
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
