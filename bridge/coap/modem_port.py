"""What the CoAP transport needs from the modem driver (structurally, `bridge.modem.L610`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from bridge.modem.codec import Datagram


class CoapModem(Protocol):
    @property
    def generation(self) -> int: ...

    @property
    def ready(self) -> bool: ...

    @property
    def port(self) -> str: ...

    async def wait_ready(self, timeout: float | None = None) -> None: ...  # noqa: ASYNC109

    async def open(self, host: str, port: int) -> int: ...

    def submit_send(self, coap_id: int, datagram: bytes) -> asyncio.Future[list[str]]: ...

    async def close(self, coap_id: int) -> None: ...

    async def free_instance_ids(self) -> list[int]: ...

    def set_datagram_handler(self, handler: Callable[[Datagram], None]) -> None: ...

    def add_reset_listener(self, handler: Callable[[], None]) -> None: ...
