"""The whole stack under the CoAP layer, for real: simulator on a pty, AtEngine, L610."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.at.engine import AtEngine
from bridge.coap import CoapTransportSettings, ModemCoap
from bridge.modem.l610 import L610
from bridge.simulator import L610Simulator
from tests.fixtures.simulator import SimulatorFactory

COMMAND_TIMEOUT = 1.0
# Short RFC 7252 timers so retransmission tests take seconds, not minutes.
FAST = CoapTransportSettings(ack_timeout=0.25, max_retransmit=4, instance_idle_close=30.0)


@dataclass
class Stack:
    sim: L610Simulator
    at: AtEngine
    modem: L610
    coap: ModemCoap


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def make_stack(simulator_factory: SimulatorFactory) -> AsyncIterator[StackFactory]:
    """`stack = await make_stack(settings, loss=..., instances=...)`: a ModemCoap on an L610
    driver on an AtEngine on the simulator's pty (simulator options as keywords)."""
    async with AsyncExitStack() as exits:

        async def make(settings: CoapTransportSettings = FAST, **simulator_options: Any) -> Stack:
            sim = await simulator_factory(**simulator_options)
            at = await exits.enter_async_context(
                AtEngine(
                    sim.port_path,
                    command_timeout=COMMAND_TIMEOUT,
                    reconnect_initial=0.05,
                    reconnect_max=0.2,
                )
            )
            modem = await exits.enter_async_context(
                L610(
                    at,
                    command_timeout=COMMAND_TIMEOUT,
                    registration_timeout=5.0,
                    pdp_timeout=5.0,
                    retry_initial=0.05,
                    retry_max=0.5,
                    boot_settle=0.1,
                )
            )
            coap = await exits.enter_async_context(ModemCoap(modem, settings))
            return Stack(sim, at, modem, coap)

        yield make


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()


async def eventually(condition: Callable[[], bool], within: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition still false after {within} s")
        await asyncio.sleep(0.01)
