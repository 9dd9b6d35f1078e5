"""Firmware variants of the simulator: boot lines, CMEE modes, no GTCOAP, dropped PDP
context, unknown URCs; sans-IO on the dialect, then through the pty and the CLI."""

from __future__ import annotations

import serial

from bridge.simulator import L610Simulator
from bridge.simulator.dialect import L610Dialect
from bridge.simulator.firmware import FIRMWARES, STANDARD
from bridge.simulator.replies import CloseInstance
from tests.fixtures.simulator import SimulatorFactory, SimulatorProcessFactory
from tests.simulator.raw_port import RawPort
from tests.simulator.test_cli import command, read_until
from tests.simulator.test_dialect import ask, effects, text_lines


def bring_up_echo_off(dialect: L610Dialect) -> None:
    assert ask(dialect, "ATE0") == ["ATE0\r", "OK"]


def bring_up(dialect: L610Dialect) -> None:
    bring_up_echo_off(dialect)
    assert ask(dialect, "AT+MIPCALL=1") == ["OK", "+MIPCALL: 10.91.0.2"]


def test_boot_lines_per_variant() -> None:
    assert text_lines([L610Dialect().reboot()]) == ["RDY", "+CPIN: READY"]
    sim_ready = L610Dialect(firmware=FIRMWARES["sim-ready"])
    assert text_lines([sim_ready.reboot()]) == ["RDY", "+SIM READY"]
    no_sim = L610Dialect(firmware=FIRMWARES["sim-ready"], sim_inserted=False)
    assert text_lines([no_sim.reboot()]) == ["RDY"]
    chatty = L610Dialect(firmware=STANDARD.with_extra_boot_lines(("+EUSIM: 1", "^MODE: 17")))
    assert text_lines([chatty.reboot()]) == ["RDY", "+CPIN: READY", "+EUSIM: 1", "^MODE: 17"]


def test_numeric_errors_firmware_refuses_verbose_mode_and_answers_numbers() -> None:
    dialect = L610Dialect(firmware=FIRMWARES["numeric-errors"], sim_inserted=False)
    bring_up_echo_off(dialect)
    assert ask(dialect, "AT+CMEE=?") == ["+CMEE: (0-1)", "OK"]
    assert ask(dialect, "AT+CMEE=2") == ["ERROR"]
    assert ask(dialect, "AT+CMEE=1") == ["OK"]
    assert ask(dialect, "AT+CPIN?") == ["+CME ERROR: 10"]
    assert ask(dialect, "AT+MIPCALL=1") == ["+CME ERROR: 10"]
    # The standard build takes mode 2 and answers words.
    standard = L610Dialect(sim_inserted=False)
    bring_up_echo_off(standard)
    assert ask(standard, "AT+CMEE=2") == ["OK"]
    assert ask(standard, "AT+CPIN?") == ["+CME ERROR: SIM not inserted"]


def test_firmware_without_gtcoap_answers_error_to_every_gtcoap_command() -> None:
    dialect = L610Dialect(firmware=FIRMWARES["no-gtcoap"])
    bring_up(dialect)
    for line in ("AT+GTCOAPOPEN?", 'AT+GTCOAPOPEN="127.0.0.1",5683', "AT+GTCOAPCLOSE=1"):
        assert ask(dialect, line) == ["ERROR"]
    assert ask(dialect, "AT+CSQ") == ["+CSQ: 24,99", "OK"]


def test_network_dropping_the_context_prints_mipcall_0_and_drops_instances() -> None:
    dialect = L610Dialect()
    bring_up(dialect)
    outputs = dialect.handle(b'AT+GTCOAPOPEN="127.0.0.1",5683')
    assert effects(outputs)
    assert text_lines([dialect.finish_open(1, ok=True)]) == ["+GTCOAPOPEN: 1", "OK"]

    dropped = dialect.drop_context()
    assert effects(dropped) == [CloseInstance(1)]
    assert text_lines(dropped) == ["+MIPCALL: 0"]
    assert dialect.open_ids == set()
    assert ask(dialect, "AT+MIPCALL?") == ["+MIPCALL: 0", "OK"]
    assert ask(dialect, 'AT+GTCOAPSEND=1,1,"00"') == ["ERROR"]
    assert dialect.drop_context() == []  # nothing active: nothing to say
    assert ask(dialect, "AT+MIPCALL=1") == ["OK", "+MIPCALL: 10.91.0.2"]


async def test_in_process_variant_unknown_urc_and_dropped_context_over_the_pty(
    simulator_factory: SimulatorFactory,
) -> None:
    sim: L610Simulator = await simulator_factory(firmware=FIRMWARES["sim-ready"])
    port = RawPort(sim.port_path)
    try:
        assert await port.command("ATE0") == ["ATE0", "OK"]
        assert await port.command("AT+MIPCALL=1") == ["OK"]
        sim.urc("+EUSIM: 1")
        assert b"+EUSIM: 1\r\n" in await port.read_until(b"+EUSIM: 1\r\n")
        sim.drop_pdp()
        assert b"\r\n+MIPCALL: 0\r\n" in await port.read_until(b"+MIPCALL: 0\r\n")
        await sim.reboot()
        assert await port.read_until(b"+SIM READY\r\n") == b"\r\nRDY\r\n\r\n+SIM READY\r\n"
    finally:
        port.close()


def test_cli_selects_a_variant_and_control_drives_urcs_and_the_context(
    simulator_process: SimulatorProcessFactory,
) -> None:
    path, control = simulator_process("--firmware", "numeric-errors", "--boot-line", "+EUSIM: 1")
    with serial.Serial(path, timeout=0.2) as port:
        assert command(port, "ATE0") == b"ATE0\r\r\nOK\r\n"
        port.write(b"AT+CMEE=2\r")
        assert read_until(port, b"ERROR\r\n") == b"\r\nERROR\r\n"
        port.write(b"AT+MIPCALL=1\r")
        assert read_until(port, b"10.91.0.2\r\n") == b"\r\nOK\r\n\r\n+MIPCALL: 10.91.0.2\r\n"
        control.drop_pdp()
        assert read_until(port, b"+MIPCALL: 0\r\n") == b"\r\n+MIPCALL: 0\r\n"
        control.urc("^MODE: 17")
        assert read_until(port, b"17\r\n") == b"\r\n^MODE: 17\r\n"
        control.reboot()
        assert read_until(port, b"+EUSIM: 1\r\n") == (
            b"\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\n+EUSIM: 1\r\n"
        )
