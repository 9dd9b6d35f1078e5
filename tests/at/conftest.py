"""A test-driven modem on a real pseudo-terminal: the test reads commands and writes replies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures.pty import write_all


class PtyModem:
    """The master side of a real pty, reachable by the engine at the stable path `link`.

    `plug()` creates a fresh pty and points `link` at its slave (like a udev by-id
    link after re-enumeration); `unplug()` closes it, so the engine's reads fail with EIO.
    """

    def __init__(self, link: Path) -> None:
        self.link = link
        self.received = bytearray()
        self._partial = b""
        self._master = -1
        self._slave = -1
        self._commands: asyncio.Queue[str] = asyncio.Queue()

    @property
    def plugged(self) -> bool:
        return self._master >= 0

    def plug(self) -> None:
        master, slave = os.openpty()
        # Raw from the start, so nothing the test writes is echoed or translated by the tty.
        tty.setraw(slave)
        os.set_blocking(master, False)
        # The test keeps the slave open too: a master with no slave open reads EIO forever.
        self._master, self._slave = master, slave
        staging = self.link.with_name(self.link.name + ".new")
        os.symlink(os.ttyname(slave), staging)
        os.replace(staging, self.link)
        asyncio.get_running_loop().add_reader(master, self._readable)

    def unplug(self) -> None:
        if not self.plugged:
            return
        asyncio.get_running_loop().remove_reader(self._master)
        os.close(self._master)
        os.close(self._slave)
        self._master = self._slave = -1
        # As a USB modem's node goes away: a link left pointing at the closed pty could
        # meanwhile resolve to a new pty of another process that got the same number.
        self.link.unlink()

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except (BlockingIOError, InterruptedError):
            return
        self.received += data
        *commands, self._partial = (self._partial + data).split(b"\r")
        for command in commands:
            self._commands.put_nowait(command.decode())

    async def next_command(self, within: float = 2.0) -> str:
        return await asyncio.wait_for(self._commands.get(), within)

    async def expect(self, command: str, reply: bytes = b"\r\nOK\r\n") -> None:
        """Wait for `command`, then answer `reply`."""
        assert await self.next_command() == command
        self.send(reply)

    async def answer_resync(self, late: bytes = b"") -> None:
        """Answer the engine's resync probe, after a late reply still in the modem."""
        await self.expect("AT+CMEE?", late + b"\r\n+CMEE: 2\r\n\r\nOK\r\n")

    def pending_commands(self) -> int:
        return self._commands.qsize()

    def send(self, data: bytes) -> None:
        """Write a short reply (fits the pty buffer at once)."""
        written = os.write(self._master, data)
        assert written == len(data)

    async def send_bulk(self, data: bytes) -> None:
        """Write any amount, waiting for the engine to drain the pty as needed."""
        await write_all(self._master, data)


@pytest.fixture
async def pty_modem(tmp_path: Path) -> AsyncIterator[PtyModem]:
    modem = PtyModem(tmp_path / "ttyL610")
    modem.plug()
    try:
        yield modem
    finally:
        modem.unplug()
        with contextlib.suppress(FileNotFoundError):
            modem.link.unlink()
