"""The exception hierarchy.

Every error the bridge raises derives from `BridgeError`. Each family names, in its
class statement, the `kind` string of the MQTT error object (see the MQTT contract), so
the mapping from exception to answer is written once, here.
"""

from __future__ import annotations

from typing import Any, ClassVar


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""

    kind: ClassVar[str] = "internal"

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is not None:
            cls.kind = kind


class ConfigError(BridgeError):
    """The configuration file is missing, unreadable or invalid.

    `problems` holds one human-readable line per problem, each naming the dotted key
    path and, when known, the line in the file.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        count = len(problems)
        summary = "; ".join(problems)
        super().__init__(f"{source}: {count} problem{'s' if count != 1 else ''}: {summary}")


# -- the request as written ---------------------------------------------------------------


class InvalidRequest(BridgeError, kind="invalid_request"):
    """A request cannot be served as written (bad JSON, field, URI, size...)."""


class DatagramTooLarge(InvalidRequest):
    """A datagram or message does not fit in the modem's 512-byte limit."""


class ForbiddenTarget(BridgeError, kind="forbidden_target"):
    """The request targets a host that is neither a configured server nor allowed."""


# -- the CoAP exchange --------------------------------------------------------------------


class CoapTimeout(BridgeError, kind="timeout"):
    """No CoAP answer arrived in time."""


class CoapReset(BridgeError, kind="reset"):
    """The CoAP server answered with a Reset (RST) message."""


class CoapProtocolError(BridgeError):
    """The CoAP server broke the protocol mid-exchange (a block-wise transfer that does
    not add up, a resource that changed between blocks...)."""


class Cancelled(BridgeError, kind="cancelled"):
    """The request was cancelled: shutdown, or an explicit cancel request."""


class SecurityError(BridgeError, kind="security"):
    """OSCORE (RFC 8613) failed: a response did not verify, the server refused our
    protection (an unprotected error such as 4.01), a replay, or a security context
    that cannot be loaded or used. The message names the server alias."""


# -- the modem ----------------------------------------------------------------------------


class ModemUnavailable(BridgeError, kind="modem_unavailable"):
    """The modem cannot be used now: port gone, not answering, not registered, no instance."""


class PortLost(ModemUnavailable):
    """The serial port vanished or failed while in use."""


class AtTimeout(ModemUnavailable):
    """An AT command got no final result code within its timeout."""


class UnexpectedReply(ModemUnavailable):
    """The modem answered a command with information lines the driver cannot read."""


class ModemError(BridgeError, kind="modem_error"):
    """The modem answered a command with an error result code.

    `code` is the numeric CME/CMS code when the modem gave one, `text` the modem's
    own words (``+CME ERROR: SIM not inserted`` gives text ``"SIM not inserted"``).
    """

    def __init__(
        self, command: str, result: str, *, code: int | None = None, text: str = ""
    ) -> None:
        self.command = command
        self.result = result
        self.code = code
        self.text = text
        super().__init__(f"modem answered {command!r} with {result!r}")


class TranscriptError(BridgeError):
    """The AT transcript file (`modem.trace_file`, `--trace-at`, `--trace`) cannot be
    written."""


class MalformedUrc(BridgeError):
    """An unsolicited line from the modem does not follow its documented form.

    `line` is the offending line, `reason` what is wrong with it. The driver counts,
    logs and drops such lines; it never lets one stop the engine.
    """

    def __init__(self, line: str, reason: str) -> None:
        self.line = line
        self.reason = reason
        shown = line if len(line) <= 80 else f"{line[:77]}..."
        super().__init__(f"malformed modem line ({reason}): {shown!r}")
