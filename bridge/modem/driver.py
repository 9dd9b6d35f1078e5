"""The seam between the CoAP transport and a modem: what every driver provides."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, Self

from bridge.modem.health import ModemHealth


@dataclass(frozen=True, slots=True)
class Datagram:
    """One UDP datagram received by the modem for client instance `coap_id`."""

    coap_id: int
    data: bytes


# The modem a task or callback works for; log records take it (`bridge.ops.logs`).
current_modem: ContextVar[str | None] = ContextVar("current_modem", default=None)


@dataclass(frozen=True, slots=True)
class DriverOptions:
    """What a driver is built with besides its AT engine (from the modem's config entry)."""

    name: str
    apn: str = ""
    command_timeout: float = 5.0
    registration_timeout: float = 60.0


class ModemDriver(Protocol):
    """One modem that carries CoAP datagrams through client instances bound to a server.

    `generation` is bumped on every reset or port loss (each instance opened before is
    gone); reset listeners are called then. `max_datagram` and `block_size_exp` are the
    modem's limits: the largest datagram it carries and the block size (RFC 7959 SZX)
    whose blocks, with header and options, fit in one.
    """

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def port(self) -> str: ...

    @property
    def ready(self) -> bool: ...

    @property
    def generation(self) -> int: ...

    @property
    def max_datagram(self) -> int: ...

    @property
    def block_size_exp(self) -> int: ...

    @property
    def line_backlog(self) -> int: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def wait_ready(self, timeout: float | None = None) -> None: ...  # noqa: ASYNC109

    def health(self) -> ModemHealth: ...

    async def open(self, host: str, port: int) -> int: ...

    def submit_send(self, coap_id: int, datagram: bytes) -> asyncio.Future[list[str]]: ...

    async def close(self, coap_id: int) -> None: ...

    async def free_instance_ids(self) -> list[int]: ...

    def set_datagram_handler(self, handler: Callable[[Datagram], None]) -> None: ...

    def add_reset_listener(self, handler: Callable[[], None]) -> None: ...
