"""A raw, non-blocking serial client for tests: bytes on a pty, nothing of bridge.at.

Non-blocking on purpose: the in-process simulator shares the test's event loop.
"""

from __future__ import annotations

import asyncio
import os
import re

FINAL = re.compile(rb"\r\n(OK|ERROR|\+CME ERROR: [^\r]*)\r\n")


class RawPort:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.received = bytearray()
        self.total_read = 0
        self.reads: list[int] = []
        self.lost = False
        self._arrived = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.lost = True
            self._loop.remove_reader(self.fd)
        self.received += data
        self.reads.append(len(data))
        self.total_read += len(data)
        self._arrived.set()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                await asyncio.sleep(0.001)
                continue
            view = view[written:]

    async def read_until(self, marker: bytes, within: float = 2.0) -> bytes:
        """Everything up to and including `marker`, taken off the buffer."""
        async with asyncio.timeout(within):
            while (index := self.received.find(marker)) < 0:
                if self.lost:
                    raise ConnectionError(f"{self.path} lost; got {bytes(self.received)!r}")
                self._arrived.clear()
                await self._arrived.wait()
        end = index + len(marker)
        data = bytes(self.received[:end])
        del self.received[:end]
        return data

    async def read_final(self, within: float = 2.0) -> bytes:
        """Everything up to and including the next final result code."""
        async with asyncio.timeout(within):
            while (match := FINAL.search(self.received)) is None:
                if self.lost:
                    raise ConnectionError(f"{self.path} lost; got {bytes(self.received)!r}")
                self._arrived.clear()
                await self._arrived.wait()
        data = bytes(self.received[: match.end()])
        del self.received[: match.end()]
        return data

    async def command(self, command: str, within: float = 2.0) -> list[str]:
        """Send one command; its reply lines up to the final result (echo included)."""
        await self.write(command.encode() + b"\r")
        reply = await self.read_final(within)
        return [line for line in reply.decode().replace("\r\n", "\r").split("\r") if line]

    async def wait_count(self, marker: bytes, count: int, within: float = 2.0) -> None:
        """Until `marker` has been received `count` times (nothing is taken off)."""
        async with asyncio.timeout(within):
            while self.received.count(marker) < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_lost(self, within: float = 2.0) -> None:
        async with asyncio.timeout(within):
            while not self.lost:
                self._arrived.clear()
                await self._arrived.wait()

    def close(self) -> None:
        if not self.lost:
            self._loop.remove_reader(self.fd)
        os.close(self.fd)
