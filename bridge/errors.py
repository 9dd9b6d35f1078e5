"""The exception hierarchy.

Every error the bridge raises derives from `BridgeError`. Each family carries the
`kind` string of the MQTT error object (see the MQTT contract), so the mapping from
exception to answer is written once, here.
"""

from __future__ import annotations

from typing import ClassVar


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""

    kind: ClassVar[str] = "internal"


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


class InvalidRequest(BridgeError):
    """A request cannot be served as written (bad JSON, field, URI, size...)."""

    kind = "invalid_request"


class ForbiddenTarget(BridgeError):
    """The request targets a host that is neither a configured server nor allowed."""

    kind = "forbidden_target"


class CoapTimeout(BridgeError):
    """No CoAP answer arrived in time."""

    kind = "timeout"


class CoapReset(BridgeError):
    """The CoAP server answered with a Reset (RST) message."""

    kind = "reset"


class Cancelled(BridgeError):
    """The request was cancelled: shutdown, or an explicit cancel request."""

    kind = "cancelled"


class ModemUnavailable(BridgeError):
    """The modem cannot be used now: port gone, not answering, not registered, no instance."""

    kind = "modem_unavailable"


class PortLost(ModemUnavailable):
    """The serial port vanished or failed while in use."""


class AtTimeout(ModemUnavailable):
    """An AT command got no final result code within its timeout."""


class ModemError(BridgeError):
    """The modem answered a command with an error result code.

    `code` is the numeric CME/CMS code when the modem gave one, `text` the modem's
    own words (``+CME ERROR: SIM not inserted`` gives text ``"SIM not inserted"``).
    """

    kind = "modem_error"

    def __init__(
        self, command: str, result: str, *, code: int | None = None, text: str = ""
    ) -> None:
        self.command = command
        self.result = result
        self.code = code
        self.text = text
        super().__init__(f"modem answered {command!r} with {result!r}")


class DatagramTooLarge(InvalidRequest):
    """A datagram or message does not fit in the modem's 512-byte limit."""


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


class UnexpectedReply(ModemUnavailable):
    """The modem answered a command with information lines the driver cannot read."""


class CoapProtocolError(BridgeError):
    """The CoAP server broke the protocol mid-exchange (a block-wise transfer that does
    not add up, a resource that changed between blocks...)."""
