"""`mqtt-coap-bridge simulate`: run a simulated L610 until SIGTERM/SIGINT.

The first line on stdout is the stable port path (flushed), then the simulator serves
until killed. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import selectors
import signal
import sys

from bridge.simulator.control import ControlServer
from bridge.simulator.firmware import FIRMWARES
from bridge.simulator.simulator import L610Simulator

# One socket per instance must fit under select()'s descriptor limit of 1024.
MAX_INSTANCES = 256


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqtt-coap-bridge simulate",
        description="A Fibocom L610 on a pseudo-terminal, with real UDP sockets.",
    )
    parser.add_argument(
        "--instances", type=int, default=4, help=f"CoAP instances (4, at most {MAX_INSTANCES})"
    )
    parser.add_argument(
        "--baud", type=int, default=None, help="pace the line to baud/10 bytes/s each way"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="one-way latency per datagram"
    )
    parser.add_argument("--loss", type=float, default=0.0, help="datagram loss probability")
    parser.add_argument("--seed", type=int, default=0, help="seed of the loss draws")
    parser.add_argument("--control", default=None, help="unix socket for fault injection")
    parser.add_argument("--no-sim", action="store_true", help="start without a SIM card")
    parser.add_argument(
        "--register-after", type=float, default=0.0, help="seconds until registered"
    )
    parser.add_argument(
        "--firmware",
        choices=sorted(FIRMWARES),
        default="standard",
        help="firmware variant (see the simulator's README)",
    )
    parser.add_argument(
        "--boot-line",
        action="append",
        default=[],
        metavar="LINE",
        help="an unknown line printed after the boot lines (repeatable)",
    )
    parser.add_argument("--log-level", default="WARNING", help="stderr log level")
    return parser


def run(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.instances > MAX_INSTANCES:
        print(f"simulate: --instances is at most {MAX_INSTANCES}", file=sys.stderr)
        return 2
    try:
        simulator = L610Simulator(
            instances=args.instances,
            baud=args.baud,
            latency_ms=args.latency_ms,
            loss=args.loss,
            seed=args.seed,
            sim_inserted=not args.no_sim,
            register_after=args.register_after,
            firmware=FIRMWARES[args.firmware].with_extra_boot_lines(tuple(args.boot_line)),
        )
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=_precise_timer_loop) as runner:
        return runner.run(_serve(simulator, args.control))


def _precise_timer_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers fire within tens of microseconds of their deadline.

    The default loop waits in epoll, whose timeout has millisecond granularity: every
    paced byte run on the serial line (a byte takes 87 us at 115200 baud) would end up to
    a millisecond late, and a line that idles that long around each command carries far
    less than a real UART. select() takes a microsecond timeout; the simulator watches a
    handful of descriptors (the pty, one socket per instance, the control socket): at
    most MAX_INSTANCES of them, well under its limit of 1024.
    """
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


async def _serve(simulator: L610Simulator, control_path: str | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with simulator, contextlib.AsyncExitStack() as stack:
        if control_path is not None:
            await stack.enter_async_context(ControlServer(simulator, control_path))
        print(simulator.port_path, flush=True)
        await stop.wait()
    return 0
