"""Peers for the driver tests: the simulator on a real pty, an AT engine, a UDP echo server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import pytest

from bridge.at.engine import AtEngine
from bridge.modem.driver import Datagram
from bridge.modem.l610 import L610
from bridge.simulator import L610Simulator
from tests.fixtures.modem import fast_engine, make_l610


class _Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.received.append(data)
        assert self.transport is not None
        self.transport.sendto(data, addr)


@dataclass
class EchoServer:
    port: int
    protocol: _Echo


@pytest.fixture
async def udp_echo() -> AsyncIterator[EchoServer]:
    """A plain UDP echo server on 127.0.0.1 (the CoAP server stand-in: the modem does no CoAP)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    try:
        yield EchoServer(transport.get_extra_info("sockname")[1], protocol)
    finally:
        transport.close()


@pytest.fixture
def sim(simulator: L610Simulator) -> L610Simulator:
    """The shared simulator fixture (tests/fixtures/simulator.py), 4 instances."""
    return simulator


@pytest.fixture
async def at(sim: L610Simulator) -> AsyncIterator[AtEngine]:
    async with fast_engine(sim.port_path) as engine:
        yield engine


@dataclass
class Recorder:
    """What the driver tells the layer above: datagrams and resets."""

    datagrams: list[Datagram] = field(default_factory=list)
    resets: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def on_datagram(self, datagram: Datagram) -> None:
        self.datagrams.append(datagram)
        self.arrived.set()

    def on_reset(self) -> None:
        self.resets += 1

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while len(self.datagrams) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def modem(at: AtEngine) -> AsyncIterator[L610]:
    async with make_l610(at) as driver:
        yield driver


@pytest.fixture
def recorder(modem: L610) -> Recorder:
    recorder = Recorder()
    modem.set_datagram_handler(recorder.on_datagram)
    modem.add_reset_listener(recorder.on_reset)
    return recorder
