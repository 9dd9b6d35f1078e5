"""The aiocoap MessageInterface that carries CoAP datagrams through the modem.

It sits where aiocoap's UDP transports sit, below the TokenManager and message manager.
`send` queues each datagram per remote; a short-lived worker per remote hands them to
the modem (opening the remote's instance first) and keeps the next one queued in the AT
engine, never waiting for answers; `datagram_received` feeds +GTCOAPDATA back up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiocoap import error as coap_error
from aiocoap import interfaces
from aiocoap.message import Message
from aiocoap.numbers.types import CON

from bridge.coap.limits import ModemLimits, add_early_block2, check_datagram_fits
from bridge.coap.messages import PipeliningMessageManager
from bridge.coap.pool import InstancePool
from bridge.coap.remote import ModemRemote, remote_of
from bridge.coap.stats import CoapStats
from bridge.errors import (
    BridgeError,
    DatagramTooLarge,
    InvalidRequest,
    ModemError,
    ModemUnavailable,
)
from bridge.modem.driver import Datagram, ModemDriver

logger = logging.getLogger(__name__)

# A NON, ACK or RST that could not go out within this long is not worth sending late
# (the peer has retransmitted or given up by then).
_UNRELIABLE_TTL = 5.0
# While the modem is down, how often a held datagram checks it is still wanted.
_MODEM_POLL = 0.5
# AT+GTCOAPSENDs a remote's worker keeps in the AT engine: one on the wire and one
# queued behind it, which the engine writes without waiting for any task.
_SENDS_AHEAD = 2

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class TransportFailure(coap_error.NetworkError):
    """Carries a bridge error through aiocoap's request machinery to `ModemCoap`.

    aiocoap expects its own `NetworkError` family from transports; `failure` is what the
    caller finally sees.
    """

    def __init__(self, failure: BridgeError) -> None:
        super().__init__(str(failure))
        self.failure = failure


class LostInReset(TransportFailure):
    """A request whose answer was due on an instance that a modem reset took away.

    Its datagram went out (a CON already acknowledged, waiting for a separate response,
    or a NON), so nothing will retransmit it onto the new instance; `ModemCoap` sends an
    idempotent request again and fails the others.
    """


@dataclass(eq=False)
class _Outgoing:
    message: Any
    datagram: bytes
    queued_at: float = field(default_factory=time.monotonic)


class _SendQueue(deque[_Outgoing]):
    """A remote's datagrams waiting for the modem, in order.

    `send` asks for each datagram whether its message is already waiting (a
    retransmission); with many exchanges queued behind a slow line a scan of the queue
    made that cost grow with the backlog. The ids are those of messages the entries
    hold, so they stay unique while queued.
    """

    def __init__(self) -> None:
        super().__init__()
        self._messages: set[int] = set()

    def holds(self, message: Any) -> bool:
        return id(message) in self._messages

    def append(self, entry: _Outgoing) -> None:
        super().append(entry)
        self._messages.add(id(entry.message))

    def extend(self, entries: Iterable[_Outgoing]) -> None:
        for entry in entries:
            self.append(entry)

    def popleft(self) -> _Outgoing:
        entry = super().popleft()
        self._messages.discard(id(entry.message))
        return entry

    def clear(self) -> None:
        super().clear()
        self._messages.clear()


class ModemMessageInterface(interfaces.MessageInterface):
    def __init__(
        self,
        mman: PipeliningMessageManager,
        modem: ModemDriver,
        *,
        max_instances: int,
        idle_close: float,
        spawn: Spawn,
    ) -> None:
        self._mman = mman
        self._modem = modem
        self._limits = ModemLimits(modem.max_datagram, modem.block_size_exp)
        self._spawn = spawn
        self._queues: dict[ModemRemote, _SendQueue] = {}
        self._workers: dict[ModemRemote, asyncio.Task[None]] = {}
        # Each worker's AT+GTCOAPSENDs handed to the modem and not yet answered `OK`.
        self._in_engine: dict[ModemRemote, deque[asyncio.Future[list[str]]]] = {}
        # Operations ModemCoap runs against a remote (a whole block-wise transfer, an
        # observation): they keep its instance from looking idle between exchanges.
        self._holds: dict[ModemRemote, int] = {}
        # The last reason a datagram to a remote could not be sent, cleared by a success;
        # it turns a CoAP timeout into the modem error that really caused it.
        self._send_failures: dict[ModemRemote, BridgeError] = {}
        self._closed = False
        self.stats = CoapStats()
        self.pool = InstancePool(
            modem,
            max_instances=max_instances,
            idle_close=idle_close,
            is_busy=self.is_busy,
            queued=self.queued,
            stats=self.stats,
        )

    # -- aiocoap MessageInterface ---------------------------------------------------------

    def send(self, message: Any) -> None:
        if self._closed:
            logger.info("not sending %r: the transport is shut down", message)
            return
        remote: ModemRemote = message.remote
        add_early_block2(message, self._limits.block_size_exp)
        datagram = message.encode()
        try:
            check_datagram_fits(datagram, remote.label, self._limits)
        except DatagramTooLarge as exc:
            # Reported from the loop, not from inside aiocoap's send_message call chain,
            # which is still setting up the exchange.
            asyncio.get_running_loop().call_soon(self._fail_message, message, exc)
            return
        queue = self._queues.get(remote)
        if queue is None:
            queue = self._queues[remote] = _SendQueue()
        # A retransmission of a datagram that is still waiting to go out adds nothing.
        if queue.holds(message):
            return
        queue.append(_Outgoing(message, datagram))
        if remote not in self._workers:
            self._workers[remote] = self._spawn(self._drain(remote))

    async def determine_remote(self, message: Any) -> ModemRemote | None:
        if self._closed:
            raise coap_error.LibraryShutdown()
        # Host names stay names: the modem resolves them (AT+GTCOAPOPEN takes either).
        return remote_of(message, self._limits.block_size_exp)

    async def recognize_remote(self, remote: Any) -> bool:
        return isinstance(remote, ModemRemote)

    async def shutdown(self) -> None:
        self._closed = True

    # -- modem side -------------------------------------------------------------------

    def datagram_received(self, datagram: Datagram) -> None:
        """+GTCOAPDATA handler: decode and hand to aiocoap's message manager."""
        if self._closed:
            return
        remote = self.pool.remote_of(datagram.coap_id)
        if remote is None:
            self.stats.unknown_instance_in += 1
            logger.warning(
                "dropped %d-byte datagram: not an instance we hold now "
                "(closed or from before a modem reset; %d so far)",
                len(datagram.data),
                self.stats.unknown_instance_in,
                extra={"coap_id": datagram.coap_id},
            )
            return
        try:
            message = Message.decode(datagram.data, remote=remote)
        except Exception as exc:
            # Peer bytes must never take the modem's URC dispatch down, whatever aiocoap's
            # option decoder raises for them.
            self.stats.undecodable_in += 1
            logger.warning(
                "dropped undecodable %d-byte datagram from %s: %s (%d so far)",
                len(datagram.data),
                remote.label,
                exc,
                self.stats.undecodable_in,
                extra={"coap_id": datagram.coap_id},
            )
            return
        self.stats.datagrams_in += 1
        self.pool.touch(remote)
        self._mman.dispatch_message(message)
        self.pool.exchange_finished()

    def modem_reset(self) -> None:
        """Reset listener: instances are gone; exchanges retransmit onto new ones.

        Observations cannot survive: the server keeps notifying the old instance's
        address, which no longer exists. They end with a clear error. Requests whose
        answer is due on an old instance (sent and not retransmitting) end `LostInReset`.
        """
        if self._closed:
            return
        self.pool.modem_reset()
        port = self._modem.port
        observation_lost = TransportFailure(
            ModemUnavailable(f"modem on {port} was reset: the observation was lost; observe again")
        )
        requests = self._mman.token_manager.outgoing_requests or {}
        loop = asyncio.get_running_loop()
        for pipe in list(requests.values()):
            request = pipe.request
            if request.opt.observe == 0:
                loop.call_soon(pipe.add_exception, observation_lost)
            elif self._answer_due_on_lost_instance(request):
                lost = ModemUnavailable(
                    f"modem on {port} was reset while {request.remote.label} was still to "
                    "answer; the request may have reached the server: send it again if safe"
                )
                loop.call_soon(pipe.add_exception, LostInReset(lost))

    def _answer_due_on_lost_instance(self, request: Any) -> bool:
        if self._mman.is_pending(request):
            return False  # a CON still retransmits; the next copy goes to the new instance
        queue = self._queues.get(request.remote)
        return queue is None or not queue.holds(request)

    # -- bookkeeping for ModemCoap and the pool ------------------------------------------

    def hold(self, remote: ModemRemote) -> None:
        self._holds[remote] = self._holds.get(remote, 0) + 1

    def release(self, remote: ModemRemote) -> None:
        count = self._holds.get(remote, 0) - 1
        if count > 0:
            self._holds[remote] = count
        else:
            self._holds.pop(remote, None)
        self.pool.exchange_finished()

    @property
    def in_flight(self) -> int:
        return sum(self._holds.values())

    def send_failure(self, remote: ModemRemote) -> BridgeError | None:
        """Why datagrams to `remote` cannot be sent, while no send has succeeded since.

        Not bound to when a request started: a request queued behind one whose datagram
        could not go out was never sent either, though the failure predates it.
        """
        return self._send_failures.get(remote)

    def workers(self) -> list[asyncio.Task[None]]:
        """The senders still running (shutdown lets them finish briefly)."""
        return list(self._workers.values())

    def cancel_workers(self) -> None:
        for worker in list(self._workers.values()):
            worker.cancel()

    def queued(self, remote: ModemRemote) -> int:
        """Datagrams to `remote` not yet on the line: waiting for the instance, or handed to
        the modem and not yet `OK`. A request joining those goes out with them."""
        return len(self._queues.get(remote, ())) + len(self._in_engine.get(remote, ()))

    def is_busy(self, remote: ModemRemote) -> bool:
        if self._holds.get(remote) or self._queues.get(remote) or remote in self._workers:
            return True
        if self._mman.active_exchanges(remote) or self._mman.backlogged(remote):
            return True
        requests = self._mman.token_manager.outgoing_requests or {}
        return any(request_remote == remote for _, request_remote in requests)

    # -- the per-remote sender ------------------------------------------------------------

    async def _drain(self, remote: ModemRemote) -> None:
        queue = self._queues[remote]
        submitted: deque[asyncio.Future[list[str]]] = deque()
        self._in_engine[remote] = submitted
        try:
            while not self._closed:
                if queue and len(submitted) < _SENDS_AHEAD:
                    future = await self._send_next(remote, queue)
                    if future is not None:
                        submitted.append(future)
                elif submitted:
                    # Settled by _sent; only the pace of the worker is decided here.
                    with contextlib.suppress(BridgeError):
                        await submitted[0]
                    submitted.popleft()
                else:
                    break
        finally:
            del self._workers[remote]
            del self._in_engine[remote]
            if not queue:
                self._queues.pop(remote, None)
            self.pool.exchange_finished()

    async def _send_next(
        self, remote: ModemRemote, queue: _SendQueue
    ) -> asyncio.Future[list[str]] | None:
        """Queue the remote's next datagram in the modem; its future, or None if none went."""
        entry = queue[0]
        if not self._still_wanted(entry):
            queue.popleft()
            return None
        try:
            instance = await self.pool.acquire(remote, lambda: self._prune(queue))
        except (ModemError, InvalidRequest) as exc:
            # The modem refuses to open an instance to this remote at all (bad host,
            # ERROR): every exchange with it fails now rather than time out later.
            queue.clear()
            self._record_failure(remote, exc)
            self._mman.dispatch_error(TransportFailure(exc), remote)
            return None
        except BridgeError as exc:
            # Modem not ready / not answering. Keep the datagram while its exchange is
            # wanted and send it as soon as the modem is back: waiting for the next
            # retransmission instead could take longer than the request's timeout.
            self._record_failure(remote, exc)
            if not await self._wait_for_modem(entry):
                queue.popleft()
            return None
        if instance is None:
            return None  # _prune emptied the queue: nobody wants these datagrams any more.
        queue.popleft()
        try:
            future = self._modem.submit_send(instance.coap_id, entry.datagram)
        except BridgeError as exc:
            self._send_failed(remote, instance.coap_id, entry, exc)
            return None
        future.add_done_callback(functools.partial(self._sent, remote, instance.coap_id, entry))
        return future

    def _sent(
        self,
        remote: ModemRemote,
        coap_id: int,
        entry: _Outgoing,
        future: asyncio.Future[list[str]],
    ) -> None:
        if future.cancelled():
            return  # the worker was cancelled at shutdown
        exc = future.exception()
        if exc is None:
            self._send_failures.pop(remote, None)
            self.stats.datagrams_out += 1
            self.stats.max_datagram_out = max(self.stats.max_datagram_out, len(entry.datagram))
        elif isinstance(exc, BridgeError):
            self._send_failed(remote, coap_id, entry, exc)
        else:
            logger.error("sending to %s failed unexpectedly", remote.label, exc_info=exc)

    def _send_failed(
        self, remote: ModemRemote, coap_id: int, entry: _Outgoing, exc: BridgeError
    ) -> None:
        if isinstance(exc, DatagramTooLarge):
            self._fail_message(entry.message, exc)
            return
        if isinstance(exc, ModemError):
            # The modem does not know this coap_id (reset not noticed yet) or refused the
            # datagram: reopen next time; a CON is retransmitted.
            self.pool.invalidate(remote, coap_id)
        self._record_failure(remote, exc)

    async def _wait_for_modem(self, entry: _Outgoing) -> bool:
        """True once a modem that was not ready is back; False if it was ready (it failed
        otherwise: the copy counts as lost) or the entry stopped being wanted first."""
        if self._modem.ready:
            return False
        while not self._closed and self._still_wanted(entry):
            try:
                await self._modem.wait_ready(timeout=_MODEM_POLL)
            except ModemUnavailable:
                continue
            return True
        return False

    def _still_wanted(self, entry: _Outgoing) -> bool:
        if entry.message.mtype is CON:
            return self._mman.is_active(entry.message)
        return time.monotonic() - entry.queued_at < _UNRELIABLE_TTL

    def _prune(self, queue: _SendQueue) -> bool:
        """Drop datagrams nobody waits for; True if any remain (so keep waiting)."""
        wanted = [entry for entry in queue if self._still_wanted(entry)]
        if len(wanted) != len(queue):
            queue.clear()
            queue.extend(wanted)
        return bool(queue)

    def _record_failure(self, remote: ModemRemote, exc: BridgeError) -> None:
        self.stats.send_failures += 1
        self._send_failures[remote] = exc
        logger.warning("could not send to %s: %s", remote.label, exc)

    def _fail_message(self, message: Any, exc: BridgeError) -> None:
        logger.warning("refused message to %s: %s", message.remote.label, exc)
        self._mman.fail_exchange(message, TransportFailure(exc))
