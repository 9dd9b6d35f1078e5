"""sd_notify client against a real AF_UNIX datagram socket standing in for PID 1."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest

from bridge.ops import sdnotify
from bridge.ops.sdnotify import Notifier


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    # A short directory under /tmp: unix socket paths are limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="sdn") as directory:
        path = os.path.join(directory, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
            receiver.bind(path)
            receiver.settimeout(2.0)
            monkeypatch.setenv("NOTIFY_SOCKET", path)
            yield receiver


def _pending(receiver: socket.socket) -> list[str]:
    messages = []
    receiver.setblocking(False)
    try:
        while True:
            messages.append(receiver.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        receiver.settimeout(2.0)
    return messages


def test_each_message_is_one_datagram(notify_socket: socket.socket) -> None:
    assert sdnotify.ready()
    assert sdnotify.status("modem registered, 2 instances open")
    assert sdnotify.stopping()
    assert sdnotify.watchdog()
    assert [notify_socket.recv(4096).decode() for _ in range(4)] == [
        "READY=1",
        "STATUS=modem registered, 2 instances open",
        "STOPPING=1",
        "WATCHDOG=1",
    ]


def test_reloading_carries_the_monotonic_clock(notify_socket: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = notify_socket.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_status_cannot_inject_assignments(notify_socket: socket.socket) -> None:
    sdnotify.status("line one\nREADY=1")
    assert notify_socket.recv(4096).decode() == "STATUS=line one READY=1"


def test_abstract_socket_address(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"mqtt-coap-bridge-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(2.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert receiver.recv(4096) == b"READY=1"


def test_no_socket_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.ready()
    assert not sdnotify.watchdog()


def test_socket_errors_are_logged_once_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with tempfile.TemporaryDirectory(prefix="sdn") as directory:
        notifier = Notifier({"NOTIFY_SOCKET": os.path.join(directory, "nobody-listens")})
        with caplog.at_level(logging.DEBUG, logger="bridge.ops.sdnotify"):
            assert not notifier.ready()
            assert not notifier.watchdog()
            assert not notifier.status("x")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "nobody-listens" in warnings[0].getMessage()
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 2


def test_unsupported_address_is_a_logged_noop(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    with caplog.at_level(logging.WARNING, logger="bridge.ops.sdnotify"):
        assert not notifier.ready()
    assert "vsock:2:1234" in caplog.text


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert Notifier(environ).watchdog_interval() == expected


def test_module_watchdog_interval_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_interval() == 1.0


async def test_watchdog_loop_pings_only_while_healthy(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # a ping every 20 ms
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    healthy = True
    loop_task = asyncio.create_task(sdnotify.watchdog_loop(lambda: healthy))
    try:
        await asyncio.sleep(0.15)
        pings_while_healthy = _pending(notify_socket)
        assert len(pings_while_healthy) >= 3
        assert set(pings_while_healthy) == {"WATCHDOG=1"}

        healthy = False
        await asyncio.sleep(0.03)  # let a ping already in the pipe arrive
        _pending(notify_socket)
        await asyncio.sleep(0.15)
        assert _pending(notify_socket) == []

        healthy = True
        await asyncio.sleep(0.1)
        assert len(_pending(notify_socket)) >= 2
    finally:
        loop_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop_task


async def test_watchdog_loop_returns_without_a_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    await asyncio.wait_for(sdnotify.watchdog_loop(lambda: True), timeout=1.0)
