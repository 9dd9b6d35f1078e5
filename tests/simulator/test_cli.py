"""The simulator as a program: CLI, control channel, a pyserial client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import serial

from bridge.simulator import ControlError, SimulatorControl
from bridge.simulator.cli import run
from tests.fixtures.simulator import REPO_ROOT, SimulatorProcessFactory


def read_until(port: serial.Serial, marker: bytes, timeout: float = 3.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while marker not in data:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {marker!r} in {data!r}")
        data += port.read(port.in_waiting or 1)
    return data


def command(port: serial.Serial, line: str) -> bytes:
    port.write(line.encode() + b"\r")
    return read_until(port, b"OK\r\n" if not line.startswith("AT+NO") else b"ERROR\r\n")


def test_serves_a_port_and_obeys_the_control_channel(
    simulator_process: SimulatorProcessFactory,
) -> None:
    path, control = simulator_process("--instances", "2")
    assert os.path.islink(path)
    with serial.Serial(path, timeout=0.2) as port:
        assert command(port, "AT") == b"AT\r\r\nOK\r\n"
        assert command(port, "ATE0") == b"ATE0\r\r\nOK\r\n"
        port.write(b"AT+MIPCALL=1\r")
        assert read_until(port, b"10.91.0.2\r\n") == b"\r\nOK\r\n\r\n+MIPCALL: 10.91.0.2\r\n"
        assert command(port, "AT+GTCOAPOPEN?") == (
            b"\r\n+GTCOAPOPEN: 1\r\n\r\n+GTCOAPOPEN: 2\r\n\r\nOK\r\n"
        )

        control.urc_mid_reply("+GTCOAPDATA: 1,1,00")
        assert command(port, "AT+CGMM") == b"\r\nL610\r\n\r\n+GTCOAPDATA: 1,1,00\r\n\r\nOK\r\n"

        control.swallow_final()
        port.write(b"AT+CSQ\r")
        assert read_until(port, b"99\r\n") == b"\r\n+CSQ: 24,99\r\n"
        assert port.read(100) == b""

        control.garbage(b"\x00\xffnoise\r\n", chunk_size=2, chunk_delay=0.01)
        assert read_until(port, b"noise\r\n") == b"\x00\xffnoise\r\n"

        control.reboot()
        assert read_until(port, b"READY\r\n") == b"\r\nRDY\r\n\r\n+CPIN: READY\r\n"
        assert command(port, "AT") == b"AT\r\r\nOK\r\n"

    stats = control.stats()
    assert stats["reboots"] == 1
    commands = ("AT", "ATE0", "AT+MIPCALL=1", "AT+GTCOAPOPEN?", "AT+CGMM", "AT+CSQ", "AT")
    assert stats["commands"] == len(commands)
    assert stats["bytes_in"] == sum(len(line) + 1 for line in commands)
    status = control.status()
    assert status["port_path"] == path
    assert status["plugged"] is True


def test_unplug_through_the_control_channel_keeps_the_path(
    simulator_process: SimulatorProcessFactory,
) -> None:
    path, control = simulator_process()
    with serial.Serial(path, timeout=0.2) as port:
        assert command(port, "AT") == b"AT\r\r\nOK\r\n"
        control.unplug(0.5)
        assert control.status()["plugged"] is False
        assert not os.path.lexists(path)
        with pytest.raises(serial.SerialException):
            port.read(1)
    deadline = time.monotonic() + 3
    while not os.path.lexists(path):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # pyserial flushes the input on open: the boot lines written at replug are gone, as
    # they are from a real USB modem that booted before the host opened its port.
    with serial.Serial(path, timeout=0.2) as port:
        assert command(port, "AT") == b"AT\r\r\nOK\r\n"
    assert control.stats()["unplugs"] == 1


def test_cli_options_no_sim_and_baud(simulator_process: SimulatorProcessFactory) -> None:
    path, _ = simulator_process("--no-sim", "--baud", "115200", "--latency-ms", "5")
    with serial.Serial(path, timeout=0.2) as port:
        assert command(port, "AT+CMEE=1") == b"AT+CMEE=1\r\r\nOK\r\n"
        port.write(b"AT+CPIN?\r")
        assert read_until(port, b"\r\n+CME ERROR: 10\r\n") == b"AT+CPIN?\r\r\n+CME ERROR: 10\r\n"


def test_bad_control_requests_are_refused(simulator_process: SimulatorProcessFactory) -> None:
    _, control = simulator_process()
    with pytest.raises(ControlError, match="unknown command"):
        control.request("explode")
    with pytest.raises(ControlError, match="seconds"):
        control.request("unplug")
    with pytest.raises(ControlError):
        control.request("garbage", hex="zz")
    assert control.status()["plugged"] is True


def test_sigterm_stops_and_cleans_up(tmp_path: object) -> None:
    control_path = f"/tmp/l610-sigterm-{os.getpid()}.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.simulator", "--control", control_path],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        path = process.stdout.readline().decode().strip()
        assert os.path.islink(path)
        assert SimulatorControl(control_path).status()["plugged"] is True
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert not os.path.lexists(path)
        assert not os.path.exists(control_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_run_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--loss", "2"]) == 2
    assert "loss" in capsys.readouterr().err
    assert run(["--instances", "many"]) == 2
    assert run(["--instances", "257"]) == 2
    assert "--instances is at most 256" in capsys.readouterr().err
