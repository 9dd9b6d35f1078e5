"""Measure CoAP requests/s through the whole stack over an unthrottled simulator.

    .venv/bin/python -m tests.coap.throughput [requests [one-way latency ms]]

Prints req/s with 1 and with 32 requests in flight (a measurement, not a test). The
simulator adds the given network latency each way (default 0: unthrottled).
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiocoap import POST, Message

from bridge.at.engine import AtEngine
from bridge.coap import CoapTransportSettings, ModemCoap
from bridge.modem.l610 import L610
from bridge.simulator import L610Simulator
from tests.fixtures.coap_servers import _start_aiocoap_server, _stop_aiocoap_server


async def measure(coap: ModemCoap, uri: str, total: int, in_flight: int) -> float:
    slots = asyncio.Semaphore(in_flight)

    async def one(n: int) -> None:
        async with slots:
            response = await coap.request(
                Message(code=POST, uri=uri, payload=b"%d" % n), timeout=30
            )
            assert response.payload == b"%d" % n

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(total)))
    return total / (time.perf_counter() - started)


async def main(total: int, latency_ms: float) -> None:
    server, ticker = await _start_aiocoap_server()
    try:
        async with (
            L610Simulator(latency_ms=latency_ms) as sim,
            AtEngine(sim.port_path) as at,
            L610(at) as modem,
            ModemCoap(modem, CoapTransportSettings()) as coap,
        ):
            uri = server.uri("/echo")
            await measure(coap, uri, 20, 1)  # warm up: instance open, caches
            for in_flight in (1, 32):
                rate = await measure(coap, uri, total, in_flight)
                print(f"{in_flight:>2} in flight: {rate:7.0f} requests/s ({total} requests)")
    finally:
        await _stop_aiocoap_server(server, ticker)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    asyncio.run(
        main(
            int(arguments[0]) if arguments else 500,
            float(arguments[1]) if len(arguments) > 1 else 0.0,
        )
    )
