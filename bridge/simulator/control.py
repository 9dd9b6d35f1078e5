"""The simulator's control channel: fault injection from another process.

A unix stream socket; each request is one JSON object on one line, each answer too, in
order, on the same connection (one connection may carry many requests):

- `{"cmd": "reboot"}`: modem reset (boot lines `RDY`, `+CPIN: READY`).
- `{"cmd": "unplug", "seconds": 10}`: the port goes now and comes back (same path, new
  pty, after a reset) `seconds` later; answered at once.
- `{"cmd": "garbage", "hex": "0d0a41", "chunk_size": 3, "chunk_delay": 0.01}`: raw
  bytes written to the host; `chunk_size`/`chunk_delay` optional (split writes).
- `{"cmd": "urc", "line": "+EUSIM: 1"}`: `line` written as the modem frames a URC.
- `{"cmd": "drop_pdp"}`: the network releases the PDP context (`+MIPCALL: 0`, every
  instance gone).
- `{"cmd": "swallow_final"}`: the next final result code is not written.
- `{"cmd": "urc_mid_reply", "line": "+GTCOAPDATA: 1,1,00"}`: `line` is written after
  the first info line of the next reply that has one.
- `{"cmd": "stats"}`: `{"ok": true, "stats": {<SimulatorStats fields>}}`.
- `{"cmd": "status"}`: `{"ok": true, "port_path": "...", "device_path": "/dev/pts/N"
  or null, "plugged": true}`.

Every answer has `"ok"`: true on success, or false with `"error"` (a message) when the
request is not valid JSON, names an unknown command or has a bad parameter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from types import TracebackType
from typing import Any

from bridge.simulator.simulator import L610Simulator

logger = logging.getLogger(__name__)

# A garbage request carries its bytes as hex: allow a few hundred KiB of them.
MAX_REQUEST = 1 << 20


class ControlError(Exception):
    """The simulator refused a control request."""


class ControlServer:
    """Serves the control channel of one simulator on a unix socket."""

    def __init__(self, simulator: L610Simulator, path: str) -> None:
        self._simulator = simulator
        self._path = path
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> ControlServer:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        self._server = await asyncio.start_unix_server(self._serve, self._path, limit=MAX_REQUEST)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while line := await reader.readline():
                answer = await self._execute(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError) as exc:
            # ValueError: a request line over MAX_REQUEST; the connection is unusable.
            logger.info("control connection dropped: %s", exc)
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _execute(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ControlError("a request is a JSON object")
            return await self._dispatch(request)
        except (ControlError, ValueError, TypeError, KeyError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    async def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        sim = self._simulator
        command = request.get("cmd")
        logger.info("control: %s", command)
        if command == "reboot":
            await sim.reboot()
        elif command == "unplug":
            await sim.unplug(float(request["seconds"]))
        elif command == "garbage":
            chunk_size = request.get("chunk_size")
            sim.inject_raw(
                bytes.fromhex(str(request["hex"])),
                chunk_size=None if chunk_size is None else int(chunk_size),
                chunk_delay=float(request.get("chunk_delay", 0.0)),
            )
        elif command == "urc":
            sim.urc(str(request["line"]))
        elif command == "drop_pdp":
            sim.drop_pdp()
        elif command == "swallow_final":
            sim.swallow_next_final()
        elif command == "urc_mid_reply":
            sim.urc_mid_reply(str(request["line"]))
        elif command == "stats":
            return {"ok": True, "stats": sim.stats.as_dict()}
        elif command == "status":
            return {
                "ok": True,
                "port_path": sim.port_path,
                "device_path": sim.device_path,
                "plugged": sim.plugged,
            }
        else:
            raise ControlError(f"unknown command {command!r}")
        return {"ok": True}


class SimulatorControl:
    """Blocking client of the control channel (each call takes well under a millisecond
    of the simulator's time, so it is fine to call from a test's event loop)."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, cmd: str, **params: Any) -> dict[str, Any]:
        """Send one request; raises ControlError when the simulator refuses it."""
        payload = json.dumps({"cmd": cmd, **params}).encode() + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            sock.sendall(payload)
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ControlError(f"simulator control {self.path} closed the connection")
                answer += chunk
        decoded: dict[str, Any] = json.loads(answer)
        if not decoded.get("ok"):
            raise ControlError(str(decoded.get("error")))
        return decoded

    def reboot(self) -> None:
        self.request("reboot")

    def unplug(self, seconds: float) -> None:
        self.request("unplug", seconds=seconds)

    def garbage(self, data: bytes, chunk_size: int | None = None, chunk_delay: float = 0.0) -> None:
        self.request("garbage", hex=data.hex(), chunk_size=chunk_size, chunk_delay=chunk_delay)

    def urc(self, line: str) -> None:
        self.request("urc", line=line)

    def drop_pdp(self) -> None:
        self.request("drop_pdp")

    def swallow_final(self) -> None:
        self.request("swallow_final")

    def urc_mid_reply(self, line: str) -> None:
        self.request("urc_mid_reply", line=line)

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = self.request("stats")["stats"]
        return stats

    def status(self) -> dict[str, Any]:
        return self.request("status")
