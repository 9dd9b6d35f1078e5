"""Serial I/O that never blocks the asyncio event loop.

`open_serial` opens any pyserial URL (device, pty, ``socket://``, ``rfc2217://``);
`SerialConnection` reads and writes it through the loop's callbacks on the port's
descriptor (the hot path: no thread hand-off), or through a reader and a writer thread
for a port without one (rfc2217), a burst of chunks costing one loop wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import logging
import os
import queue
import threading
from collections.abc import Callable

import serial

__all__ = ["SerialConnection", "open_serial"]

log = logging.getLogger(__name__)

READ_SIZE = 65536
# Ports without a file descriptor are polled with this read timeout (bounds close latency).
FALLBACK_READ_TIMEOUT = 0.1
# A modem that does not take a short command line in this long is treated as a lost port.
WRITE_TIMEOUT = 10.0

DataCallback = Callable[["SerialConnection", bytes], None]
LostCallback = Callable[["SerialConnection", BaseException], None]


def open_serial(url: str, baudrate: int) -> serial.SerialBase:
    """Open `url` (blocking: call it from a worker thread)."""
    port = serial.serial_for_url(url, baudrate=baudrate, timeout=0, write_timeout=WRITE_TIMEOUT)
    if _fileno(port) is None:
        port.timeout = FALLBACK_READ_TIMEOUT
    return port


def _fileno(port: serial.SerialBase) -> int | None:
    try:
        fileno = port.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation, serial.SerialException):
        return None
    return fileno if isinstance(fileno, int) else None


class SerialConnection:
    """One open port, watched by the event loop (or served by two threads, see above).

    `on_data` and `on_lost` run on the event loop; `on_lost` is called at most once,
    never after `stop`.
    """

    def __init__(
        self,
        port: serial.SerialBase,
        loop: asyncio.AbstractEventLoop,
        on_data: DataCallback,
        on_lost: LostCallback,
    ) -> None:
        self.port = port
        self._loop = loop
        self._on_data = on_data
        self._on_lost = on_lost
        self._fileno = _fileno(port)
        # Loop-driven I/O: bytes the descriptor did not take yet, and the timer that
        # declares the port lost when they stay there too long.
        self._unsent = bytearray()
        self._write_deadline: asyncio.TimerHandle | None = None
        self._outgoing: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._batch: list[bytes] = []
        self._batch_lock = threading.Lock()
        self._lost_reported = False
        self._stopping = False
        name = getattr(port, "portstr", None) or "serial"
        self._reader = threading.Thread(target=self._read_loop, name=f"at-read {name}", daemon=True)
        self._writer = threading.Thread(
            target=self._write_loop, name=f"at-write {name}", daemon=True
        )

    def start(self) -> None:
        fileno = self._fileno
        if fileno is None:
            self._reader.start()
            self._writer.start()
            return
        os.set_blocking(fileno, False)
        self._loop.add_reader(fileno, self._on_readable, fileno)

    def write(self, data: bytes) -> None:
        """Send `data` (or queue it for the writer); returns at once."""
        fileno = self._fileno
        if fileno is None:
            self._outgoing.put(data)
        elif self._unsent:
            self._unsent += data  # the writable callback sends it in order
        elif not self._stopping:
            self._send(fileno, data)

    async def stop(self) -> None:
        """Stop watching (or the threads) and close the port; later callbacks are suppressed."""
        self._stopping = True
        if self._fileno is not None:
            self._loop.remove_reader(self._fileno)
            self._loop.remove_writer(self._fileno)
            if self._write_deadline is not None:
                self._write_deadline.cancel()
            # Off the loop: closing a socket:// port sleeps (pyserial gives the server time).
            await asyncio.to_thread(self._close_port)
            return
        self._outgoing.put(None)
        cancel_write = getattr(self.port, "cancel_write", None)
        if cancel_write is not None:
            with contextlib.suppress(Exception):
                cancel_write()
        await asyncio.to_thread(self._join_and_close)

    def _join_and_close(self) -> None:
        self._reader.join()
        self._writer.join(WRITE_TIMEOUT)
        self._close_port()

    def _close_port(self) -> None:
        with contextlib.suppress(Exception):
            self.port.close()

    # -- loop-driven I/O (ports with a descriptor) -----------------------------------------

    def _on_readable(self, fileno: int) -> None:
        try:
            data = os.read(fileno, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: the pty's other end is gone; the device unplugged
            self._lost_now(exc)
            return
        if not data:
            self._lost_now(ConnectionError(f"end of file on {self._name()}"))
            return
        if not self._stopping:
            self._on_data(self, data)

    def _send(self, fileno: int, data: bytes | bytearray) -> None:
        try:
            written = os.write(fileno, data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError as exc:
            self._lost_now(exc)
            return
        if written == len(data):
            return
        self._unsent += data[written:]
        self._loop.add_writer(fileno, self._on_writable, fileno)
        self._write_deadline = self._loop.call_later(WRITE_TIMEOUT, self._write_stalled)

    def _on_writable(self, fileno: int) -> None:
        unsent = self._unsent
        try:
            written = os.write(fileno, unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost_now(exc)
            return
        del unsent[:written]
        if not unsent:
            self._loop.remove_writer(fileno)
            if self._write_deadline is not None:
                self._write_deadline.cancel()
                self._write_deadline = None

    def _write_stalled(self) -> None:
        self._write_deadline = None
        self._lost_now(
            TimeoutError(
                errno.ETIMEDOUT,
                f"{self._name()} took no data for {WRITE_TIMEOUT:g} s "
                f"({len(self._unsent)} bytes waiting)",
            )
        )

    def _lost_now(self, exc: BaseException) -> None:
        if self._fileno is not None:
            self._loop.remove_reader(self._fileno)
            self._loop.remove_writer(self._fileno)
        self._unsent.clear()
        self._lost(exc)

    def _name(self) -> str:
        return str(getattr(self.port, "portstr", None) or "the serial port")

    # -- threads (ports without a descriptor) ----------------------------------------------

    def _read_loop(self) -> None:
        try:
            self._read_polling()
        except Exception as exc:  # any failure of the port ends this connection
            self._report_lost(exc)

    def _read_polling(self) -> None:
        port = self.port
        while not self._stopping:
            data = port.read(1)
            if data:
                waiting: int = getattr(port, "in_waiting", 0)
                if waiting:
                    data += port.read(waiting)
                self._deliver(data)

    def _write_loop(self) -> None:
        outgoing = self._outgoing
        while True:
            data = outgoing.get()
            if data is None or self._stopping:
                return
            try:
                self.port.write(data)
            except Exception as exc:
                self._report_lost(exc)
                return

    def _deliver(self, data: bytes) -> None:
        with self._batch_lock:
            self._batch.append(data)
            if len(self._batch) > 1:
                return  # a drain is already scheduled and will take this chunk too
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stopping = True

    def _drain(self) -> None:
        with self._batch_lock:
            batch, self._batch = self._batch, []
        if self._stopping:
            return
        self._on_data(self, batch[0] if len(batch) == 1 else b"".join(batch))

    def _report_lost(self, exc: BaseException) -> None:
        if self._stopping:
            return
        try:
            self._loop.call_soon_threadsafe(self._lost, exc)
        except RuntimeError:
            self._stopping = True

    def _lost(self, exc: BaseException) -> None:
        # Data read before the failure is delivered first (its drain was scheduled earlier).
        if self._stopping or self._lost_reported:
            return
        self._lost_reported = True
        self._on_lost(self, exc)
