"""Which broker node to connect to next, for `mqtt.hosts` (sans-IO: no sockets, no clock).

`BrokerRotation(addresses, backoff)` starts on the first address. `failed()` is called
when an attempt failed or an established link was lost: it moves to the next address
and returns how long to wait before trying it, 0 while the current round still has
untried nodes, a `Backoff` step once every node failed in a row. `connected()` ends
the round (and resets the backoff), so the next loss tries the other nodes at once.
A single address (`host`/`port`) is a rotation of one: the plain reconnect backoff.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.backoff import Backoff


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_broker_address(text: str, default_port: int = 1883) -> BrokerAddress:
    """`node1:1883`, `node1` (default port), `[2001:db8::1]:1883`, `10.0.0.5`.

    ValueError with the reason for anything else.
    """
    text = text.strip()
    if not text:
        raise ValueError("a broker address must not be empty")
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host:
            raise ValueError(f"{text!r}: an IPv6 address is written [address]:port")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':port' after ']'")
        port_text = rest[1:] if rest else ""
        if rest == ":":
            raise ValueError(f"{text!r}: a port must follow ':'")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text:
            raise ValueError(f"{text!r}: a port must follow ':'")
    elif ":" in text:
        raise ValueError(f"{text!r}: write an IPv6 address with a port as [address]:port")
    else:
        host, port_text = text, ""
    if not host or any(char.isspace() for char in host):
        raise ValueError(f"{text!r}: the host name is empty or contains spaces")
    if not port_text:
        return BrokerAddress(host, default_port)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return BrokerAddress(host, int(port_text))


class BrokerRotation:
    def __init__(self, addresses: tuple[BrokerAddress, ...], backoff: Backoff) -> None:
        if not addresses:
            raise ValueError("at least one broker address is needed")
        self.addresses = addresses
        self._backoff = backoff
        self._index = 0
        self._failures_in_round = 0

    @property
    def current(self) -> BrokerAddress:
        return self.addresses[self._index]

    def link_held(self) -> None:
        """A link stayed up long enough to count: the round and the backoff start over.

        A link dropped right after its CONNACK (a session takeover, a broker that kicks
        us) counts as a failure of that node, so such drops slow down like refusals.
        """
        self._failures_in_round = 0
        self._backoff.reset()

    def failed(self) -> float:
        """Move on to the next node; the wait before trying it (seconds)."""
        self._failures_in_round += 1
        self._index = (self._index + 1) % len(self.addresses)
        if self._failures_in_round < len(self.addresses):
            return 0.0
        return self._backoff.next()
