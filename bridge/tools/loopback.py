"""Free loopback ports and the local mosquitto: what the demo, the benchmark and the
tests share to start their own peers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time

from bridge.errors import BridgeError

LOOPBACK = "127.0.0.1"
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


class LoopbackError(BridgeError):
    """A local peer is missing or did not start listening."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing is bound to on 127.0.0.1 right now (TCP, or UDP with SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_tcp(port: int, timeout: float) -> None:
    """Return once 127.0.0.1:`port` accepts connections; LoopbackError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return
        time.sleep(0.05)
    raise LoopbackError(f"nothing listens on {LOOPBACK}:{port} after {timeout:g} s")


def mosquitto_binary() -> str:
    """The mosquitto executable (Debian puts it in /usr/sbin, often not on PATH)."""
    for candidate in (*MOSQUITTO_PATHS, shutil.which("mosquitto") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise LoopbackError("mosquitto is not installed; run `make setup` or apt-get install mosquitto")
