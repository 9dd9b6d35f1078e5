"""`SocketPlumbing`: one paho client's socket driven by the asyncio loop.

paho's external-loop hooks (as in paho's `examples/loop_asyncio.py`): its socket
callbacks register the socket with `loop.add_reader` / `add_writer`, and `loop_read` /
`loop_write` / `loop_misc` run on the loop thread. The one exception is the blocking
`reconnect()` (TCP connect + TLS handshake), run by `connect()` in the default executor;
while it runs nobody else touches the paho client, and the socket callbacks it fires are
bounced to the loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

log = logging.getLogger(__name__)

MISC_INTERVAL = 1.0


class SocketPlumbing:
    """Registers its socket callbacks on `client`; `attach()` on the loop before use.

    Whoever hands paho a packet adds one to `unwritten`: the writes of one loop turn
    are corked together when there is more than one.
    """

    def __init__(self, client: paho.Client) -> None:
        self._paho = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._attempt: asyncio.Future[MQTTErrorCode] | None = None
        self._write_scheduled = False
        # Whether the socket is registered with the loop for writing: paho asks to stop
        # watching it after every write, and the loop's remove_writer on a socket it does
        # not watch costs a failed selector lookup (a KeyError raised and caught).
        self._watching_write = False
        # Publishes and acks handed to paho since the last write (see `_write_now`).
        self.unwritten = 0
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    @property
    def connecting(self) -> bool:
        """The blocking `reconnect()` is running in its thread."""
        return self._attempt is not None and not self._attempt.done()

    def connect(self) -> asyncio.Future[MQTTErrorCode]:
        """Start paho's blocking `reconnect()` in the default executor."""
        assert self._loop is not None
        self._attempt = self._loop.run_in_executor(None, self._paho.reconnect)
        return self._attempt

    async def settle(self) -> None:
        """Until a running `reconnect()` has finished (bounded by paho's connect_timeout)."""
        if self._attempt is not None and not self._attempt.done():
            await asyncio.wait([self._attempt])

    async def run_misc(self) -> None:
        """paho's keepalive and retry timers, forever."""
        while True:
            await asyncio.sleep(MISC_INTERVAL)
            if self._paho.socket() is not None and not self.connecting:
                self._paho.loop_misc()

    def drop(self) -> None:
        """Close the socket through paho so its state and our callbacks stay consistent:
        shut it down, then let paho read the EOF (its own close path)."""
        sock = self._paho.socket()
        if sock is None:
            return
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # type: ignore[arg-type]
        try:
            self._paho.loop_read()
        except Exception:  # a failed close must not stop the shutdown
            log.exception("error while closing the MQTT socket")

    # -- paho's socket callbacks (loop thread, or the reconnect thread) ---------------

    def _on_loop(self, function: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            function(*args)
        else:
            self._loop.call_soon_threadsafe(function, *args)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch_read, sock)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._unwatch, sock)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch_write, sock)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._unwatch_write, sock)

    # -- loop registration -------------------------------------------------------------

    def _watch_read(self, sock: Any) -> None:
        assert self._loop is not None
        current = self._paho.socket()
        if current is not None and sock is current:
            _no_delay(current)
            self._loop.add_reader(current, self._readable)

    def _watch_write(self, sock: Any) -> None:
        assert self._loop is not None
        current = self._paho.socket()
        if current is None or sock is not current:
            return
        if self.connecting:
            # reconnect() is still running in its thread: wait for the socket instead.
            self._add_writer(current)
        elif not self._write_scheduled:
            # The socket almost always has room: write at the end of this loop turn
            # (with everything else queued in it) instead of registering the socket with
            # the selector and unregistering it again, two system calls per packet.
            self._write_scheduled = True
            self._loop.call_soon(self._write_now, current)

    def _write_now(self, sock: Any) -> None:
        self._write_scheduled = False
        if self._paho.socket() is not sock:
            return
        # paho sends each packet with its own send(); corked, the answers and acks of
        # one loop turn leave in as few TCP segments as fit, instead of one each. A lone
        # packet (about one turn in five at full load) is one segment anyway: corking it
        # would only cost two system calls.
        corked = self.unwritten > 1 and _cork(sock, True)
        self.unwritten = 0
        self._writable()
        if corked:
            _cork(sock, False)
        current = self._paho.socket()
        if current is not None and current is sock and self._paho.want_write():
            self._add_writer(current)

    def _add_writer(self, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, self._writable)
        self._watching_write = True

    def _unwatch_write(self, sock: Any) -> None:
        assert self._loop is not None
        if self._watching_write:
            self._watching_write = False
            self._loop.remove_writer(sock)

    def _unwatch(self, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._watching_write = False

    def _readable(self) -> None:
        try:
            self._paho.loop_read()
            # TLS: decrypted bytes can wait in the SSL object while the fd is not readable.
            sock = self._paho.socket()
            while isinstance(sock, ssl.SSLSocket) and sock.pending():
                self._paho.loop_read()
                sock = self._paho.socket()
        except Exception:
            log.exception("error while reading from the MQTT broker; dropping the connection")
            self.drop()

    def _writable(self) -> None:
        try:
            self._paho.loop_write()
        except Exception:
            log.exception("error while writing to the MQTT broker; dropping the connection")
            self.drop()


def _no_delay(sock: Any) -> None:
    """Send each answer at once: with Nagle's algorithm a PUBLISH written while an
    earlier one is unacknowledged waits for the broker's delayed ACK (up to ~40 ms)."""
    raw = sock if isinstance(sock, socket.socket) else None
    if raw is None or raw.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _cork(sock: Any, on: bool) -> bool:
    """Set TCP_CORK (Linux) on a TCP socket; False where there is none."""
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None or not isinstance(sock, socket.socket):
        return False
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1 if on else 0)
    except OSError:
        return False
    return True
