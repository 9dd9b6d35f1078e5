"""Records the transcripts of tests/replay against the simulator and the aiocoap test
server: `python -m tests.transcripts.record` rewrites the `*.trace` files beside it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bridge.modem.l610 import L610
from bridge.simulator import L610Simulator
from tests.fixtures.coap_servers import start_aiocoap_server, stop_aiocoap_server
from tests.fixtures.modem import eventually
from tests.transcripts import scenarios

HERE = Path(__file__).parent
BRING_UP = HERE / "bring_up.trace"
BLOCKWISE = HERE / "blockwise_get.trace"
RESET = HERE / "reset_mid_request.trace"


async def record() -> None:
    server, ticker = await start_aiocoap_server()
    try:
        for path in (BRING_UP, BLOCKWISE, RESET):
            path.unlink(missing_ok=True)
        async with L610Simulator() as sim:
            await scenarios.bring_up(sim.port_path, str(BRING_UP))
        async with L610Simulator() as sim:
            await scenarios.get(sim.port_path, server.uri("/large"), str(BLOCKWISE))
        async with L610Simulator() as sim:

            async def reboot_once_acked(modem: L610) -> None:
                # The server ACKed the GET and works on its separate response: reset now.
                await eventually(lambda: sim.stats.datagrams_in >= 1)
                await sim.reboot()

            await scenarios.get(sim.port_path, server.uri("/slow?1"), str(RESET), reboot_once_acked)
    finally:
        await stop_aiocoap_server(server, ticker)


if __name__ == "__main__":
    asyncio.run(record())
    sys.exit(0)
