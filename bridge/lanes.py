"""Each modem's layers (AT engine, driver, CoAP stack), brought up with backoff and
handed to the router while they run; one task per configured modem."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from bridge.at.engine import AtEngine
from bridge.backoff import Backoff
from bridge.coap import CoapTransportSettings, ModemCoap
from bridge.coap.oscore import SecurityContexts
from bridge.coap.router import Lane, ModemRouter
from bridge.config import ModemSettings
from bridge.errors import BridgeError
from bridge.modem.driver import DriverOptions, ModemDriver, current_modem
from bridge.modem.registry import DRIVERS

log = logging.getLogger(__name__)

MODEM_RETRY_INITIAL = 1.0
MODEM_RETRY_MAX = 60.0


@dataclass(frozen=True)
class LaneHooks:
    """What the service hears from the lanes."""

    # A modem that could not be brought up, and the delay before the next attempt.
    not_usable: Callable[[ModemSettings, BridgeError, float], None]
    up: Callable[[Lane], None]
    # A driver whose layers end (its counters are kept by the service).
    ended: Callable[[ModemDriver], None]
    # A running modem that is ready again after a reset or an unplug.
    ready_again: Callable[[Lane], None]


class Lanes:
    """The modems of one incarnation of the layers, each in `run(modem)` until cancelled."""

    def __init__(
        self,
        router: ModemRouter,
        oscore: SecurityContexts,
        hooks: LaneHooks,
        *,
        max_in_flight: int,
        trace_at: str | None = None,
    ) -> None:
        self._router = router
        self._oscore = oscore
        self._hooks = hooks
        self._max_in_flight = max_in_flight
        self._trace_at = trace_at
        self.problems: dict[str, str] = {}

    async def run(self, modem: ModemSettings) -> None:
        """Bring `modem` up (retried with backoff), then serve through it until cancelled."""
        current_modem.set(modem.name)
        backoff = Backoff(MODEM_RETRY_INITIAL, MODEM_RETRY_MAX)
        while True:
            attempt = AsyncExitStack()
            try:
                lane = await self._open(attempt, modem)
            except BridgeError as exc:
                await attempt.aclose()
                delay = backoff.next()
                self.problems[modem.name] = str(exc)
                self._hooks.not_usable(modem, exc, delay)
                await asyncio.sleep(delay)
                continue
            except BaseException:
                await attempt.aclose()
                raise
            async with attempt:
                self.problems.pop(modem.name, None)
                self._router.add(lane)
                self._hooks.up(lane)
                try:
                    await self._follow(lane)
                finally:
                    self._router.remove(modem.name)

    async def _follow(self, lane: Lane) -> None:
        lost = asyncio.Event()
        lane.driver.add_reset_listener(lost.set)
        while True:
            await lost.wait()
            lost.clear()
            await lane.driver.wait_ready()
            self._hooks.ready_again(lane)

    async def _open(self, attempt: AsyncExitStack, modem: ModemSettings) -> Lane:
        engine = await attempt.enter_async_context(
            AtEngine(
                modem.port,
                baudrate=modem.baudrate,
                command_timeout=modem.command_timeout,
                trace_file=self._trace_at or modem.trace_file,
                trace_max_bytes=modem.trace_max_bytes,
            )
        )
        options = DriverOptions(
            name=modem.name,
            apn=modem.apn,
            command_timeout=modem.command_timeout,
            registration_timeout=modem.registration_timeout,
        )
        driver = await attempt.enter_async_context(DRIVERS[modem.model](engine, options))
        attempt.callback(self._hooks.ended, driver)
        coap = await attempt.enter_async_context(
            ModemCoap(
                driver,
                CoapTransportSettings(
                    max_instances=modem.max_instances,
                    instance_idle_close=modem.instance_idle_close,
                    # As many CON exchanges with one server as requests may be in
                    # flight: the front's limit is the one that should bind, not NSTART.
                    nstart=max(self._max_in_flight, 1),
                ),
                oscore=self._oscore,
            )
        )
        return Lane(modem.name, driver, coap)
