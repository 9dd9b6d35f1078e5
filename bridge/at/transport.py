"""Threaded serial I/O that never blocks the asyncio event loop.

pyserial's ``serial_for_url`` gives one object for device paths, ptys, ``socket://`` and
``rfc2217://``, but only blocking calls (its non-blocking write spins on EAGAIN). So each
open port gets two daemon threads: a reader handing chunks to the loop, and a writer
draining a queue. Where the port has a file descriptor (device, pty, socket) the reader
sleeps in ``select`` on it plus a wake-up pipe, so it costs nothing while idle and stops
at once; ports without one (rfc2217) are read with a short timeout instead.

Chunks are coalesced: while the loop has not yet taken the previous ones, new chunks are
appended to the same batch, so a burst costs one loop wake-up, not one per read.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import queue
import select
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
    """One open port with its reader and writer threads.

    `on_data` and `on_lost` run on the event loop (scheduled with
    ``call_soon_threadsafe``); `on_lost` is called at most once, never after `stop`.
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
        self._wake_r, self._wake_w = os.pipe()
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
        self._reader.start()
        self._writer.start()

    def write(self, data: bytes) -> None:
        """Queue `data` for the writer thread; returns at once."""
        self._outgoing.put(data)

    async def stop(self) -> None:
        """Stop both threads and close the port; later callbacks are suppressed."""
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._outgoing.put(None)
        cancel_write = getattr(self.port, "cancel_write", None)
        if cancel_write is not None:
            with contextlib.suppress(Exception):
                cancel_write()
        await asyncio.to_thread(self._join_and_close)

    def _join_and_close(self) -> None:
        self._reader.join()
        self._writer.join(WRITE_TIMEOUT)
        with contextlib.suppress(Exception):
            self.port.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- threads ---------------------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            if self._fileno is not None:
                self._read_selecting(self._fileno)
            else:
                self._read_polling()
        except Exception as exc:  # any failure of the port ends this connection
            self._report_lost(exc)

    def _read_selecting(self, fileno: int) -> None:
        port, wake_r = self.port, self._wake_r
        while True:
            ready, _, _ = select.select([fileno, wake_r], [], [])
            if wake_r in ready:
                return
            # timeout=0: returns what is there now; raises when the device is gone
            # (EIO on a pty whose master closed, EOF on a socket).
            data = port.read(READ_SIZE)
            if data:
                self._deliver(data)

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
