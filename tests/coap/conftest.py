"""The whole stack under the CoAP layer, for real: simulator on a pty, AtEngine, L610."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.at.engine import AtEngine
from bridge.coap import CoapTransportSettings, ModemCoap
from bridge.coap.oscore import SecurityContexts
from bridge.modem.l610 import L610
from bridge.simulator import L610Simulator
from tests.fixtures.modem import fast_engine, make_l610
from tests.fixtures.simulator import SimulatorFactory

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
    """`stack = await make_stack(settings, oscore, loss=..., instances=...)`: a ModemCoap on
    an L610 driver on an AtEngine on the simulator's pty (simulator options as keywords)."""
    async with AsyncExitStack() as exits:

        async def make(
            settings: CoapTransportSettings = FAST,
            oscore: SecurityContexts | None = None,
            **simulator_options: Any,
        ) -> Stack:
            sim = await simulator_factory(**simulator_options)
            at = await exits.enter_async_context(fast_engine(sim.port_path))
            modem = await exits.enter_async_context(make_l610(at))
            coap = await exits.enter_async_context(ModemCoap(modem, settings, oscore=oscore))
            return Stack(sim, at, modem, coap)

        yield make


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()
