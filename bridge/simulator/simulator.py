"""The asyncio shell around `L610Dialect`: a pty, real UDP sockets, faults.

`async with L610Simulator() as sim:` gives a modem on `sim.port_path`, a stable symlink
to the current pty slave. The simulator is a separate peer: the host only ever talks to
it through that path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import socket
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from bridge.simulator.dialect import (
    CloseInstance,
    L610Dialect,
    OpenInstance,
    Output,
    SendDatagram,
)
from bridge.simulator.firmware import STANDARD, Firmware
from bridge.simulator.lines import CommandSplitter, LineTooLong
from bridge.simulator.network import DelayLine, InstanceProtocol, resolve_ipv4
from bridge.simulator.pacing import baud_to_bytes_per_second
from bridge.simulator.port import PtyPort
from bridge.simulator.stats import Counters, SimulatorStats

logger = logging.getLogger(__name__)

LINK_NAME = "ttyL610"
RECEIVE_BUFFER = 1 << 20


@dataclass(eq=False, slots=True)
class _Instance:
    coap_id: int
    transport: asyncio.DatagramTransport | None = None


class L610Simulator:
    """A Fibocom L610 on a pseudo-terminal (see `bridge.simulator.dialect` for the AT dialect).

    baud: pace both directions of the serial line to baud/10 bytes/s (None: unthrottled).
    latency_ms: one-way network latency added to each datagram, each direction.
    loss: probability of losing each datagram, each direction, drawn from `seed`.
    sim_inserted=False: AT+CPIN? answers SIM error 10. register_after: seconds after
    power-on before AT+CEREG?/AT+CGREG? report registered (stat 2 "searching" until then).
    firmware: the build's variant (`bridge.simulator.firmware.FIRMWARES`).
    """

    def __init__(
        self,
        *,
        instances: int = 4,
        baud: int | None = None,
        latency_ms: float = 0.0,
        loss: float = 0.0,
        seed: int = 0,
        sim_inserted: bool = True,
        register_after: float = 0.0,
        rssi: int = 24,
        firmware: Firmware = STANDARD,
    ) -> None:
        if baud is not None and baud <= 0:
            raise ValueError(f"baud must be positive, got {baud}")
        if latency_ms < 0:
            raise ValueError(f"latency_ms must not be negative, got {latency_ms}")
        if not 0.0 <= loss <= 1.0:
            raise ValueError(f"loss must be a probability 0-1, got {loss}")
        self._bytes_per_second = None if baud is None else baud_to_bytes_per_second(baud)
        self._latency = latency_ms / 1000.0
        self._loss = loss
        # One generator per direction: the loss pattern of one direction does not depend
        # on how the other direction's traffic interleaves with it.
        self._uplink_rng = random.Random(f"{seed}:uplink")
        self._downlink_rng = random.Random(f"{seed}:downlink")
        self._dialect = L610Dialect(
            instances=instances,
            sim_inserted=sim_inserted,
            register_after=register_after,
            rssi=rssi,
            firmware=firmware,
        )
        self._counters = Counters()
        self._splitter = CommandSplitter()
        self._pending_lines: deque[bytes | LineTooLong] = deque()
        self._instances: dict[int, _Instance] = {}
        self._open_task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._replug_timer: asyncio.TimerHandle | None = None
        self._plugged = asyncio.Event()
        self._port: PtyPort | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link_dir: str | None = None

    # -- lifetime -----------------------------------------------------------------------

    async def __aenter__(self) -> L610Simulator:
        self._loop = asyncio.get_running_loop()
        self._uplink = DelayLine(self._loop, self._latency)
        self._downlink = DelayLine(self._loop, self._latency)
        self._link_dir = tempfile.mkdtemp(prefix="l610-sim-")
        self._plug_in()
        logger.info("simulated L610 on %s (%s)", self.port_path, self.device_path)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._replug_timer is not None:
            self._replug_timer.cancel()
            self._replug_timer = None
        await self._drop_volatile_state()
        if self._port is not None:
            self._port.close()
            self._port = None
        self._plugged.clear()
        if self._link_dir is not None:
            shutil.rmtree(self._link_dir, ignore_errors=True)
            self._link_dir = None

    @property
    def port_path(self) -> str:
        """The stable path of the serial port (a symlink, absent while unplugged)."""
        if self._link_dir is None:
            raise RuntimeError("the simulator is not running (use `async with`)")
        return os.path.join(self._link_dir, LINK_NAME)

    @property
    def device_path(self) -> str | None:
        """The pty slave the port path points at now, None while unplugged."""
        return None if self._port is None else self._port.device_path

    @property
    def plugged(self) -> bool:
        return self._port is not None

    async def wait_plugged(self) -> None:
        await self._plugged.wait()

    @property
    def stats(self) -> SimulatorStats:
        counters = self._counters
        return SimulatorStats(
            bytes_in=counters.bytes_in,
            bytes_out=counters.bytes_out,
            bytes_dropped=counters.bytes_dropped,
            commands=self._dialect.commands,
            datagrams_out=counters.datagrams_out,
            datagrams_in=counters.datagrams_in,
            max_datagram_out=counters.max_datagram_out,
            datagrams_lost=counters.datagrams_lost,
            urcs=counters.urcs,
            instances_open=len(self._instances),
            reboots=counters.reboots,
            unplugs=counters.unplugs,
        )

    # -- faults -------------------------------------------------------------------------

    async def reboot(self) -> None:
        """Reset: instances, sockets and PDP context gone, CMEE 0, echo on, boot lines."""
        self._counters.reboots += 1
        await self._drop_volatile_state()
        boot_lines = self._dialect.reboot()
        if self._port is not None:
            self._port.write(boot_lines)
        logger.info("simulated L610 rebooted")

    async def unplug(self, seconds: float) -> None:
        """Unplug now; plug back in (new pty, same path, after a reboot) `seconds` later.

        Returns once unplugged; `wait_plugged()` waits for the replug. Unplugging while
        unplugged moves the replug to `seconds` from now.
        """
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds}")
        loop = self._running_loop()
        self._counters.unplugs += 1
        await self._drop_volatile_state()
        self._dialect.reboot()
        if self._port is not None:
            self._port.close()
            self._port = None
        self._plugged.clear()
        logger.info("simulated L610 unplugged for %.1f s", seconds)
        if self._replug_timer is not None:
            self._replug_timer.cancel()
        self._replug_timer = loop.call_later(seconds, self._replug)

    def inject_raw(
        self, data: bytes, chunk_size: int | None = None, chunk_delay: float = 0.0
    ) -> None:
        """Write `data` to the host as is, whole or in chunks `chunk_delay` s apart."""
        if chunk_size is None:
            self._write(data)
            return
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        chunks = deque(data[i : i + chunk_size] for i in range(0, len(data), chunk_size))
        self._write_chunks(chunks, chunk_delay)

    def urc(self, line: str) -> None:
        """Write `line` as the modem frames an unsolicited line (an unknown URC, say)."""
        self._counters.urcs += 1
        self._write(f"\r\n{line}\r\n".encode())

    def drop_pdp(self) -> None:
        """The network releases the PDP context: `+MIPCALL: 0`, every instance gone."""
        self._perform(self._dialect.drop_context())

    def swallow_next_final(self) -> None:
        """The next final result code (OK, ERROR, +CME ERROR) is never written."""
        self._dialect.swallow_next_final()

    def urc_mid_reply(self, line: str) -> None:
        """Write `line` after the first info line of the next reply that has one."""
        self._dialect.urc_mid_reply(line)

    # -- internals: port ----------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the simulator is not running (use `async with`)")
        return self._loop

    def _plug_in(self) -> None:
        self._splitter.reset()
        self._port = PtyPort(
            self._running_loop(),
            self.port_path,
            bytes_per_second=self._bytes_per_second,
            on_data=self._on_input,
            counters=self._counters,
        )
        self._plugged.set()

    def _replug(self) -> None:
        self._replug_timer = None
        if self._link_dir is None or self._port is not None:
            return
        self._plug_in()
        self._write(self._dialect.reboot())
        logger.info("simulated L610 plugged in again on %s", self.device_path)

    def _write(self, data: bytes) -> None:
        if self._port is None:
            self._counters.bytes_dropped += len(data)
        else:
            self._port.write(data)

    def _write_chunks(self, chunks: deque[bytes], delay: float) -> None:
        self._write(chunks.popleft())
        if chunks:
            self._call_later(self._running_loop(), delay, self._write_chunks, chunks, delay)

    def _call_later(
        self,
        loop: asyncio.AbstractEventLoop,
        delay: float,
        callback: Callable[..., None],
        *args: object,
    ) -> None:
        def fire() -> None:
            self._timers.discard(timer)
            callback(*args)

        timer = loop.call_later(delay, fire)
        self._timers.add(timer)

    # -- internals: commands ------------------------------------------------------------

    def _on_input(self, data: bytes) -> None:
        self._pending_lines.extend(self._splitter.feed(data))
        self._run_commands()

    def _run_commands(self) -> None:
        # One command at a time: an OPEN waiting for the network holds the rest back.
        while self._pending_lines and self._open_task is None:
            event = self._pending_lines.popleft()
            if isinstance(event, LineTooLong):
                logger.debug("command line too long (%d bytes)", event.dropped)
                self._write(self._dialect.line_too_long())
                continue
            self._perform(self._dialect.handle(event))

    def _perform(self, outputs: list[Output]) -> None:
        for item in outputs:
            if isinstance(item, bytes):
                self._write(item)
            elif isinstance(item, SendDatagram):
                self._send(item)
            elif isinstance(item, CloseInstance):
                self._close_instance(item.coap_id)
            else:
                self._start_open(item)

    def _start_open(self, request: OpenInstance) -> None:
        if self._port is not None:
            self._port.pause_reading()
        self._open_task = self._running_loop().create_task(self._open(request))
        self._open_task.add_done_callback(self._open_done)

    def _open_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("instance open failed unexpectedly", exc_info=task.exception())

    async def _open(self, request: OpenInstance) -> None:
        loop = self._running_loop()
        instance = _Instance(request.coap_id)
        ok = False
        try:
            address = await resolve_ipv4(request.host, request.port)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: InstanceProtocol(
                    request.coap_id, lambda data: self._on_datagram(instance, data)
                ),
                remote_addr=(address, request.port),
                family=socket.AF_INET,
            )
        except (OSError, TimeoutError, ValueError) as exc:
            logger.info(
                "instance %d: cannot reach %s:%d (%s)",
                request.coap_id,
                request.host,
                request.port,
                exc,
            )
        else:
            with contextlib.suppress(OSError):
                # Room for a burst of answers while the pty is busy (capped by rmem_max).
                sock = transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            instance.transport = transport
            self._instances[request.coap_id] = instance
            ok = True
            logger.debug("instance %d: open to %s:%d", request.coap_id, address, request.port)
        self._open_task = None
        self._write(self._dialect.finish_open(request.coap_id, ok))
        if self._port is not None:
            self._port.resume_reading()
        self._run_commands()

    async def _drop_volatile_state(self) -> None:
        """What a reset loses: the command in progress, unread input, instances, traffic."""
        task, self._open_task = self._open_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pending_lines.clear()
        self._splitter.reset()
        for coap_id in list(self._instances):
            self._close_instance(coap_id)
        if self._loop is not None:
            self._uplink.clear()
            self._downlink.clear()
        if self._port is not None:
            self._port.discard_output()
            self._port.resume_reading()

    # -- internals: datagrams -----------------------------------------------------------

    def _send(self, request: SendDatagram) -> None:
        instance = self._instances[request.coap_id]
        counters = self._counters
        counters.datagrams_out += 1
        counters.max_datagram_out = max(counters.max_datagram_out, len(request.data))
        if self._loss and self._uplink_rng.random() < self._loss:
            counters.datagrams_lost += 1
            return
        if self._latency:
            self._uplink.push(lambda: self._transmit(instance, request.data))
        else:
            self._transmit(instance, request.data)

    def _transmit(self, instance: _Instance, data: bytes) -> None:
        if self._instances.get(instance.coap_id) is instance and instance.transport is not None:
            instance.transport.sendto(data)

    def _on_datagram(self, instance: _Instance, data: bytes) -> None:
        self._counters.datagrams_in += 1
        if self._loss and self._downlink_rng.random() < self._loss:
            self._counters.datagrams_lost += 1
            return
        if self._latency:
            self._downlink.push(lambda: self._deliver(instance, data))
        else:
            self._deliver(instance, data)

    def _deliver(self, instance: _Instance, data: bytes) -> None:
        if self._instances.get(instance.coap_id) is not instance:
            return  # closed or reset while the datagram was in flight
        urc = self._dialect.datagram_received(instance.coap_id, data)
        if urc is None:
            logger.debug("instance %d: dropped a %d-byte datagram", instance.coap_id, len(data))
            return
        self._counters.urcs += 1
        self._write(urc)

    def _close_instance(self, coap_id: int) -> None:
        instance = self._instances.pop(coap_id, None)
        if instance is not None and instance.transport is not None:
            instance.transport.close()
