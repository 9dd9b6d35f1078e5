"""CoAP requests/s through the modem stack alone: ModemCoap, the L610 driver, the AT engine.

    .venv/bin/python -m bench.modem_coap [--requests N] [--latency-ms MS]

No MQTT and no daemon process: one event loop runs the bench CoAP server, the simulator
(unthrottled, with `--latency-ms` added each way) and the bridge's CoAP layer over it,
and prints req/s with 1 and with 32 POSTs of `/echo` in flight, each answer checked
against its request. It sits between `bench.floors` (a modem that answers at once) and
the end-to-end figures of `bench.run`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence

from aiocoap import POST, Message

from bench.coap_server import bench_site, serving
from bridge.at.engine import AtEngine
from bridge.coap import CoapTransportSettings, ModemCoap
from bridge.modem.l610 import L610
from bridge.simulator import L610Simulator
from bridge.tools.loopback import free_port

WARM_UP = 20  # first instance open, caches
IN_FLIGHT = (1, 32)


async def measure(coap: ModemCoap, uri: str, total: int, in_flight: int) -> float:
    """Requests/s of `total` echo POSTs with `in_flight` outstanding."""
    slots = asyncio.Semaphore(in_flight)

    async def one(n: int) -> None:
        async with slots:
            response = await coap.request(
                Message(code=POST, uri=uri, payload=b"%d" % n), timeout=30
            )
            if response.payload != b"%d" % n:
                raise RuntimeError(f"request {n} answered {response.payload!r}")

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for n in range(total):
            group.create_task(one(n))
    return total / (time.perf_counter() - started)


async def run(total: int, latency_ms: float) -> dict[int, float]:
    """in flight -> requests/s, printed as they are measured."""
    port = free_port(socket.SOCK_DGRAM)
    uri = f"coap://127.0.0.1:{port}/echo"
    rates: dict[int, float] = {}
    async with (
        serving(bench_site(Counter()), [port]),
        L610Simulator(latency_ms=latency_ms) as sim,
        AtEngine(sim.port_path) as at,
        L610(at) as modem,
        ModemCoap(modem, CoapTransportSettings()) as coap,
    ):
        await measure(coap, uri, WARM_UP, 1)
        for in_flight in IN_FLIGHT:
            rate = rates[in_flight] = await measure(coap, uri, total, in_flight)
            print(f"{in_flight:>2} in flight: {rate:7.0f} requests/s ({total} requests)")
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.modem_coap", description=__doc__)
    parser.add_argument("--requests", type=int, default=500, help="per case (default 500)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added one-way latency (default 0)"
    )
    options = parser.parse_args(argv)
    asyncio.run(run(options.requests, options.latency_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
