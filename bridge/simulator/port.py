"""The modem's end of a pseudo-terminal: non-blocking, batched, optionally paced.

The slave end is put in raw mode and kept open here too, so the master never sees EIO
when the host closes and reopens the port (a real USB serial device stays present).
A stable symlink points at the slave, like a udev by-id link.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import termios
import tty
from collections.abc import Callable

from bridge.simulator.pacing import TokenBucket
from bridge.simulator.stats import Counters

logger = logging.getLogger(__name__)

READ_CHUNK = 65536
# Output held when the host does not read (a USB device discards beyond its buffers).
MAX_PENDING_OUTPUT = 1 << 20


class PtyPort:
    """One plugged-in period of the modem's serial port."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        link_path: str,
        *,
        bytes_per_second: float | None,
        on_data: Callable[[bytes], None],
        counters: Counters,
    ) -> None:
        self._loop = loop
        self._link_path = link_path
        self._on_data = on_data
        self._counters = counters
        now = loop.time()
        self._in_bucket = None if bytes_per_second is None else TokenBucket(bytes_per_second, now)
        self._out_bucket = None if bytes_per_second is None else TokenBucket(bytes_per_second, now)
        self._master, self._slave = os.openpty()
        self.device_path = os.ttyname(self._slave)
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._point_link()
        self._out = bytearray()
        self._flush_handle: asyncio.Handle | None = None
        self._waiting_writable = False
        self._read_timer: asyncio.TimerHandle | None = None
        # The host's line was idle when last read (everything it wrote was taken).
        self._input_idle = True
        self._reading = False
        self._paused = False
        self._closed = False
        self._start_reading()

    def _point_link(self) -> None:
        # Replace atomically so the path never dangles while plugged in.
        staging = f"{self._link_path}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        os.symlink(self.device_path, staging)
        os.replace(staging, self._link_path)

    # -- input ------------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop taking input (the modem is busy): the host's writes back up in the pty."""
        self._paused = True
        self._stop_reading()

    def resume_reading(self) -> None:
        self._paused = False
        if not self._closed and self._read_timer is None:
            self._start_reading()

    def _start_reading(self) -> None:
        if not self._reading and not self._paused:
            self._loop.add_reader(self._master, self._on_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._master)
            self._reading = False

    def _on_readable(self) -> None:
        limit = READ_CHUNK
        if self._in_bucket is not None:
            now = self._loop.time()
            if self._input_idle:
                # The host just started writing: its bytes arrive one byte time apart
                # from now, however long the line was quiet before.
                self._in_bucket.start_after_idle(now)
                self._input_idle = False
            limit = self._in_bucket.available(now)
            if limit == 0:
                self._stop_reading()
                # Wake when what the host wrote has arrived (a command: its CR), not
                # later: the modem acts on a line as soon as its last byte is in.
                delay = self._in_bucket.delay_for(self._input_waiting() or 1)
                self._read_timer = self._loop.call_later(delay, self._pacing_done)
                return
        try:
            data = os.read(self._master, limit)
        except BlockingIOError:
            return
        except OSError as exc:
            logger.warning("pty %s: read failed (%s); input stopped", self.device_path, exc)
            self._stop_reading()
            return
        if not data:
            return
        if self._in_bucket is not None:
            self._in_bucket.consume(len(data))
            self._input_idle = not self._input_waiting()
        self._counters.bytes_in += len(data)
        self._on_data(data)

    def _input_waiting(self) -> int:
        """Bytes the host has written that the modem has not taken yet."""
        try:
            raw = fcntl.ioctl(self._master, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        waiting: int = struct.unpack("i", raw)[0]
        return waiting

    def _pacing_done(self) -> None:
        self._read_timer = None
        if not self._closed:
            self._start_reading()

    # -- output -----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue `data`; everything written in one event-loop turn goes out in one write."""
        if self._closed or not data:
            return
        if len(self._out) + len(data) > MAX_PENDING_OUTPUT:
            self._counters.bytes_dropped += len(data)
            return
        if not self._out and self._out_bucket is not None and not self._waiting_writable:
            # The line was idle: these bytes go out one byte time apart from now.
            self._out_bucket.start_after_idle(self._loop.time())
        self._out += data
        if self._flush_handle is None and not self._waiting_writable:
            self._flush_handle = self._loop.call_soon(self._flush)

    def discard_output(self) -> None:
        """Forget output not yet on the line (the modem reset before sending it)."""
        self._out.clear()

    def _flush(self) -> None:
        self._flush_handle = None
        if self._closed or not self._out:
            return
        count = len(self._out)
        if self._out_bucket is not None:
            count = min(count, self._out_bucket.available(self._loop.time()))
            if count == 0:
                self._schedule_flush()
                return
        try:
            written = os.write(self._master, self._out[:count])
        except BlockingIOError:
            written = 0
        except OSError as exc:
            logger.warning("pty %s: write failed (%s); output dropped", self.device_path, exc)
            self._counters.bytes_dropped += len(self._out)
            self._out.clear()
            return
        del self._out[:written]
        self._counters.bytes_out += written
        if self._out_bucket is not None:
            self._out_bucket.consume(written)
        if not self._out:
            return
        if written < count:
            # The pty's buffer is full: the host is not reading fast enough.
            self._loop.add_writer(self._master, self._on_writable)
            self._waiting_writable = True
        else:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._out_bucket is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        else:
            # Wake when the next line has been clocked out completely: the host acts on
            # whole lines, so a line must not wait for bytes behind it to be paced too.
            line_end = self._out.find(b"\n")
            wanted = len(self._out) if line_end < 0 else line_end + 1
            delay = self._out_bucket.delay_for(wanted)
            self._flush_handle = self._loop.call_later(delay, self._flush)

    def _on_writable(self) -> None:
        self._loop.remove_writer(self._master)
        self._waiting_writable = False
        self._flush()

    # -- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        """Unplug: the symlink goes, both pty ends close, the host's port fails."""
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        if self._waiting_writable:
            self._loop.remove_writer(self._master)
            self._waiting_writable = False
        for handle in (self._flush_handle, self._read_timer):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._read_timer = None
        self._counters.bytes_dropped += len(self._out)
        self._out.clear()
        with contextlib.suppress(FileNotFoundError):
            if os.readlink(self._link_path) == self.device_path:
                os.unlink(self._link_path)
        os.close(self._master)
        os.close(self._slave)
