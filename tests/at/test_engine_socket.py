"""The AT engine over socket:// (a modem behind a TCP serial server, e.g. ser2net)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bridge.at.engine import AtEngine
from bridge.errors import PortLost


class TcpModem:
    """A TCP server on 127.0.0.1 answering AT commands from a script, one client at a time."""

    def __init__(self) -> None:
        self.replies: dict[str, bytes] = {
            "AT": b"\r\nOK\r\n",
            "AT+CMEE?": b"\r\n+CMEE: 2\r\n\r\nOK\r\n",
            "AT+CGMM": b"\r\nL610\r\n\r\n+GTCOAPDATA: 1,1,2A\r\n\r\nOK\r\n",
        }
        self.commands: list[str] = []
        self.clients = 0
        self.writer: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"socket://{host}:{port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients += 1
        self.writer = writer
        try:
            while command := await reader.readuntil(b"\r"):
                text = command[:-1].decode()
                self.commands.append(text)
                writer.write(self.replies.get(text, b"\r\nERROR\r\n"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def tcp_modem() -> AsyncIterator[TcpModem]:
    modem = TcpModem()
    modem.server = await asyncio.start_server(modem.serve, "127.0.0.1", 0)
    async with modem.server:
        yield modem


async def test_command_and_urc_over_socket_url(tcp_modem: TcpModem) -> None:
    urcs: list[str] = []
    async with AtEngine(tcp_modem.url, command_timeout=2.0) as at:
        at.add_urc_handler("+GTCOAPDATA:", urcs.append)
        assert await at.command("AT") == []
        assert await at.command("AT+CGMM") == ["L610"]
        assert urcs == ["+GTCOAPDATA: 1,1,2A"]
    assert tcp_modem.commands == ["AT", "AT+CGMM"]


async def test_socket_dropped_by_server_reconnects(tcp_modem: TcpModem) -> None:
    states: list[bool] = []
    changed = asyncio.Event()
    async with AtEngine(
        tcp_modem.url, command_timeout=2.0, reconnect_initial=0.05, reconnect_max=0.2
    ) as at:
        at.add_connection_handler(lambda up: (states.append(up), changed.set()))
        at.add_urc_handler("+GTCOAPDATA:", lambda line: None)
        assert await at.command("AT") == []
        assert tcp_modem.writer is not None
        tcp_modem.writer.close()  # the serial server drops the connection
        await asyncio.wait_for(changed.wait(), 2)
        assert states[0] is False
        with pytest.raises(PortLost):
            await at.command("AT")
        await asyncio.wait_for(at.wait_connected(), 2)
        assert await at.command("AT+CGMM") == ["L610"]
        assert states == [False, True]
    assert tcp_modem.clients == 2
    assert tcp_modem.commands == ["AT", "AT+CMEE?", "AT+CGMM"]


async def test_refused_socket_at_start_raises_port_lost(tcp_modem: TcpModem) -> None:
    url = tcp_modem.url
    assert tcp_modem.server is not None
    tcp_modem.server.close()
    await tcp_modem.server.wait_closed()
    with pytest.raises(PortLost, match=r"socket://127\.0\.0\.1"):
        async with AtEngine(url):
            pass
