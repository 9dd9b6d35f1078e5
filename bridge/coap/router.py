"""`ModemRouter`: places each request on one modem's CoAP stack, and fails over.

A request names a modem (or its server alias does), else it goes to the ready modem
with the least load. A request in flight on a modem that goes down while another is
ready is sent again there if that is safe (idempotent method, or `retry`); otherwise
it is answered `modem_unavailable`. Observations and block-wise transfers stay on the
modem that started them (each is one call on one stack).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from bridge.coap.client import IDEMPOTENT, ModemCoap, fresh_copy
from bridge.coap.observation import Observation
from bridge.coap.stats import CoapStats
from bridge.errors import InvalidRequest, ModemUnavailable
from bridge.modem.driver import ModemDriver, current_modem

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Lane:
    """One modem and the CoAP stack over it."""

    name: str
    driver: ModemDriver
    coap: ModemCoap
    # Futures of requests in flight here, resolved when the modem goes down.
    down_waiters: set[asyncio.Future[None]] = field(default_factory=set)
    # Requests placed here and not finished: counted at placement, before their task
    # runs, so that a burst arriving at once is spread too.
    placed: int = 0

    def load(self) -> tuple[int, int]:
        return (self.placed, self.driver.line_backlog)

    def went_down(self) -> None:
        for waiter in self.down_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.down_waiters.clear()


class ModemRouter:
    """The CoAP side of the handler when the bridge has one modem or several."""

    def __init__(self, names: Sequence[str]) -> None:
        self._names = tuple(names)
        self._lanes: dict[str, Lane] = {}
        self._lane_added = asyncio.Event()
        self._lane_lost = asyncio.Event()
        self._unmatched: Callable[[Any], None] | None = None

    # -- lanes ----------------------------------------------------------------------------

    @property
    def lanes(self) -> list[Lane]:
        return [self._lanes[name] for name in self._names if name in self._lanes]

    def add(self, lane: Lane) -> None:
        self._lanes[lane.name] = lane
        lane.driver.add_reset_listener(lane.went_down)
        lane.driver.add_reset_listener(self._lane_lost.set)
        if self._unmatched is not None:
            lane.coap.set_unmatched_handler(self._unmatched)
        self._lane_added.set()

    def remove(self, name: str) -> None:
        lane = self._lanes.pop(name, None)
        if lane is not None:
            lane.went_down()
            self._lane_lost.set()

    async def wait_any(self) -> None:
        """Until at least one modem's stack is running."""
        while not self._lanes:
            self._lane_added.clear()
            await self._lane_added.wait()

    def any_ready(self) -> bool:
        return any(lane.driver.ready for lane in self._lanes.values())

    async def wait_any_ready(self) -> None:
        """Until some modem is ready to carry requests."""
        while not self.any_ready():
            self._lane_added.clear()
            waits = [lane.driver.wait_ready() for lane in self._lanes.values()]
            await _first_of(self._lane_added.wait(), *waits)

    async def wait_none_ready(self) -> None:
        """Until no modem is ready (each one reset, unplugged or gone)."""
        while self.any_ready():
            self._lane_lost.clear()
            await self._lane_lost.wait()

    def set_unmatched_handler(self, handler: Callable[[Any], None]) -> None:
        self._unmatched = handler
        for lane in self._lanes.values():
            lane.coap.set_unmatched_handler(handler)

    def stats(self) -> CoapStats:
        """The counters of every running stack, summed."""
        total = CoapStats()
        for lane in self._lanes.values():
            stats = lane.coap.stats()
            for item in fields(CoapStats):
                combine = max if item.name == "max_datagram_out" else operator.add
                value = combine(getattr(total, item.name), getattr(stats, item.name))
                setattr(total, item.name, value)
        return total

    # -- requests -------------------------------------------------------------------------

    async def request(
        self,
        message: Any,
        *,
        timeout: float,  # noqa: ASYNC109
        oscore: str | None = None,
        modem: str | None = None,
        retry: bool = False,
    ) -> Any:
        """As `ModemCoap.request`, on the modem `modem` or the least loaded ready one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        left_behind: set[str] = set()
        attempt = message
        while True:
            lane = await self._place(modem, deadline, avoid=left_behind)
            # Milliseconds: a request placed at once keeps the timeout error messages quote.
            remaining = max(round(deadline - loop.time(), 3), 0.001)
            token = current_modem.set(lane.name)
            lane.placed += 1
            try:
                if modem is not None or len(self._names) == 1:
                    return await lane.coap.request(attempt, timeout=remaining, oscore=oscore)
                response, down = await self._attempt(lane, attempt, remaining, oscore)
            finally:
                lane.placed -= 1
                current_modem.reset(token)
            if not down:
                return response
            if message.code not in IDEMPOTENT and not retry:
                raise ModemUnavailable(
                    f"modem {lane.name} went down with the {message.code} request in flight; "
                    "it may have reached the server, so the bridge does not send it again "
                    '(a request with "retry": true may be sent on another modem)'
                )
            logger.info(
                "modem %s went down with a %s request in flight; sending it on another modem",
                lane.name,
                message.code,
            )
            left_behind.add(lane.name)
            attempt = fresh_copy(message)

    def observe(
        self,
        message: Any,
        *,
        timeout: float,
        oscore: str | None = None,
        modem: str | None = None,
    ) -> Observation:
        """As `ModemCoap.observe`, on one modem for the whole stream."""
        lane = self._choose(modem, avoid=set())
        if lane is None:
            raise ModemUnavailable(self._none_running(modem))
        token = current_modem.set(lane.name)
        try:
            return lane.coap.observe(message, timeout=timeout, oscore=oscore)
        finally:
            current_modem.reset(token)

    async def _attempt(
        self, lane: Lane, message: Any, within: float, oscore: str | None
    ) -> tuple[Any, bool]:
        """The response, or (None, True) when the modem went down first while another
        was ready to take the request; with no other, the request waits here as it
        would on a single modem."""
        loop = asyncio.get_running_loop()
        exchange = asyncio.ensure_future(lane.coap.request(message, timeout=within, oscore=oscore))
        try:
            while True:
                down: asyncio.Future[None] = loop.create_future()
                lane.down_waiters.add(down)
                try:
                    await asyncio.wait((exchange, down), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    lane.down_waiters.discard(down)
                    down.cancel()
                if exchange.done():
                    return exchange.result(), False
                if self._choose(None, avoid={lane.name}, ready_only=True) is not None:
                    return None, True
        finally:
            if not exchange.done():
                # Cancelling the exchange ends aiocoap's interest: no retransmission follows.
                exchange.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await exchange

    async def _place(self, modem: str | None, deadline: float, *, avoid: set[str]) -> Lane:
        loop = asyncio.get_running_loop()
        while True:
            lane = self._choose(modem, avoid=avoid)
            if lane is not None:
                return lane
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ModemUnavailable(self._none_running(modem))
            self._lane_added.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._lane_added.wait()

    def _choose(
        self, modem: str | None, *, avoid: set[str], ready_only: bool = False
    ) -> Lane | None:
        if modem is not None:
            if modem not in self._names:
                raise InvalidRequest(
                    f"no modem named {modem!r}; configured: {', '.join(self._names)}"
                )
            return self._lanes.get(modem)
        candidates = [lane for lane in self._lanes.values() if lane.name not in avoid]
        ready = [lane for lane in candidates if lane.driver.ready]
        if ready_only or ready:
            candidates = ready
        if len(candidates) == 1:
            # One modem configured or left: nothing to weigh (load sums its line's queue).
            return candidates[0]
        # With no modem ready the request waits on one, as it would with a single modem.
        return min(candidates, key=Lane.load, default=None)

    def _none_running(self, modem: str | None) -> str:
        if modem is not None:
            return f"modem {modem} is not up (its bring-up has not succeeded yet)"
        return f"no modem is up (configured: {', '.join(self._names)})"


async def _first_of(*awaitables: Coroutine[Any, Any, object]) -> None:
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
