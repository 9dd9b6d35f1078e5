"""Peers for the simulator's own tests: a UDP echo server, a raw port on the simulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import cast

import pytest

from bridge.simulator import L610Simulator
from tests.simulator.raw_port import RawPort


class UdpEcho(asyncio.DatagramProtocol):
    """Echoes every datagram back to its sender and remembers it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.arrivals: list[float] = []  # time.monotonic() of each datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)
        self.arrivals.append(time.monotonic())
        assert self.transport is not None
        self.transport.sendto(data, addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port


@pytest.fixture
async def udp_echo() -> AsyncIterator[UdpEcho]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", 0))
    yield protocol
    transport.close()


@pytest.fixture
async def raw_port(simulator: L610Simulator) -> AsyncIterator[RawPort]:
    port = RawPort(simulator.port_path)
    yield port
    port.close()
