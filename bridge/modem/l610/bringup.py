"""The L610 bring-up sequence: from "a port that may hold a modem" to "ready for CoAP".

`BringUp.run()` pings, turns echo off and verbose (else numeric) errors on, reads the
identity, checks SIM, signal and registration, activates the PDP context if needed, and returns the
`ModemIdentity`, or raises `ModemUnavailable` saying what to check.
"""

from __future__ import annotations

import asyncio
import logging

from bridge.at.engine import AtEngine
from bridge.errors import AtTimeout, ModemError, ModemUnavailable, UnexpectedReply
from bridge.modem.health import ModemIdentity
from bridge.modem.l610.codec import MIPCALL_PREFIX, PdpState, format_pdp_activate, parse_mipcall
from bridge.modem.ts27007 import (
    REGISTERED_STATES,
    parse_cpin,
    parse_csq,
    parse_identity,
    parse_registration,
)

logger = logging.getLogger(__name__)

# 3GPP 27.007 +CEREG/+CGREG <stat>, for messages.
_REGISTRATION_WORDS = {
    0: "not registered, not searching",
    1: "registered, home network",
    2: "not registered, searching",
    3: "registration denied",
    4: "unknown",
    5: "registered, roaming",
}


class BringUp:
    """Runs the bring-up sequence on an `AtEngine`; `run()` may be called again and again.

    The `+MIPCALL:` URC that completes PDP activation is fed in by the driver, which owns
    the engine's URC handlers, through `on_pdp_urc`.
    """

    def __init__(
        self,
        at: AtEngine,
        *,
        apn: str,
        command_timeout: float,
        registration_timeout: float,
        pdp_timeout: float,
        ping_tries: int = 5,
        ping_timeout: float = 1.0,
        poll_interval: float = 0.5,
    ) -> None:
        self._at = at
        self._apn = apn
        self._command_timeout = command_timeout
        self._registration_timeout = registration_timeout
        self._pdp_timeout = pdp_timeout
        self._ping_tries = ping_tries
        self._ping_timeout = min(ping_timeout, command_timeout)
        self._poll_interval = poll_interval
        self._pdp_urc: asyncio.Future[str] | None = None
        # The AT+CMEE mode the last pass set: the supervisor checks the modem kept it.
        self.error_mode = 2

    async def run(self) -> ModemIdentity:
        await self._ping()
        await self._command("ATE0")
        self.error_mode = await self._error_reporting()
        model = parse_identity(await self._command("AT+CGMM"), "+CGMM:")
        firmware = parse_identity(await self._command("AT+CGMR"), "+CGMR:")
        imei = parse_identity(await self._command("AT+CGSN"), "+CGSN:")
        await self._check_sim()
        rssi_dbm = parse_csq(await self._command("AT+CSQ"))
        await self._wait_registered()
        ip = await self._activate_pdp()
        return ModemIdentity(model, firmware, imei, rssi_dbm, registered=True, ip=ip)

    def on_pdp_urc(self, line: str) -> bool:
        """Take a `+MIPCALL:` URC if an activation waits for one; False when none does."""
        waiter = self._pdp_urc
        if waiter is None or waiter.done():
            return False
        waiter.set_result(line)
        return True

    async def _command(self, command: str) -> list[str]:
        return await self._at.command(command, timeout=self._command_timeout)

    async def _error_reporting(self) -> int:
        """Errors in words (mode 2), or numbers on firmware that only has modes 0-1;
        `bridge.at.results` adds the words to numbers."""
        try:
            await self._command("AT+CMEE=2")
        except ModemError:
            await self._command("AT+CMEE=1")
            logger.info("modem on %s has no verbose errors; using AT+CMEE=1", self._at.port)
            return 1
        return 2

    async def _ping(self) -> None:
        for _ in range(self._ping_tries):
            try:
                await self._at.command("AT", timeout=self._ping_timeout)
            except AtTimeout:
                continue
            except ModemError:
                pass  # An error answer still proves the modem is listening.
            return
        raise ModemUnavailable(
            f"modem on {self._at.port} did not answer AT within {self._ping_timeout:g} s "
            f"({self._ping_tries} tries); check the port and the modem's power"
        )

    async def _check_sim(self) -> None:
        try:
            state = parse_cpin(await self._command("AT+CPIN?"))
        except ModemError as exc:
            words = exc.text or exc.result
            raise ModemUnavailable(f"modem on {self._at.port}: SIM not usable: {words}") from exc
        if state != "READY":
            raise ModemUnavailable(
                f"modem on {self._at.port}: SIM not usable: +CPIN: {state} (expected READY)"
            )

    async def _registration(self, prefix: str) -> int | None:
        try:
            return parse_registration(await self._command(f"AT{prefix[:-1]}?"), prefix)
        except ModemError:
            return None  # Firmware without this radio technology answers ERROR.

    async def _wait_registered(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._registration_timeout
        while True:
            lte = await self._registration("+CEREG:")
            if lte in REGISTERED_STATES:
                return
            legacy = await self._registration("+CGREG:")
            if legacy in REGISTERED_STATES:
                return
            if loop.time() >= deadline:
                stat = lte if lte is not None else legacy
                words = _REGISTRATION_WORDS.get(stat, "no answer") if stat is not None else ""
                raise ModemUnavailable(
                    f"modem on {self._at.port} not registered to a network after "
                    f"{self._registration_timeout:g} s (stat {stat}: {words}); "
                    "check the antenna, the SIM's subscription and coverage"
                )
            await asyncio.sleep(self._poll_interval)

    async def _pdp_state(self) -> PdpState:
        lines = await self._command("AT+MIPCALL?")
        line = next((line for line in lines if line.startswith(MIPCALL_PREFIX)), None)
        if line is None:
            raise UnexpectedReply(f"no +MIPCALL: line in the answer to AT+MIPCALL?: {lines!r}")
        return parse_mipcall(line)

    async def _activate_pdp(self) -> str | None:
        state = await self._pdp_state()
        if state.active:
            return state.ip
        loop = asyncio.get_running_loop()
        self._pdp_urc = loop.create_future()
        try:
            await self._command(format_pdp_activate(self._apn))
            deadline = loop.time() + self._pdp_timeout
            while loop.time() < deadline:
                # The URC normally comes at once; polling covers firmware that omits it.
                wait = min(1.0, max(0.0, deadline - loop.time()))
                try:
                    state = parse_mipcall(
                        await asyncio.wait_for(asyncio.shield(self._pdp_urc), wait)
                    )
                except TimeoutError:
                    state = await self._pdp_state()
                if state.active:
                    logger.info("PDP context active on %s, ip %s", self._at.port, state.ip)
                    return state.ip
                if self._pdp_urc.done():
                    break  # The modem reported the activation as failed.
        finally:
            self._pdp_urc = None
        apn = f"APN {self._apn!r}" if self._apn else "the default APN"
        raise ModemUnavailable(
            f"modem on {self._at.port} could not activate a PDP context with {apn} "
            f"within {self._pdp_timeout:g} s; check the APN"
        )
