"""The Fibocom L610 driver: GTCOAP client instances and datagrams, ready or not.

`async with L610(at) as modem:` runs bring-up, then `open`/`send`/`close` work on the
modem's CoAP client instances and `+GTCOAPDATA` URCs reach the datagram handler with
their coap_id. A modem reset (boot lines, port loss, echo back on, lost settings, no
answer) bumps `generation` and tells the reset listeners once; until the supervisor
(`bridge.modem.l610.supervisor`) has brought it up again every operation raises
`ModemUnavailable` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from bridge.at.engine import AtEngine
from bridge.errors import AtTimeout, MalformedUrc, ModemUnavailable, UnexpectedReply
from bridge.modem.driver import Datagram
from bridge.modem.health import ModemHealth, ModemIdentity
from bridge.modem.l610.bringup import BringUp
from bridge.modem.l610.codec import (
    COAP_CLOSE_PREFIX,
    COAP_DATA_PREFIX,
    MAX_DATAGRAM,
    MIPCALL_PREFIX,
    format_close,
    format_open,
    format_send,
    parse_coap_data,
    parse_free_ids,
    parse_mipcall,
    parse_open,
)
from bridge.modem.l610.supervisor import ModemSupervisor
from bridge.modem.l610.unsolicited import BOOT_PREFIXES, Unsolicited, classify

logger = logging.getLogger(__name__)

DatagramHandler = Callable[[Datagram], None]
ResetListener = Callable[[], None]


# The driver registry's key for this driver (`modem.model` in the config).
MODEL = "l610"
# 2**(4+4) = 256-byte blocks: a block plus header, token and options stays well under
# the 512-byte datagram limit, which SZX 5 (512-byte payloads) cannot.
BLOCK_SIZE_EXP = 4


class L610:
    """One L610 modem behind an `AtEngine`; see the module docstring."""

    def __init__(
        self,
        at: AtEngine,
        *,
        name: str = "",
        apn: str = "",
        command_timeout: float = 5.0,
        registration_timeout: float = 60.0,
        pdp_timeout: float = 30.0,
        probe_interval: float = 30.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        boot_settle: float = 0.3,
    ) -> None:
        self._at = at
        self._name = name or at.port
        self._command_timeout = command_timeout
        self._bring_up = BringUp(
            at,
            apn=apn,
            command_timeout=command_timeout,
            registration_timeout=registration_timeout,
            pdp_timeout=pdp_timeout,
        )
        self._supervisor = ModemSupervisor(
            self,
            at,
            self._bring_up,
            probe_interval=probe_interval,
            retry_initial=retry_initial,
            retry_max=retry_max,
            boot_settle=boot_settle,
        )
        self._identity = ModemIdentity("", "", "", None, registered=False, ip=None)
        self._ready = False
        self._ready_event = asyncio.Event()
        # True while no instance can exist (before bring-up completes): a reset then
        # costs nothing and does not start a new generation.
        self._lost = True
        self._closed = False
        self._state = "starting"
        self._generation = 0
        self._resets = 0
        self._malformed_urcs = 0
        self._unknown_lines = 0
        self._datagrams_in = 0
        self._echoes_at_ready = 0
        self._datagram_handler: DatagramHandler | None = None
        self._reset_listeners: list[ResetListener] = []
        self._close_lock = asyncio.Lock()
        self._close_waiter: asyncio.Future[str] | None = None
        self._supervision: asyncio.Task[None] | None = None

    # -- lifetime ---------------------------------------------------------------------

    async def __aenter__(self) -> L610:
        at = self._at
        at.add_urc_handler(COAP_DATA_PREFIX, self._on_coap_data)
        at.add_urc_handler(COAP_CLOSE_PREFIX, self._on_close_confirmation)
        at.add_urc_handler(MIPCALL_PREFIX, self._on_pdp_urc)
        for prefix in BOOT_PREFIXES:
            at.add_urc_handler(prefix, self._on_boot_line)
        at.add_unsolicited_handler(self._on_unsolicited)
        at.add_connection_handler(self._on_connection)
        self._state = "bring-up"
        try:
            await self._supervisor.bring_up()
        except BaseException:
            self._closed = True
            raise
        self._supervision = asyncio.create_task(
            self._supervisor.run(), name=f"l610-supervisor {at.port}"
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # The engine keeps our handlers (it has no removal); `_closed` turns them off.
        self._closed = True
        self._set_not_ready("closed")
        self._fail_close_waiter("the driver was closed")
        if self._supervision is not None:
            self._supervision.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervision

    # -- state ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def generation(self) -> int:
        """Bumped on each reset or port loss: every coap_id opened before is gone."""
        return self._generation

    @property
    def port(self) -> str:
        return self._at.port

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        return MODEL

    @property
    def max_datagram(self) -> int:
        return MAX_DATAGRAM

    @property
    def block_size_exp(self) -> int:
        return BLOCK_SIZE_EXP

    @property
    def line_backlog(self) -> int:
        """Bytes of AT commands waiting for the serial line."""
        return self._at.queued_bytes

    # The contract's signature; the limit is enforced with asyncio.timeout below.
    async def wait_ready(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                await self._ready_event.wait()
        except TimeoutError:
            raise ModemUnavailable(
                f"modem on {self.port} not ready after {timeout:g} s ({self._state})"
            ) from None

    def health(self) -> ModemHealth:
        identity = self._identity
        return ModemHealth(
            port=self.port,
            model=identity.model,
            firmware=identity.firmware,
            imei=identity.imei,
            ready=self._ready,
            registered=identity.registered and self._ready,
            rssi_dbm=identity.rssi_dbm,
            ip=identity.ip if self._ready else None,
            resets=self._resets,
            malformed_urcs=self._malformed_urcs,
            unknown_lines=self._unknown_lines,
            datagrams_in=self._datagrams_in,
            generation=self._generation,
            state=self._state,
            at_commands=self._at.stats.commands,
            at_timeouts=self._at.stats.timeouts,
            bytes_in=self._at.stats.bytes_read,
            bytes_out=self._at.stats.bytes_written,
        )

    def set_datagram_handler(self, handler: DatagramHandler) -> None:
        self._datagram_handler = handler

    def add_reset_listener(self, handler: ResetListener) -> None:
        self._reset_listeners.append(handler)

    # -- client instances -------------------------------------------------------------

    async def open(self, host: str, port: int) -> int:
        """Create a client instance bound to (host, port); returns its coap_id."""
        command = format_open(host, port)
        generation = self._require_ready(f"open an instance to {host}:{port}")
        coap_id = parse_open(await self.command(command))
        if generation != self._generation:
            raise ModemUnavailable(
                f"modem on {self.port} was reset while opening an instance to {host}:{port}"
            )
        logger.info(
            "opened an instance to %s:%d on %s", host, port, self.port, extra={"coap_id": coap_id}
        )
        return coap_id

    async def send(self, coap_id: int, datagram: bytes) -> None:
        """Hand one datagram to instance `coap_id`; OK means it left, not that it arrived."""
        await self.submit_send(coap_id, datagram)

    def submit_send(self, coap_id: int, datagram: bytes) -> asyncio.Future[list[str]]:
        """Queue one datagram behind the commands already waiting; the future settles
        with the modem's OK or its error. Raises at once when the modem is not ready or
        the datagram cannot go at all (`DatagramTooLarge`)."""
        # Hot path: one formatted string, one queued command, nothing else.
        command = format_send(coap_id, datagram)
        if not self._ready:
            raise self._not_ready(f"send on coap_id={coap_id}")
        future = self._at.submit(command, timeout=self._command_timeout)
        future.add_done_callback(self._check_echo)
        return future

    async def close(self, coap_id: int) -> None:
        """Free instance `coap_id`, waiting for the `+GTCOAPCLOSE: 1` that trails the OK."""
        self._require_ready(f"close coap_id={coap_id}")
        # The confirmation carries no id, so closes run one at a time to pair them.
        async with self._close_lock:
            waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._close_waiter = waiter
            try:
                lines = await self.command(format_close(coap_id))
                early = [line for line in lines if line.startswith(COAP_CLOSE_PREFIX)]
                confirmation = early[0] if early else await self._wait_close(coap_id, waiter)
            finally:
                self._close_waiter = None
        result = confirmation[len(COAP_CLOSE_PREFIX) :].strip()
        if result != "1":
            logger.warning(
                "instance close confirmed with %r on %s",
                result,
                self.port,
                extra={"coap_id": coap_id},
            )
        else:
            logger.info("closed an instance on %s", self.port, extra={"coap_id": coap_id})

    async def free_instance_ids(self) -> list[int]:
        """Ids the modem can still open (`AT+GTCOAPOPEN?`); [] when none is free."""
        self._require_ready("list free instances")
        return parse_free_ids(await self.command("AT+GTCOAPOPEN?"))

    async def command(self, command: str) -> list[str]:
        """Run one AT command with the driver's timeout (the supervisor's probes use it)."""
        try:
            return await self._at.command(command, timeout=self._command_timeout)
        finally:
            self._check_echo()

    def _check_echo(self, _: object = None) -> None:
        # ATE0 is part of bring-up: an echo seen since means the modem restarted
        # without a boot line reaching us (two attribute reads, fine on the hot path).
        if self._at.stats.echoes != self._echoes_at_ready and self._ready:
            self.declare_lost("modem echoes commands again (echo is back on): it restarted")

    async def _wait_close(self, coap_id: int, waiter: asyncio.Future[str]) -> str:
        try:
            async with asyncio.timeout(self._command_timeout):
                return await waiter
        except TimeoutError:
            raise AtTimeout(
                f"modem on {self.port} answered OK to AT+GTCOAPCLOSE={coap_id} but sent no "
                f"+GTCOAPCLOSE confirmation within {self._command_timeout:g} s"
            ) from None

    def _require_ready(self, what: str) -> int:
        if not self._ready:
            raise self._not_ready(what)
        return self._generation

    def _not_ready(self, what: str) -> ModemUnavailable:
        return ModemUnavailable(f"modem on {self.port} is not ready ({self._state}); cannot {what}")

    # -- engine callbacks (called by the engine, on the event loop) ---------------------

    def _on_coap_data(self, line: str) -> None:
        if self._closed:
            return
        try:
            datagram = parse_coap_data(line)
        except MalformedUrc as exc:
            self._malformed_urcs += 1
            logger.warning(
                "dropped %s on %s (malformed_urcs=%d)", exc, self.port, self._malformed_urcs
            )
            return
        self._datagrams_in += 1
        handler = self._datagram_handler
        if handler is None:
            logger.debug(
                "no datagram handler; dropped a datagram", extra={"coap_id": datagram.coap_id}
            )
            return
        try:
            handler(datagram)
        except Exception:
            # A bug above must not stop the engine's reader from delivering the next line.
            logger.exception("datagram handler failed", extra={"coap_id": datagram.coap_id})

    def _on_close_confirmation(self, line: str) -> None:
        waiter = self._close_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(line)
        else:
            logger.debug("unexpected %r on %s (no close waiting)", line, self.port)

    def _on_pdp_urc(self, line: str) -> None:
        if self._closed or self._bring_up.on_pdp_urc(line):
            return
        try:
            state = parse_mipcall(line)
        except UnexpectedReply:
            logger.warning("unreadable %r on %s", line, self.port)
            return
        if not state.active and self._ready:
            # Instances ride on the PDP context: when the network drops it they are gone.
            self.declare_lost("the network released the PDP context (+MIPCALL: 0)")

    def _on_boot_line(self, line: str) -> None:
        if self._closed:
            return
        logger.warning("modem on %s printed boot line %r: it restarted", self.port, line)
        self._supervisor.boot_line_seen()
        self.declare_lost(f"modem restarted ({line!r}); bring-up pending")

    def _on_unsolicited(self, line: str) -> None:
        kind = classify(line)
        if kind is Unsolicited.BOOT:
            self._on_boot_line(line.strip())
        elif kind is Unsolicited.UNKNOWN and not self._closed:
            self._unknown_lines += 1
            # Firmware may repeat its own URCs forever: the first one is worth a line.
            log = logger.info if self._unknown_lines == 1 else logger.debug
            log(
                "ignored unknown line %r on %s (unknown_lines=%d)",
                line[:80],
                self.port,
                self._unknown_lines,
            )
        elif not self._closed:
            logger.debug("ignored late result %r on %s", line[:80], self.port)

    def _on_connection(self, connected: bool) -> None:
        if self._closed:
            return
        if connected:
            logger.info("port %s is back; running bring-up", self.port)
            self._supervisor.trouble.set()
        else:
            self.declare_lost("port lost; waiting for it to come back")

    # -- state changes (also made by the supervisor) ------------------------------------

    def set_state(self, state: str) -> None:
        self._state = state

    def _set_not_ready(self, state: str) -> None:
        self._ready = False
        self._ready_event.clear()
        self._state = state

    def _fail_close_waiter(self, reason: str) -> None:
        waiter = self._close_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ModemUnavailable(f"modem on {self.port}: {reason}"))

    def declare_lost(self, reason: str) -> None:
        """Something says the modem restarted: every instance is gone, bring-up is due."""
        self._set_not_ready(reason)
        self._supervisor.trouble.set()
        self._fail_close_waiter(reason)
        if self._lost:
            return
        self._lost = True
        self._generation += 1
        self._resets += 1
        logger.warning(
            "modem on %s: %s; every coap instance is lost (generation %d)",
            self.port,
            reason,
            self._generation,
        )
        for listener in list(self._reset_listeners):
            try:
                listener()
            except Exception:
                logger.exception("reset listener failed on %s", self.port)

    def became_ready(self, identity: ModemIdentity) -> None:
        self._identity = identity
        self._lost = False
        self._ready = True
        self._echoes_at_ready = self._at.stats.echoes
        self._state = "ready"
        self._ready_event.set()
        logger.info(
            "modem on %s ready: %s %s imei %s, rssi %s dBm, ip %s",
            self.port,
            identity.model,
            identity.firmware,
            identity.imei,
            identity.rssi_dbm,
            identity.ip,
        )

    def signal_checked(self, rssi_dbm: int | None, *, registered: bool) -> None:
        identity = self._identity
        self._identity = ModemIdentity(
            identity.model,
            identity.firmware,
            identity.imei,
            rssi_dbm,
            registered=registered,
            ip=identity.ip,
        )
