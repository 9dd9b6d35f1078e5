"""`ModemCoap`: CoAP requests and observations through the L610, on aiocoap.

    async with ModemCoap(modem, CoapTransportSettings()) as coap:
        response = await coap.request(Message(code=GET, uri="coap://host:5683/x"), timeout=30)

aiocoap does the CoAP work and `bridge.coap.transport` carries its datagrams; this module
wires the two together and turns aiocoap's outcomes into the bridge's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any, Self

from aiocoap import error as coap_error
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.protocol import Context
from aiocoap.tokenmanager import TokenManager

from bridge.coap.limits import ModemLimits, check_request_fits
from bridge.coap.messages import PipeliningMessageManager
from bridge.coap.observation import Observation
from bridge.coap.oscore import OscoreTransport, SecurityContexts, security_error
from bridge.coap.remote import ModemRemote, remote_of
from bridge.coap.stats import CoapStats
from bridge.coap.transport import LostInReset, ModemMessageInterface, TransportFailure
from bridge.errors import (
    BridgeError,
    Cancelled,
    CoapProtocolError,
    CoapReset,
    CoapTimeout,
    InvalidRequest,
    ModemError,
    ModemUnavailable,
)
from bridge.modem.driver import ModemDriver

logger = logging.getLogger(__name__)

# How long shutdown lets deregistrations and instance closes take.
_SHUTDOWN_GRACE = 2.0
# Methods a modem reset or failover may send again: the server's state ends the same.
IDEMPOTENT = frozenset({Code.GET, Code.FETCH, Code.PUT, Code.DELETE, Code.iPATCH})


@dataclass(frozen=True)
class CoapTransportSettings:
    """How the CoAP layer uses the modem.

    `max_instances`: GTCOAP client instances open at once (never more than the modem
    reports free). `instance_idle_close`: seconds an unused instance stays open.
    `nstart`: CON exchanges in flight at once per server (RFC 7252 NSTART; aiocoap's
    default of 1 would serialise every exchange with a server). `ack_timeout` and
    `max_retransmit`: RFC 7252 §4.8 transmission parameters for requests.
    """

    max_instances: int = 4
    instance_idle_close: float = 300.0
    nstart: int = 32
    ack_timeout: float = 2.0
    max_retransmit: int = 4

    def __post_init__(self) -> None:
        if self.max_instances < 1:
            raise ValueError(f"max_instances must be at least 1, got {self.max_instances}")
        if self.instance_idle_close <= 0:
            raise ValueError(
                f"instance_idle_close must be positive, got {self.instance_idle_close}"
            )
        if self.nstart < 1:
            raise ValueError(f"nstart must be at least 1, got {self.nstart}")
        if self.ack_timeout <= 0 or self.max_retransmit < 0:
            raise ValueError("ack_timeout must be positive and max_retransmit not negative")

    def transport_tuning(self) -> Any:
        tuning = TransportTuning()
        tuning.ACK_TIMEOUT = self.ack_timeout
        tuning.MAX_RETRANSMIT = self.max_retransmit
        return tuning


class ModemCoap:
    """CoAP client over the modem; an async context manager (see the module docstring)."""

    def __init__(
        self,
        modem: ModemDriver,
        settings: CoapTransportSettings | None = None,
        *,
        oscore: SecurityContexts | None = None,
    ) -> None:
        self._modem = modem
        self._limits = ModemLimits(modem.max_datagram, modem.block_size_exp)
        self._settings = settings or CoapTransportSettings()
        self._oscore = oscore or SecurityContexts({})
        self._tuning = self._settings.transport_tuning()
        self._stack: AsyncExitStack | None = None
        self._context: Any = None
        self._transport: ModemMessageInterface | None = None
        self._mman: PipeliningMessageManager | None = None
        self._observations: set[Observation] = set()
        self._requests_in_flight = 0
        self._requests = 0
        self._closing = False

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        # What Context._append_tokenmanaged_messagemanaged_transport does for aiocoap's
        # own UDP transport, with our message manager (NSTART > 1) in its place.
        context = Context(loop=asyncio.get_running_loop(), loggername=f"{__name__}.aiocoap")
        token_manager = TokenManager(context)
        mman = PipeliningMessageManager(token_manager, nstart=self._settings.nstart)
        transport = ModemMessageInterface(
            mman,
            self._modem,
            max_instances=self._settings.max_instances,
            idle_close=self._settings.instance_idle_close,
            spawn=tasks.create_task,
        )
        mman.message_interface = transport
        token_manager.token_interface = mman
        context.request_interfaces.append(token_manager)
        if self._oscore.aliases:
            # First, as in aiocoap's own contexts: it takes the requests addressed to an
            # OscoreRemote and sends their protected form through the token manager.
            context.request_interfaces.insert(0, OscoreTransport(context, spawn=tasks.create_task))

        self._modem.set_datagram_handler(transport.datagram_received)
        self._modem.add_reset_listener(transport.modem_reset)
        idle_closer = tasks.create_task(transport.pool.run_idle_closer(), name="coap idle closer")
        stack.callback(idle_closer.cancel)
        self._stack, self._context, self._transport, self._mman = stack, context, transport, mman
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._stack is not None
        assert self._transport is not None
        self._closing = True
        for observation in list(self._observations):
            observation.cancel()
        transport = self._transport
        # Deregistrations still going out get a moment; then aiocoap fails whatever is
        # left with LibraryShutdown (ModemCoap.request turns that into Cancelled).
        workers = transport.workers()
        if workers:
            await asyncio.wait(workers, timeout=_SHUTDOWN_GRACE / 2)
        await self._context.shutdown()
        transport.cancel_workers()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_SHUTDOWN_GRACE):
                await transport.pool.close_all()
        await self._stack.aclose()

    # -- requests -------------------------------------------------------------------------

    async def request(
        self,
        message: Any,
        *,
        timeout: float,  # noqa: ASYNC109
        oscore: str | None = None,
    ) -> Any:
        """Send `message` (an aiocoap Message with a coap:// URI) and return the response.

        Block-wise transfers are done in 256-byte blocks and the whole transfer is bounded
        by `timeout`. `oscore` names the alias whose security context protects it.
        Raises CoapTimeout, CoapReset, ModemUnavailable, ModemError, DatagramTooLarge
        (before anything is sent), InvalidRequest, SecurityError, Cancelled.
        """
        remote = self._prepare(message, oscore)
        transport = self._require_transport()
        started = time.monotonic()
        self._requests += 1
        self._requests_in_flight += 1
        held = False
        try:
            async with asyncio.timeout(timeout):
                await transport.pool.take_turn(remote)
                transport.hold(remote)
                held = True
                return await self._exchange(message, remote)
        except TimeoutError:
            raise self._timed_out(remote, timeout) from None
        except coap_error.Error as exc:
            raise self._translate(exc, remote, started, oscore) from exc
        finally:
            self._requests_in_flight -= 1
            if held:
                transport.release(remote)

    async def _exchange(self, message: Any, remote: ModemRemote) -> Any:
        """The response to `message`, sent again from scratch each time a modem reset cuts
        it, if that is safe (idempotent method); otherwise the reset is the answer.

        A reset leaves an exchange in one of three states: its CON still retransmits
        (the next copy goes to the new instance: nothing to do), it waits for a separate
        response due on the lost instance (`LostInReset`), or it is a Block1 upload
        whose earlier blocks went to the old endpoint, so the server holds, or has
        already taken, part of the body whatever it answers.
        """
        attempt = message
        while True:
            generation = self._modem.generation
            try:
                response = await self._response(self._context.request(attempt), remote)
            except LostInReset:
                if message.code not in IDEMPOTENT:
                    raise
                logger.info(
                    "modem reset while waiting for %s; sending the request again", remote.label
                )
            else:
                if self._modem.generation == generation or not self._cut_by_reset(
                    message, response
                ):
                    return response
                if message.code not in IDEMPOTENT:
                    raise ModemUnavailable(
                        f"modem on {self._modem.port} was reset during the block-wise transfer "
                        f"with {remote.label}, which answered {response.code.dotted}: the "
                        "server may hold part of the body; send the request again"
                    )
                logger.info(
                    "modem reset during a block-wise transfer with %s (answered %s); "
                    "starting it over",
                    remote.label,
                    response.code.dotted,
                )
            attempt = fresh_copy(message)

    def observe(
        self,
        message: Any,
        *,
        timeout: float,
        oscore: str | None = None,
    ) -> Observation:
        """Register an observation (RFC 7641); iterate it for the response and notifications.

        `timeout` bounds the wait for the first response. `cancel()` deregisters.
        `oscore` as for `request`.
        """
        if message.opt.observe is None:
            message.opt.observe = 0
        remote = self._prepare(message, oscore)
        observation = Observation(self, message, remote, timeout, oscore)
        self._observations.add(observation)
        return observation

    def set_unmatched_handler(self, handler: Callable[[Any], None]) -> None:
        """Call `handler(message)` for each decoded response that matched no request."""
        if self._mman is None:
            raise Cancelled("the CoAP client is not running (closed or not started)")
        self._mman.on_unmatched_response = handler

    def stats(self) -> CoapStats:
        """A copy of the counters, with the gauges as they are now."""
        transport = self._require_transport()
        return replace(
            transport.stats,
            instances_open=transport.pool.open_count,
            in_flight=self._requests_in_flight,
            observations=len(self._observations),
            requests=self._requests,
        )

    # -- internals shared with Observation ------------------------------------------------

    def _require_transport(self) -> ModemMessageInterface:
        if self._transport is None or self._closing:
            raise Cancelled("the CoAP client is not running (closed or not started)")
        return self._transport

    def _prepare(self, message: Any, oscore: str | None = None) -> ModemRemote:
        """The server's remote; a protected message is readdressed to its OscoreRemote."""
        self._require_transport()
        if message.remote is None and not message.opt.uri_host:
            raise InvalidRequest("CoAP request has no URI (no host to send it to)")
        try:
            remote = remote_of(message, self._limits.block_size_exp)
        except ValueError as exc:
            raise InvalidRequest(f"CoAP request has no usable host: {exc}") from None
        if remote is None:
            raise InvalidRequest(
                f"only coap:// URIs go through the modem, not {message.requested_scheme}://"
            )
        overhead = 0 if oscore is None else self._oscore.readdress(message, remote, oscore)
        check_request_fits(message, remote.label, self._limits, overhead=overhead)
        # A message still carrying aiocoap's default parameters gets ours.
        if type(message.transport_tuning) is TransportTuning:
            message.transport_tuning = self._tuning
        return remote

    async def _response(self, exchange: Any, remote: ModemRemote) -> Any:
        response = await exchange.response
        logger.debug("%s answered %s", remote.label, response)
        return response

    def _timed_out(self, remote: ModemRemote, waited: float) -> BridgeError:
        transport = self._transport
        assert transport is not None
        if transport.pool.waiting_for_instance(remote):
            return ModemUnavailable(
                f"no free client instance for {remote.label} within {waited:g} s "
                "(every instance the modem allows is busy with other servers)"
            )
        failure = transport.send_failure(remote)
        if isinstance(failure, ModemError):
            return ModemError(failure.command, failure.result, code=failure.code, text=failure.text)
        if failure is not None:
            return ModemUnavailable(
                f"could not send to {remote.label} within {waited:g} s: {failure}"
            )
        return CoapTimeout(f"no response from {remote.label} within {waited:g} s")

    def _translate(
        self, exc: Exception, remote: ModemRemote, started: float, oscore: str | None = None
    ) -> BridgeError:
        if oscore is not None:
            security = security_error(exc, oscore, remote.label)
            if security is not None:
                return security
        if isinstance(exc, TransportFailure):
            return exc.failure
        if isinstance(exc.__cause__, BridgeError):
            return exc.__cause__
        if isinstance(exc, coap_error.TimeoutError):
            return self._timed_out(remote, round(time.monotonic() - started, 1))
        if isinstance(exc, coap_error.MessageError):
            return CoapReset(f"{remote.label} answered with a reset (RST)")
        if isinstance(exc, coap_error.LibraryShutdown):
            return Cancelled(f"request to {remote.label} cancelled: the bridge is shutting down")
        return CoapProtocolError(f"CoAP exchange with {remote.label} failed: {exc!r}")

    def _deregister(self, message: Any, remote: ModemRemote) -> None:
        """RFC 7641 §3.6: GET with Observe: 1 and the observation's token ends it at once.

        A protected observation has no token of its own (the outer messages carry
        them): it ends when the server's next notification is answered with RST.
        """
        if self._mman is None or not message.token:
            return
        deregistration = message.copy(mid=None, token=message.token, observe=1, remote=remote)
        deregistration.mtype = None
        deregistration.transport_tuning = self._tuning
        logger.info("deregistering observation token=%s at %s", message.token.hex(), remote.label)
        # Straight to the message layer: aiocoap's token layer would pick a new token.
        self._mman.send_message(deregistration, lambda: None)

    def _cut_by_reset(self, message: Any, response: Any) -> bool:
        """Whether a response that arrived after a modem reset answers only part of a transfer.

        The reopened instance has a new source port. A server then answers the next Block2
        request 4.08 Request Entity Incomplete (RFC 7959 §2.9.2); for Block1 the blocks
        sent before the reset belong to another endpoint, and servers answer anything from
        4.08 to 5.00 or even 2.04 for the tail alone: a Block1 upload never counts.
        """
        incomplete = response.code == Code.REQUEST_ENTITY_INCOMPLETE
        return incomplete or len(message.payload) > self._limits.block_size

    def _observation_ended(self, observation: Observation) -> None:
        self._observations.discard(observation)
        if self._transport is not None:
            self._transport.release(observation.remote)


def fresh_copy(message: Any) -> Any:
    """`message` as it was before aiocoap sent it, for sending it again from scratch.

    aiocoap sends a small request as the message object itself and gives it a token,
    a message id, a type and its remote; block-wise transfers send copies. The token
    layer always assigns a new token and the remote stays the same server, so clearing
    the message id and type is all a second run needs. Done only when a restart
    happens: a deep copy of every request up front cost more than the rest of `request`.
    """
    restart = message.copy(mid=None)
    restart.mtype = None
    return restart
