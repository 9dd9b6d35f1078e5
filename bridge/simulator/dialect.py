"""Sans-IO interpreter of the Fibocom L610 AT dialect (the simulator's brain).

`L610Dialect.handle(line)` takes one command line (the bytes before CR, without it) and
returns what the modem writes back, in order: `bytes` for the serial line and effects
(`OpenInstance`, `SendDatagram`, `CloseInstance`) the shell performs on real UDP
sockets. `OpenInstance` needs a network answer, so it is always the last item: the
shell connects, then calls `finish_open(coap_id, ok)` for the reply. Datagrams coming
back go through `datagram_received(coap_id, data)`. Every command, form and answer,
and the firmware variants: README.md in this package.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from bridge.simulator.firmware import STANDARD, Firmware
from bridge.simulator.gtcoap import CoapInstances
from bridge.simulator.replies import (
    CME_NO_NETWORK_SERVICE,
    CME_OPERATION_NOT_ALLOWED,
    CME_SIM_NOT_INSERTED,
    CME_TEXT,
    ERROR,
    FIRMWARE,
    IMEI,
    IMSI,
    MANUFACTURER,
    MAX_DATAGRAM,
    MODEL,
    OK,
    PDP_ADDRESS,
    PENDING,
    CloseInstance,
    OpenInstance,
    Output,
    Reply,
    SendDatagram,
    frame,
)

__all__ = [
    "IMEI",
    "PDP_ADDRESS",
    "CloseInstance",
    "L610Dialect",
    "OpenInstance",
    "Output",
    "SendDatagram",
]

_DIGIT = re.compile(r"=(\d)")
_MIPCALL_UP = re.compile(r'=1(?:,"([^"]{0,100})"(?:,"([^"]{0,64})","([^"]{0,64})")?)?')
_MIPPROFILE = re.compile(r'=1,"([^"]{0,100})"(?:,"([^"]{0,64})","([^"]{0,64})")?')
_COMMAND_NAME = re.compile(r"[^=?]*")


class L610Dialect:
    """One L610's AT state: echo, CMEE, SIM, registration, PDP context, CoAP instances."""

    def __init__(
        self,
        *,
        instances: int = 4,
        sim_inserted: bool = True,
        register_after: float = 0.0,
        rssi: int = 24,
        firmware: Firmware = STANDARD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= rssi <= 31:
            raise ValueError(f"rssi must be 0-31, got {rssi}")
        self.coap = CoapInstances(instances)
        self.firmware = firmware
        self.sim_inserted = sim_inserted
        self.register_after = register_after
        self.rssi = rssi
        self._clock = clock
        self.commands = 0
        self._swallow_finals = 0
        self._mid_reply_urcs: list[str] = []
        self._handlers: dict[str, Callable[[str], Reply]] = {
            "": self._at,
            "E": self._echo_off,
            "E0": self._echo_off,
            "E1": self._echo_on,
            "I": self._identify,
            "I0": self._identify,
            "+CGMI": lambda suffix: self._constant(suffix, MANUFACTURER),
            "+CGMM": lambda suffix: self._constant(suffix, MODEL),
            "+CGMR": lambda suffix: self._constant(suffix, FIRMWARE),
            "+CGSN": lambda suffix: self._constant(suffix, IMEI),
            "+CIMI": self._cimi,
            "+CMEE": self._cmee,
            "+CPIN": self._cpin,
            "+CSQ": self._csq,
            "+CEREG": lambda suffix: self._registration(suffix, "+CEREG"),
            "+CGREG": lambda suffix: self._registration(suffix, "+CGREG"),
            "+CREG": lambda suffix: self._registration(suffix, "+CREG"),
            "+MIPCALL": self._mipcall,
            "+MIPPROFILE": self._mipprofile,
        }
        if firmware.gtcoap:
            self._handlers["+GTCOAPOPEN"] = self._gtcoap_open
            self._handlers["+GTCOAPSEND"] = self._gtcoap_send
            self._handlers["+GTCOAPCLOSE"] = self._gtcoap_close
        self._power_on()

    def _power_on(self) -> None:
        self.echo = True
        self.cmee = 0
        self.registration_urc_mode = {"+CEREG": 0, "+CGREG": 0, "+CREG": 0}
        self.pdp_address: str | None = None
        self.apn = ""
        self.coap.reset()
        self._boot_time = self._clock()

    # -- what the shell calls -------------------------------------------------------

    def handle(self, line: bytes) -> list[Output]:
        """Answer one command line (without its CR)."""
        self.commands += 1
        out: list[Output] = []
        if self.echo:
            out.append(line + b"\r")
        reply = self._dispatch(line)
        out.extend(reply.effects)
        if reply.final != PENDING:
            out.append(self._render(reply))
        return out

    def line_too_long(self) -> bytes:
        """Answer a command line that overflowed the modem's input buffer."""
        self.commands += 1
        return self._render(ERROR)

    def finish_open(self, coap_id: int, ok: bool) -> bytes:
        """The reply to the pending `AT+GTCOAPOPEN`, once the socket is (not) connected."""
        reply = self.coap.finish_open(coap_id, ok)
        # None: a reboot came in between, the command died with the modem.
        return b"" if reply is None else self._render(reply)

    def datagram_received(self, coap_id: int, data: bytes) -> bytes | None:
        """The `+GTCOAPDATA` URC for a datagram, or None when the modem drops it."""
        if coap_id not in self.coap.open_ids or not 0 < len(data) <= MAX_DATAGRAM:
            return None
        return b"\r\n+GTCOAPDATA: %d,%d,%s\r\n" % (coap_id, len(data), data.hex().upper().encode())

    def reboot(self) -> bytes:
        """Forget everything volatile and return the boot lines."""
        self._power_on()
        self._swallow_finals = 0
        self._mid_reply_urcs.clear()
        return frame(self.firmware.boot(sim_inserted=self.sim_inserted))

    def drop_context(self) -> list[Output]:
        """The network releases the PDP context: `+MIPCALL: 0`, and every instance goes
        with it (their sockets were bound to its address). Nothing when none is active."""
        if self.pdp_address is None:
            return []
        self.pdp_address = None
        return [*self.coap.drop_all(), frame(["+MIPCALL: 0"])]

    def swallow_next_final(self) -> None:
        """Fault: the next final result code is never written."""
        self._swallow_finals += 1

    def urc_mid_reply(self, line: str) -> None:
        """Fault: write `line` right after the first info line of the next reply having one."""
        self._mid_reply_urcs.append(line)

    @property
    def open_ids(self) -> set[int]:
        return self.coap.open_ids

    @property
    def opening_id(self) -> int | None:
        return self.coap.opening_id

    @property
    def registered(self) -> bool:
        return self.sim_inserted and self._clock() - self._boot_time >= self.register_after

    # -- parsing --------------------------------------------------------------------

    def _dispatch(self, line: bytes) -> Reply:
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            return ERROR
        if text[:2].upper() != "AT":
            return ERROR
        match = _COMMAND_NAME.match(text, 2)
        assert match is not None  # the pattern matches the empty string
        handler = self._handlers.get(match.group().upper())
        if handler is None:
            return ERROR
        return handler(text[match.end() :])

    def _render(self, reply: Reply) -> bytes:
        lines = list(reply.info)
        if self._mid_reply_urcs and lines:
            lines[1:1] = self._mid_reply_urcs
            self._mid_reply_urcs = []
        if self._swallow_finals:
            self._swallow_finals -= 1
        else:
            lines.append(reply.final)
        lines.extend(reply.trailing)
        return frame(lines)

    def _cme(self, code: int) -> Reply:
        if self.cmee == 1:
            return Reply(final=f"+CME ERROR: {code}")
        if self.cmee == 2:
            return Reply(final=f"+CME ERROR: {CME_TEXT[code]}")
        return ERROR

    # -- basic and identity commands ------------------------------------------------

    def _at(self, suffix: str) -> Reply:
        return OK if suffix == "" else ERROR

    def _echo_off(self, suffix: str) -> Reply:
        if suffix:
            return ERROR
        self.echo = False
        return OK

    def _echo_on(self, suffix: str) -> Reply:
        if suffix:
            return ERROR
        self.echo = True
        return OK

    def _identify(self, suffix: str) -> Reply:
        if suffix:
            return ERROR
        return Reply(
            info=(
                f"Manufacturer: {MANUFACTURER}",
                f"Model: {MODEL}",
                f"Revision: {FIRMWARE}",
                f"IMEI: {IMEI}",
            )
        )

    def _constant(self, suffix: str, value: str) -> Reply:
        if suffix == "":
            return Reply(info=(value,))
        return OK if suffix == "=?" else ERROR

    def _cimi(self, suffix: str) -> Reply:
        if suffix == "=?":
            return OK
        if suffix:
            return ERROR
        if not self.sim_inserted:
            return self._cme(CME_SIM_NOT_INSERTED)
        return Reply(info=(IMSI,))

    # -- error reporting, SIM, radio ------------------------------------------------

    def _cmee(self, suffix: str) -> Reply:
        if suffix == "?":
            return Reply(info=(f"+CMEE: {self.cmee}",))
        if suffix == "=?":
            return Reply(info=(f"+CMEE: (0-{self.firmware.cmee_max})",))
        match = _DIGIT.fullmatch(suffix)
        if match is None or int(match.group(1)) > self.firmware.cmee_max:
            return ERROR
        self.cmee = int(match.group(1))
        return OK

    def _cpin(self, suffix: str) -> Reply:
        if suffix == "=?":
            return OK
        if suffix == "?":
            if not self.sim_inserted:
                return self._cme(CME_SIM_NOT_INSERTED)
            return Reply(info=("+CPIN: READY",))
        if suffix.startswith("=") and len(suffix) > 1:
            if not self.sim_inserted:
                return self._cme(CME_SIM_NOT_INSERTED)
            return self._cme(CME_OPERATION_NOT_ALLOWED)
        return ERROR

    def _csq(self, suffix: str) -> Reply:
        if suffix == "":
            return Reply(info=(f"+CSQ: {self.rssi},99",))
        if suffix == "=?":
            return Reply(info=("+CSQ: (0-31,99),(0-7,99)",))
        return ERROR

    def _registration(self, suffix: str, name: str) -> Reply:
        if suffix == "?":
            mode = self.registration_urc_mode[name]
            stat = (1 if self.registered else 2) if self.sim_inserted else 0
            extra = ',"1A2B","01A2B3C4",7' if mode == 2 and stat == 1 else ""
            return Reply(info=(f"{name}: {mode},{stat}{extra}",))
        if suffix == "=?":
            return Reply(info=(f"{name}: (0-2)",))
        match = _DIGIT.fullmatch(suffix)
        if match is None or int(match.group(1)) > 2:
            return ERROR
        self.registration_urc_mode[name] = int(match.group(1))
        return OK

    # -- PDP context ----------------------------------------------------------------

    def _mipcall(self, suffix: str) -> Reply:
        if suffix == "?":
            if self.pdp_address is None:
                return Reply(info=("+MIPCALL: 0",))
            return Reply(info=(f'+MIPCALL: 1,"{self.pdp_address}"',))
        if suffix == "=?":
            return Reply(info=("+MIPCALL: (0-1)",))
        if suffix == "=0":
            if self.pdp_address is None:
                return self._cme(CME_OPERATION_NOT_ALLOWED)
            self.pdp_address = None
            # The instances' sockets were bound to the context's address: they go with it.
            return Reply(effects=self.coap.drop_all())
        match = _MIPCALL_UP.fullmatch(suffix)
        if match is None:
            return ERROR
        if not self.sim_inserted:
            return self._cme(CME_SIM_NOT_INSERTED)
        if not self.registered:
            return self._cme(CME_NO_NETWORK_SERVICE)
        if self.pdp_address is not None:
            return self._cme(CME_OPERATION_NOT_ALLOWED)
        if match.group(1) is not None:
            self.apn = match.group(1)
        self.pdp_address = PDP_ADDRESS
        return Reply(trailing=(f"+MIPCALL: {PDP_ADDRESS}",))

    def _mipprofile(self, suffix: str) -> Reply:
        if suffix == "?":
            return Reply(info=(f'+MIPPROFILE: 1,"{self.apn}"',))
        if suffix == "=?":
            return Reply(info=('+MIPPROFILE: (1),"APN","USER","PASSWORD"',))
        match = _MIPPROFILE.fullmatch(suffix)
        if match is None:
            return ERROR
        self.apn = match.group(1)
        return OK

    # -- CoAP instances -------------------------------------------------------------

    def _gtcoap_open(self, suffix: str) -> Reply:
        return self.coap.open(
            suffix, sim=self.sim_inserted, pdp_active=self.pdp_address is not None
        )

    def _gtcoap_send(self, suffix: str) -> Reply:
        return self.coap.send(
            suffix, sim=self.sim_inserted, pdp_active=self.pdp_address is not None
        )

    def _gtcoap_close(self, suffix: str) -> Reply:
        return self.coap.close(suffix, sim=self.sim_inserted)
