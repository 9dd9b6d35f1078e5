"""A stand-in for PID 1's notification socket, for daemons started by tests.

`NotifySocket()` binds an AF_UNIX datagram socket under a short /tmp directory;
`env` is the NOTIFY_SOCKET environment to give the daemon, `wait_for(pred)` polls the
received datagrams until one matches, `messages` holds every datagram received so far.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable


class NotifySocket:
    def __init__(self) -> None:
        # Unix socket paths are limited to 108 bytes: pytest's tmp_path may be longer.
        self._directory = tempfile.TemporaryDirectory(prefix="sdn")
        self.path = os.path.join(self._directory.name, "notify")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self.path)
        self._socket.settimeout(0.1)
        self.messages: list[str] = []

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.path}

    def _drain(self) -> None:
        while True:
            try:
                self.messages.append(self._socket.recv(4096).decode())
            except TimeoutError:
                return

    def wait_for(self, matches: Callable[[str], bool], timeout: float = 10.0) -> str:
        """The first datagram (received so far or within `timeout`) for which `matches`."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if matches(message):
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching sd_notify message; got {self.messages}")
            self._drain()

    def statuses(self) -> list[str]:
        self._drain()
        return [m.removeprefix("STATUS=") for m in self.messages if m.startswith("STATUS=")]

    def close(self) -> None:
        self._socket.close()
        self._directory.cleanup()
