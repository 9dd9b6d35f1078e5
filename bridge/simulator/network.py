"""The simulated cellular network: UDP sockets per instance, added latency."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable

from bridge.simulator.gtcoap import is_ipv4_literal

logger = logging.getLogger(__name__)

# Name resolution answers ERROR after this long: the host's command timeout is ~5 s.
RESOLVE_TIMEOUT = 3.0
# asyncio may run a timer this much before its deadline.
_TIMER_SLACK = 1e-4


class DelayLine:
    """Runs actions `delay` seconds after they were pushed, in push order, on one timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self._loop = loop
        self._delay = delay
        self._queue: deque[tuple[float, Callable[[], None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def push(self, action: Callable[[], None]) -> None:
        due = self._loop.time() + self._delay
        self._queue.append((due, action))
        if self._timer is None:
            self._timer = self._loop.call_at(due, self._fire)

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()

    def _fire(self) -> None:
        self._timer = None
        deadline = self._loop.time() + _TIMER_SLACK
        while self._queue and self._queue[0][0] <= deadline:
            self._queue.popleft()[1]()
        if self._queue and self._timer is None:
            self._timer = self._loop.call_at(self._queue[0][0], self._fire)


class InstanceProtocol(asyncio.DatagramProtocol):
    """Hands every datagram of one instance's connected socket to `on_datagram`."""

    def __init__(self, coap_id: int, on_datagram: Callable[[bytes], None]) -> None:
        self._coap_id = coap_id
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: a real modem says nothing either.
        logger.debug("instance %d: socket error %s", self._coap_id, exc)


async def resolve_ipv4(host: str, port: int) -> str:
    """The IPv4 address the modem would send to (the L610 CoAP client is IPv4)."""
    if is_ipv4_literal(host):
        return ".".join(str(int(octet)) for octet in host.split("."))
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM),
        RESOLVE_TIMEOUT,
    )
    if not infos:
        raise OSError(f"no IPv4 address for {host!r}")
    return str(infos[0][4][0])
