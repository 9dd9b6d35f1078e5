"""Keeps an L610 usable: bring-up until a clean pass, health probes, reset recovery.

`ModemSupervisor.bring_up()` runs bring-up until one pass completes with no sign of a
reset during it; `run()` is the driver's one background task: it probes the modem every
`probe_interval` and, whenever the driver reports trouble, runs bring-up again with
`Backoff` until it succeeds. It changes the driver's state only through `ModemState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from bridge.at.engine import AtEngine
from bridge.backoff import Backoff
from bridge.errors import AtTimeout, BridgeError, PortLost
from bridge.modem.health import ModemIdentity
from bridge.modem.l610.bringup import BringUp
from bridge.modem.ts27007 import REGISTERED_STATES, parse_csq, parse_registration

logger = logging.getLogger(__name__)

# Consecutive probe timeouts after which a silent modem is treated as reset.
_PROBE_TIMEOUTS_BEFORE_RESET = 3


class ModemState(Protocol):
    """What the supervisor reads and changes of the driver."""

    @property
    def ready(self) -> bool: ...

    def set_state(self, state: str) -> None: ...

    def became_ready(self, identity: ModemIdentity) -> None: ...

    def declare_lost(self, reason: str) -> None: ...

    def signal_checked(self, rssi_dbm: int | None, *, registered: bool) -> None: ...

    async def command(self, command: str) -> list[str]: ...


class ModemSupervisor:
    def __init__(
        self,
        driver: ModemState,
        at: AtEngine,
        bring_up: BringUp,
        *,
        probe_interval: float,
        retry_initial: float,
        retry_max: float,
        boot_settle: float,
    ) -> None:
        self._driver = driver
        self._at = at
        self._bring_up = bring_up
        self._probe_interval = probe_interval
        self._retry = Backoff(retry_initial, retry_max)
        self._boot_settle = boot_settle
        # Set when something suggests the modem restarted; `run` reacts.
        self.trouble = asyncio.Event()
        self._last_boot_line = 0.0
        self._probe_timeouts = 0

    def boot_line_seen(self) -> None:
        self._last_boot_line = asyncio.get_running_loop().time()

    async def bring_up(self) -> None:
        """Run bring-up until one pass completes with no boot line or port change during it."""
        while True:
            self.trouble.clear()
            identity = await self._bring_up.run()
            if not self.trouble.is_set():
                break
            # The modem restarted under us (or printed the rest of its boot lines):
            # what the pass set may be gone, so it runs again.
            await self._settle()
        self._probe_timeouts = 0
        self._driver.became_ready(identity)

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._probe_interval):
                    await self.trouble.wait()
            except TimeoutError:
                if self._driver.ready:
                    await self._probe()
                continue
            await self._recover()

    async def _settle(self) -> None:
        """Let a booting modem finish its boot lines before talking to it."""
        loop = asyncio.get_running_loop()
        while True:
            quiet = loop.time() - self._last_boot_line
            if quiet >= self._boot_settle:
                return
            await asyncio.sleep(self._boot_settle - quiet)

    async def _probe(self) -> None:
        try:
            await self._check_health()
        except Exception:
            # The probe is advisory: a bug in it must not end reset supervision.
            logger.exception("health probe crashed on %s", self._at.port)

    async def _recover(self) -> None:
        driver = self._driver
        self._retry.reset()
        while True:
            if not self._at.connected:
                driver.set_state("port lost; waiting for it to come back")
                await self._at.wait_connected()
            await self._settle()
            driver.set_state("bring-up after a modem reset")
            try:
                await self.bring_up()
                return
            except BridgeError as exc:
                failure = str(exc)
            except Exception as exc:
                # Keep the supervisor alive whatever a bug raises; the log says what.
                logger.exception("bring-up crashed on %s", self._at.port)
                failure = repr(exc)
            delay = self._retry.next()
            state = f"bring-up failed ({failure}); retrying in {delay:.3g} s"
            driver.set_state(state)
            logger.warning("modem on %s: %s", self._at.port, state)
            # A port coming back or new boot lines cut the wait short.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.trouble.wait()

    async def _check_health(self) -> None:
        """Refresh signal and registration, and check the modem kept bring-up's settings.

        A reset with no boot line seen (lost in a reply, or a port that never dropped)
        shows as CMEE back at its default; a hung modem as repeated timeouts.
        """
        driver = self._driver
        try:
            cmee = await driver.command("AT+CMEE?")
            rssi_dbm = parse_csq(await driver.command("AT+CSQ"))
            stat = parse_registration(await driver.command("AT+CEREG?"), "+CEREG:")
        except AtTimeout:
            self._probe_timeouts += 1
            if self._probe_timeouts >= _PROBE_TIMEOUTS_BEFORE_RESET:
                driver.declare_lost(
                    f"modem stopped answering ({self._probe_timeouts} probes timed out)"
                )
            return
        except PortLost:
            return  # The connection handler reports it.
        except BridgeError as exc:
            logger.warning("health probe failed on %s: %s", self._at.port, exc)
            return
        self._probe_timeouts = 0
        expected = f"+CMEE:{self._bring_up.error_mode}"
        if not any(line.replace(" ", "") == expected for line in cmee):
            driver.declare_lost(
                f"modem lost its settings (AT+CMEE? answered {cmee!r}): it restarted"
            )
            return
        driver.signal_checked(rssi_dbm, registered=stat in REGISTERED_STATES)
