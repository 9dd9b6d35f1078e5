"""The host side of each recorded transcript: the same code records it against the
simulator (`python -m tests.transcripts.record`) and replays it (tests/replay)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from aiocoap import GET, Message

from bridge.at.engine import AtEngine
from bridge.coap import CoapTransportSettings, ModemCoap
from bridge.modem.health import ModemHealth
from bridge.modem.l610 import L610
from tests.fixtures.modem import COMMAND_TIMEOUT, make_l610

# aiocoap's default timers: a replay a little slower than the recording must not make
# the host retransmit.
SETTINGS = CoapTransportSettings(instance_idle_close=30.0)
RESPONSE_TIMEOUT = 20.0

Hook = Callable[[L610], Awaitable[None]]


async def _layers(stack: AsyncExitStack, port: str, trace_file: str | None) -> L610:
    at = await stack.enter_async_context(
        AtEngine(
            port,
            command_timeout=COMMAND_TIMEOUT,
            reconnect_initial=0.05,
            reconnect_max=0.2,
            trace_file=trace_file,
        )
    )
    return await stack.enter_async_context(make_l610(at))


async def bring_up(port: str, trace_file: str | None = None) -> tuple[ModemHealth, list[int]]:
    """Bring-up, then the free instances: what the driver read of the modem."""
    async with AsyncExitStack() as stack:
        modem = await _layers(stack, port, trace_file)
        return modem.health(), await modem.free_instance_ids()


async def get(
    port: str,
    uri: str,
    trace_file: str | None = None,
    during: Hook | None = None,
) -> tuple[Message, int]:
    """One GET through the whole stack below aiocoap; `during(modem)` runs while it is
    in flight (the recording's fault). Returns the response and the modem's generation."""
    async with AsyncExitStack() as stack:
        modem = await _layers(stack, port, trace_file)
        coap = await stack.enter_async_context(ModemCoap(modem, SETTINGS))
        request = coap.request(Message(code=GET, uri=uri), timeout=RESPONSE_TIMEOUT)
        if during is None:
            response = await request
        else:
            async with asyncio.TaskGroup() as group:
                task = group.create_task(request)
                await during(modem)
            response = task.result()
        return response, modem.generation
