"""Sans-IO interpreter of the Fibocom L610 AT dialect (the simulator's brain).

`L610Dialect.handle(line)` takes one command line (the bytes before CR, without it) and
returns what the modem writes back, in order: `bytes` to put on the serial line and
effect objects (`OpenInstance`, `SendDatagram`, `CloseInstance`) the shell performs on
real UDP sockets. `OpenInstance` needs a network answer, so it is always the last item:
the shell resolves and connects, then calls `finish_open(coap_id, ok)` for the reply.
Datagrams coming back go through `datagram_received(coap_id, data)`.

Line conventions (V.25ter): a command line ends at CR; LF around it is ignored; empty
lines are ignored; one command per line (no `;` concatenation). The `AT` prefix and
command names are case-insensitive, parameters are not. With echo on (the default
after boot, until `ATE0`) the command line is echoed as received, followed by CR.
Every response line is framed `\\r\\n<line>\\r\\n`. A line longer than 2048 bytes, a
non-ASCII line, a line without the `AT` prefix and any unknown command answer `ERROR`.

Answers: information lines, then the final result (`;` separates the forms):

- `AT`: `OK`.
- `ATE0`, `ATE1` (`ATE` = `ATE0`): `OK`, echo off / on.
- `ATI` (`ATI0`): `Manufacturer: Fibocom Wireless Inc.`, `Model: L610`,
  `Revision: 16000.1000.00.96.20.04`, `IMEI: 867584030123454`, `OK`.
- `AT+CGMI`, `AT+CGMM`, `AT+CGMR`, `AT+CGSN`: one line each, `Fibocom Wireless Inc.`,
  `L610`, `16000.1000.00.96.20.04`, `867584030123454` (15 digits, valid Luhn), `OK`;
  their `=?` forms: `OK`.
- `AT+CIMI`: `460001234567890`, `OK` (SIM error 10 without SIM).
- `AT+CMEE=<0-2>`: `OK`; `AT+CMEE?`: `+CMEE: <n>`; `AT+CMEE=?`: `+CMEE: (0-2)`.
- `AT+CPIN?`: `+CPIN: READY` (SIM error 10 without SIM); `AT+CPIN=<pin>`: error 3
  "operation not allowed" (already READY) or 10; `AT+CPIN=?`: `OK`.
- `AT+CSQ`: `+CSQ: <rssi>,99` (rssi 24 by default); `AT+CSQ=?`:
  `+CSQ: (0-31,99),(0-7,99)`.
- `AT+CEREG?`, `AT+CGREG?`: `+CEREG: <n>,<stat>` (stat 1 registered, 2 searching until
  `register_after` seconds after power-on, 0 without SIM); n=2 appends
  `,"1A2B","01A2B3C4",7` when registered. `AT+CEREG=<0-2>`: `OK` (n is stored; no
  registration URCs are ever sent); `AT+CEREG=?`: `+CEREG: (0-2)`. Same for CGREG.
- `AT+MIPCALL?`: `+MIPCALL: 0`, or `+MIPCALL: 1,"10.91.0.2"` when the context is up.
- `AT+MIPCALL=1[,"<apn>"[,"<user>","<password>"]]`: `OK`, then the line
  `+MIPCALL: 10.91.0.2` (unquoted, after the final result); no SIM: error 10; not
  registered: error 30 "no network service"; already active: error 3.
- `AT+MIPCALL=0`: `OK`, every GTCOAP instance is dropped with the context; not active:
  error 3. `AT+MIPCALL=?`: `+MIPCALL: (0-1)`.
- `AT+MIPPROFILE=1,"<apn>"[,"<user>","<password>"]`: `OK`; `AT+MIPPROFILE?`:
  `+MIPPROFILE: 1,"<apn>"`.
- `AT+GTCOAPOPEN="<host>",<port>`: `+GTCOAPOPEN: <coap_id>`, `OK`.
- `AT+GTCOAPOPEN?`: one `+GTCOAPOPEN: <coap_id>` per id still free, or
  `+GTCOAPOPEN: 0` when none is; `OK`.
- `AT+GTCOAPSEND=<coap_id>,<len>,"<HEX>"`: `OK` (the datagram is sent).
- `AT+GTCOAPCLOSE=<coap_id>`: `OK`, then the line `+GTCOAPCLOSE: 1`.
- Every other GTCOAP form (`AT+GTCOAPOPEN=?`, `?` and `=?` of SEND and CLOSE, bare
  commands): `ERROR`.
- URC per datagram received on an instance's socket:
  `+GTCOAPDATA: <coap_id>,<len>,<HEX>` (upper-case hex, unquoted).
- Boot lines after a reboot or replug: `RDY`, then `+CPIN: READY` (only `RDY` without
  SIM). None at the simulator's first start (the port appears after boot).

SIM/state errors ("error n" above) follow `AT+CMEE`: mode 0 `ERROR`, mode 1
`+CME ERROR: <n>`, mode 2 `+CME ERROR: <text>` (3 operation not allowed, 10 SIM not
inserted, 30 no network service). Syntax errors and every GTCOAP failure are plain
`ERROR` whatever the mode, as the L610 CoAP chapter says.

GTCOAP rules (strict, per the L610 CoAP AT chapter): the host must be quoted, 1 to
255 characters, and a dotted-digits host must be a valid IPv4 address; the port is
1-65535; ids are 1..instances, the lowest free id is handed out; SEND needs an open id,
1 <= len <= 512, quoted hex (either case accepted) of exactly 2*len digits; OPEN and SEND
need the SIM and an active PDP context (`AT+MIPCALL=1`); CLOSE of an id that is not
open is `ERROR`. No spaces are allowed anywhere in parameters. Datagrams received
larger than 512 bytes are dropped (the modem's buffer size).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_DATAGRAM = 512
MAX_HOST_LENGTH = 255
MAX_LINE = 2048

MANUFACTURER = "Fibocom Wireless Inc."
MODEL = "L610"
FIRMWARE = "16000.1000.00.96.20.04"
IMEI = "867584030123454"
IMSI = "460001234567890"
PDP_ADDRESS = "10.91.0.2"

CME_OPERATION_NOT_ALLOWED = 3
CME_SIM_NOT_INSERTED = 10
CME_NO_NETWORK_SERVICE = 30
CME_TEXT = {
    CME_OPERATION_NOT_ALLOWED: "operation not allowed",
    CME_SIM_NOT_INSERTED: "SIM not inserted",
    CME_NO_NETWORK_SERVICE: "no network service",
}


@dataclass(frozen=True, slots=True)
class OpenInstance:
    """Resolve `host`, connect a UDP socket to it, then call `finish_open(coap_id, ok)`."""

    coap_id: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """Send `data` as one UDP datagram on instance `coap_id`'s socket."""

    coap_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseInstance:
    """Close instance `coap_id`'s socket."""

    coap_id: int


Effect = OpenInstance | SendDatagram | CloseInstance
Output = bytes | Effect


@dataclass(frozen=True, slots=True)
class _Reply:
    info: tuple[str, ...] = ()
    final: str = "OK"
    # Lines the modem writes after the final result (CLOSE confirmation, MIPCALL address).
    trailing: tuple[str, ...] = ()
    effects: tuple[Effect, ...] = ()


_OK = _Reply()
_ERROR = _Reply(final="ERROR")
# Waiting for the network: finish_open() writes the reply.
_PENDING = ""

_SEND_PARAMS = re.compile(r'=(\d{1,10}),(\d{1,10}),"([0-9A-Fa-f]*)"')
_OPEN_PARAMS = re.compile(r'="([^"]*)",(\d{1,10})')
_ID_PARAM = re.compile(r"=(\d{1,10})")
_DIGIT = re.compile(r"=(\d)")
_DOTTED_DIGITS = re.compile(r"[0-9.]+")
_MIPCALL_UP = re.compile(r'=1(?:,"([^"]{0,100})"(?:,"([^"]{0,64})","([^"]{0,64})")?)?')
_MIPPROFILE = re.compile(r'=1,"([^"]{0,100})"(?:,"([^"]{0,64})","([^"]{0,64})")?')
_COMMAND_NAME = re.compile(r"[^=?]*")


def _frame(lines: list[str]) -> bytes:
    return "".join(f"\r\n{line}\r\n" for line in lines).encode("ascii")


def is_ipv4_literal(host: str) -> bool:
    """A dotted-quad with octets 0-255 written in 1 to 3 digits (leading zeros allowed)."""
    parts = host.split(".")
    if len(parts) != 4:
        return False
    return all(1 <= len(part) <= 3 and part.isdigit() and int(part) <= 255 for part in parts)


class L610Dialect:
    """One L610's AT state: echo, CMEE, SIM, registration, PDP context, CoAP instances."""

    def __init__(
        self,
        *,
        instances: int = 4,
        sim_inserted: bool = True,
        register_after: float = 0.0,
        rssi: int = 24,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if instances < 1:
            raise ValueError(f"instances must be at least 1, got {instances}")
        if not 0 <= rssi <= 31:
            raise ValueError(f"rssi must be 0-31, got {rssi}")
        self.instances = instances
        self.sim_inserted = sim_inserted
        self.register_after = register_after
        self.rssi = rssi
        self._clock = clock
        self.commands = 0
        self._swallow_finals = 0
        self._mid_reply_urcs: list[str] = []
        self._handlers: dict[str, Callable[[str], _Reply]] = {
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
            "+MIPCALL": self._mipcall,
            "+MIPPROFILE": self._mipprofile,
            "+GTCOAPOPEN": self._gtcoap_open,
            "+GTCOAPSEND": self._gtcoap_send,
            "+GTCOAPCLOSE": self._gtcoap_close,
        }
        self._power_on()

    def _power_on(self) -> None:
        self.echo = True
        self.cmee = 0
        self.registration_urc_mode = {"+CEREG": 0, "+CGREG": 0}
        self.pdp_address: str | None = None
        self.apn = ""
        self.open_ids: set[int] = set()
        self.opening_id: int | None = None
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
        if reply.final != _PENDING:
            out.append(self._render(reply))
        return out

    def line_too_long(self) -> bytes:
        """Answer a command line that overflowed the modem's input buffer."""
        self.commands += 1
        return self._render(_ERROR)

    def finish_open(self, coap_id: int, ok: bool) -> bytes:
        """The reply to the pending `AT+GTCOAPOPEN`, once the socket is (not) connected."""
        if self.opening_id != coap_id:
            return b""  # a reboot came in between: the command died with the modem
        self.opening_id = None
        if not ok:
            return self._render(_ERROR)
        self.open_ids.add(coap_id)
        return self._render(_Reply(info=(f"+GTCOAPOPEN: {coap_id}",)))

    def datagram_received(self, coap_id: int, data: bytes) -> bytes | None:
        """The `+GTCOAPDATA` URC for a datagram, or None when the modem drops it."""
        if coap_id not in self.open_ids or not 0 < len(data) <= MAX_DATAGRAM:
            return None
        return b"\r\n+GTCOAPDATA: %d,%d,%s\r\n" % (coap_id, len(data), data.hex().upper().encode())

    def reboot(self) -> bytes:
        """Forget everything volatile and return the boot lines."""
        self._power_on()
        self._swallow_finals = 0
        self._mid_reply_urcs.clear()
        lines = ["RDY", "+CPIN: READY"] if self.sim_inserted else ["RDY"]
        return _frame(lines)

    def swallow_next_final(self) -> None:
        """Fault: the next final result code is never written."""
        self._swallow_finals += 1

    def urc_mid_reply(self, line: str) -> None:
        """Fault: write `line` right after the first info line of the next reply having one."""
        self._mid_reply_urcs.append(line)

    @property
    def registered(self) -> bool:
        return self.sim_inserted and self._clock() - self._boot_time >= self.register_after

    # -- parsing --------------------------------------------------------------------

    def _dispatch(self, line: bytes) -> _Reply:
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            return _ERROR
        if text[:2].upper() != "AT":
            return _ERROR
        match = _COMMAND_NAME.match(text, 2)
        assert match is not None  # the pattern matches the empty string
        handler = self._handlers.get(match.group().upper())
        if handler is None:
            return _ERROR
        return handler(text[match.end() :])

    def _render(self, reply: _Reply) -> bytes:
        lines = list(reply.info)
        if self._mid_reply_urcs and lines:
            lines[1:1] = self._mid_reply_urcs
            self._mid_reply_urcs = []
        if self._swallow_finals:
            self._swallow_finals -= 1
        else:
            lines.append(reply.final)
        lines.extend(reply.trailing)
        return _frame(lines)

    def _cme(self, code: int) -> _Reply:
        if self.cmee == 1:
            return _Reply(final=f"+CME ERROR: {code}")
        if self.cmee == 2:
            return _Reply(final=f"+CME ERROR: {CME_TEXT[code]}")
        return _ERROR

    # -- basic and identity commands ------------------------------------------------

    def _at(self, suffix: str) -> _Reply:
        return _OK if suffix == "" else _ERROR

    def _echo_off(self, suffix: str) -> _Reply:
        if suffix:
            return _ERROR
        self.echo = False
        return _OK

    def _echo_on(self, suffix: str) -> _Reply:
        if suffix:
            return _ERROR
        self.echo = True
        return _OK

    def _identify(self, suffix: str) -> _Reply:
        if suffix:
            return _ERROR
        return _Reply(
            info=(
                f"Manufacturer: {MANUFACTURER}",
                f"Model: {MODEL}",
                f"Revision: {FIRMWARE}",
                f"IMEI: {IMEI}",
            )
        )

    def _constant(self, suffix: str, value: str) -> _Reply:
        if suffix == "":
            return _Reply(info=(value,))
        return _OK if suffix == "=?" else _ERROR

    def _cimi(self, suffix: str) -> _Reply:
        if suffix == "=?":
            return _OK
        if suffix:
            return _ERROR
        if not self.sim_inserted:
            return self._cme(CME_SIM_NOT_INSERTED)
        return _Reply(info=(IMSI,))

    # -- error reporting, SIM, radio ------------------------------------------------

    def _cmee(self, suffix: str) -> _Reply:
        if suffix == "?":
            return _Reply(info=(f"+CMEE: {self.cmee}",))
        if suffix == "=?":
            return _Reply(info=("+CMEE: (0-2)",))
        match = _DIGIT.fullmatch(suffix)
        if match is None or int(match.group(1)) > 2:
            return _ERROR
        self.cmee = int(match.group(1))
        return _OK

    def _cpin(self, suffix: str) -> _Reply:
        if suffix == "=?":
            return _OK
        if suffix == "?":
            if not self.sim_inserted:
                return self._cme(CME_SIM_NOT_INSERTED)
            return _Reply(info=("+CPIN: READY",))
        if suffix.startswith("=") and len(suffix) > 1:
            if not self.sim_inserted:
                return self._cme(CME_SIM_NOT_INSERTED)
            return self._cme(CME_OPERATION_NOT_ALLOWED)
        return _ERROR

    def _csq(self, suffix: str) -> _Reply:
        if suffix == "":
            return _Reply(info=(f"+CSQ: {self.rssi},99",))
        if suffix == "=?":
            return _Reply(info=("+CSQ: (0-31,99),(0-7,99)",))
        return _ERROR

    def _registration(self, suffix: str, name: str) -> _Reply:
        if suffix == "?":
            mode = self.registration_urc_mode[name]
            stat = (1 if self.registered else 2) if self.sim_inserted else 0
            extra = ',"1A2B","01A2B3C4",7' if mode == 2 and stat == 1 else ""
            return _Reply(info=(f"{name}: {mode},{stat}{extra}",))
        if suffix == "=?":
            return _Reply(info=(f"{name}: (0-2)",))
        match = _DIGIT.fullmatch(suffix)
        if match is None or int(match.group(1)) > 2:
            return _ERROR
        self.registration_urc_mode[name] = int(match.group(1))
        return _OK

    # -- PDP context ----------------------------------------------------------------

    def _mipcall(self, suffix: str) -> _Reply:
        if suffix == "?":
            if self.pdp_address is None:
                return _Reply(info=("+MIPCALL: 0",))
            return _Reply(info=(f'+MIPCALL: 1,"{self.pdp_address}"',))
        if suffix == "=?":
            return _Reply(info=("+MIPCALL: (0-1)",))
        if suffix == "=0":
            if self.pdp_address is None:
                return self._cme(CME_OPERATION_NOT_ALLOWED)
            self.pdp_address = None
            # The instances' sockets were bound to the context's address: they go with it.
            effects = tuple(CloseInstance(coap_id) for coap_id in sorted(self.open_ids))
            self.open_ids.clear()
            return _Reply(effects=effects)
        match = _MIPCALL_UP.fullmatch(suffix)
        if match is None:
            return _ERROR
        if not self.sim_inserted:
            return self._cme(CME_SIM_NOT_INSERTED)
        if not self.registered:
            return self._cme(CME_NO_NETWORK_SERVICE)
        if self.pdp_address is not None:
            return self._cme(CME_OPERATION_NOT_ALLOWED)
        if match.group(1) is not None:
            self.apn = match.group(1)
        self.pdp_address = PDP_ADDRESS
        return _Reply(trailing=(f"+MIPCALL: {PDP_ADDRESS}",))

    def _mipprofile(self, suffix: str) -> _Reply:
        if suffix == "?":
            return _Reply(info=(f'+MIPPROFILE: 1,"{self.apn}"',))
        if suffix == "=?":
            return _Reply(info=('+MIPPROFILE: (1),"APN","USER","PASSWORD"',))
        match = _MIPPROFILE.fullmatch(suffix)
        if match is None:
            return _ERROR
        self.apn = match.group(1)
        return _OK

    # -- CoAP instances -------------------------------------------------------------

    def _free_ids(self) -> list[int]:
        taken = self.open_ids if self.opening_id is None else {*self.open_ids, self.opening_id}
        return [coap_id for coap_id in range(1, self.instances + 1) if coap_id not in taken]

    def _gtcoap_open(self, suffix: str) -> _Reply:
        if not self.sim_inserted:
            return _ERROR
        if suffix == "?":
            free = self._free_ids() or [0]
            return _Reply(info=tuple(f"+GTCOAPOPEN: {coap_id}" for coap_id in free))
        match = _OPEN_PARAMS.fullmatch(suffix)
        if match is None or self.pdp_address is None:
            return _ERROR
        host, port = match.group(1), int(match.group(2))
        if not 1 <= len(host) <= MAX_HOST_LENGTH or not 1 <= port <= 65535:
            return _ERROR
        if _DOTTED_DIGITS.fullmatch(host) and not is_ipv4_literal(host):
            return _ERROR
        free = self._free_ids()
        if not free:
            return _ERROR
        self.opening_id = free[0]
        return _Reply(final=_PENDING, effects=(OpenInstance(free[0], host, port),))

    def _gtcoap_send(self, suffix: str) -> _Reply:
        match = _SEND_PARAMS.fullmatch(suffix)
        if match is None or not self.sim_inserted or self.pdp_address is None:
            return _ERROR
        coap_id, length, hex_data = int(match.group(1)), int(match.group(2)), match.group(3)
        if coap_id not in self.open_ids or not 1 <= length <= MAX_DATAGRAM:
            return _ERROR
        if len(hex_data) != 2 * length:
            return _ERROR
        return _Reply(effects=(SendDatagram(coap_id, bytes.fromhex(hex_data)),))

    def _gtcoap_close(self, suffix: str) -> _Reply:
        match = _ID_PARAM.fullmatch(suffix)
        if match is None or not self.sim_inserted:
            return _ERROR
        coap_id = int(match.group(1))
        if coap_id not in self.open_ids:
            return _ERROR
        self.open_ids.discard(coap_id)
        return _Reply(trailing=("+GTCOAPCLOSE: 1",), effects=(CloseInstance(coap_id),))
