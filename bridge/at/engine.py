"""The asyncio AT engine: one command at a time, final result codes, URC routing.

`await engine.command("AT+CSQ")` returns the command's information lines or raises
`ModemError`, `AtTimeout` or `PortLost`; `submit` queues one without a task switch. Every
line read goes to exactly one place: the running command, a URC handler (by prefix) or
the unsolicited handlers. After a timeout or a reconnect, `RESYNC_PROBE` skips any late
reply before the next command. The port and its reopening: `bridge.at.port.LinePort`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from bridge.at.framer import DEFAULT_MAX_LINE
from bridge.at.port import LinePort
from bridge.at.results import FinalResult, parse_final_result
from bridge.at.stats import AtStats
from bridge.at.trace import DEFAULT_MAX_BYTES
from bridge.at.transport import SerialConnection
from bridge.errors import AtTimeout, ModemError, PortLost

__all__ = ["RESYNC_PROBE", "AtEngine", "AtStats", "owned_prefix"]

log = logging.getLogger(__name__)

# Its "+CMEE:" line tells the probe's own reply from a late one of an abandoned command.
RESYNC_PROBE = "AT+CMEE?"
# "AT+GTCOAPOPEN=..." owns "+GTCOAPOPEN:"; also "AT^FOO", "AT$FOO", "AT%FOO" styles.
_COMMAND_NAME = re.compile(r"AT([+^$%][A-Z0-9_]+)", re.IGNORECASE)

UrcHandler = Callable[[str], None]


def owned_prefix(command: str) -> str | None:
    """The information-line prefix `command` answers with (``+FOO:`` for ``AT+FOO=1``)."""
    match = _COMMAND_NAME.match(command)
    return f"{match.group(1).upper()}:" if match else None


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
    # loop.time() by which its final result must have come (set when written).
    deadline: float = 0.0


class AtEngine(LinePort):
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
        trace_file: str | None = None,
        trace_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(
            url,
            baudrate=baudrate,
            reconnect_initial=reconnect_initial,
            reconnect_max=reconnect_max,
            max_line=max_line,
            trace_file=trace_file,
            trace_max_bytes=trace_max_bytes,
        )
        self._command_timeout = command_timeout
        self._urc_handlers: list[tuple[str, UrcHandler]] = []
        self._urc_prefixes: tuple[str, ...] = ()
        self._unsolicited_handlers: list[UrcHandler] = []
        self._queue: deque[_Pending] = deque()
        self._pending: _Pending | None = None
        self._needs_resync = False
        # One timer for the deadline of the command on the wire, left armed across
        # commands: a command answered in time costs no timer of its own (arming and
        # cancelling one per command, most of them still in the loop's heap seconds
        # later, cost more than the rest of writing it). When it fires it expires the
        # command on the wire if that one's deadline has come, else it is armed again.
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def queued_bytes(self) -> int:
        """Bytes of the commands waiting for the line, the one on it included."""
        waiting = sum(len(pending.command) for pending in self._queue)
        return waiting + (len(self._pending.command) if self._pending is not None else 0)

    # -- lifetime --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._start_trace()
        try:
            await self._open()
        except BaseException:
            if self.trace is not None:
                self.trace.close()
            raise
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._supervisor = self._tasks.create_task(self._reconnect_forever())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
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
            if self.trace is not None:
                self.trace.close()

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
        loop = asyncio.get_running_loop()
        pending.deadline = loop.time() + pending.limit
        self._arm(loop, pending.deadline)
        self._pending = pending
        data = pending.command.encode() + b"\r"
        self.stats.commands += 1
        self.stats.bytes_written += len(data)
        if self.trace is not None:
            self.trace.sent(pending.command)
        # A failing write reports the port lost from inside this call: _fail_all then
        # settles this command and the queue.
        connection.write(data)

    def _finished(self, pending: _Pending, final: FinalResult) -> None:
        self._pending = None
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

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        timer = self._deadline_timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # fires first and arms itself again for this deadline
            timer.cancel()
        self._deadline_timer = loop.call_at(deadline, self._deadline_due)

    def _deadline_due(self) -> None:
        self._deadline_timer = None
        pending = self._pending
        if pending is None:
            return
        loop = asyncio.get_running_loop()
        # Early by up to the loop's clock resolution, it is armed again and runs on the
        # next turn; later than the deadline only for a command sent after it was armed.
        if loop.time() >= pending.deadline:
            self._expire(pending)
        else:
            self._arm(loop, pending.deadline)

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
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        waiting = [pending, *self._queue] if pending is not None else list(self._queue)
        self._queue.clear()
        for entry in waiting:
            if entry.future is not None and not entry.future.done():
                entry.future.set_exception(exc)

    # -- incoming lines (hot path) ---------------------------------------------------------

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

    # -- the port's callbacks -------------------------------------------------------------

    def _port_lost(self, exc: PortLost) -> None:
        self._fail_all(exc)

    def _port_reopened(self) -> None:
        # Replies to commands sent before the loss may still be in flight.
        self._needs_resync = True
