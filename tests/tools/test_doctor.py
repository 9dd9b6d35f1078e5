"""`mqtt-coap-bridge doctor` against the simulator and real CoAP servers: a healthy
modem passes every step; a missing SIM, a modem that never registers, a firmware
without GTCOAP, a silent server and a port that does not exist fail at the right step."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.at.trace import parse_entry
from bridge.simulator.firmware import FIRMWARES
from bridge.tools.checkup import Doctor, DoctorOptions, Report
from bridge.tools.diagnosis import Verdict
from tests.fixtures.coap_servers import AiocoapServer, LibcoapServer, SilentPort
from tests.fixtures.simulator import REPO_ROOT, SimulatorFactory, SimulatorProcessFactory

STEPS = [
    "port",
    "at",
    "echo",
    "errors",
    "identity",
    "sim",
    "registration",
    "signal",
    "pdp",
    "instances",
]
COAP_STEPS = ["coap open", "coap ping", "coap close"]


def verdicts(report: Report) -> dict[str, Verdict]:
    return {step.name: step.verdict for step in report.steps}


async def diagnose(port: str, **options: Any) -> Report:
    return await Doctor(DoctorOptions(port, **options)).run()


async def test_healthy_modem_passes_every_step_and_pings_aiocoap(
    simulator_factory: SimulatorFactory, aiocoap_server: AiocoapServer, tmp_path: Path
) -> None:
    sim = await simulator_factory()
    trace = tmp_path / "doctor.trace"
    report = await diagnose(
        sim.port_path, server=("127.0.0.1", aiocoap_server.port), timeout=5, trace_file=str(trace)
    )
    assert report.passed, report.as_dict()
    assert [step.name for step in report.steps] == STEPS + COAP_STEPS
    assert set(verdicts(report).values()) == {Verdict.OK}
    steps = {step.name: step for step in report.steps}
    assert steps["sim"].commands == ["AT+CPIN?"]
    assert steps["sim"].reply == ["+CPIN: READY", "OK"]
    assert steps["echo"].detail == "echo was on (as after a reset); now off"
    assert "IMEI: 867584030123454" in steps["identity"].detail
    assert steps["signal"].detail == "-65 dBm (rssi 24): good"
    assert steps["pdp"].detail.endswith("IP 10.91.0.2")
    ping = steps["coap ping"]
    assert ping.commands[0].startswith('AT+GTCOAPSEND=1,4,"40')  # an empty CON, 4 bytes
    assert ping.reply[-1].startswith("+GTCOAPDATA: 1,4,70")  # answered by RST
    assert "the server is reachable" in ping.detail
    # --trace: the whole session in the transcript format.
    entries = [e for e in map(parse_entry, trace.read_text().splitlines()) if e is not None]
    sent = [e.text for e in entries if e.direction == ">"]
    assert sent[:3] == ["AT", "ATE0", "AT+CMEE=2"]
    assert any(e.direction == "<" and e.text.startswith("+GTCOAPDATA: 1,4,70") for e in entries)


async def test_no_sim_fails_at_the_sim_step_and_says_what_to_do(
    simulator_factory: SimulatorFactory,
) -> None:
    sim = await simulator_factory(sim_inserted=False)
    report = await diagnose(sim.port_path, server=("127.0.0.1", 5683), timeout=5)
    failed = report.failed_step
    assert failed is not None
    assert failed.name == "sim"
    assert failed.reply == ["+CME ERROR: SIM not inserted"]
    assert failed.remedy == "no SIM card: insert one, or check the SIM tray"
    states = verdicts(report)
    assert states["signal"] is Verdict.OK  # still read: it helps with the diagnosis
    for name in ("registration", "pdp", "instances", *COAP_STEPS):
        assert states[name] is Verdict.NOT_RUN
    assert not report.passed


async def test_numeric_only_firmware_without_sim_still_says_no_sim(
    simulator_factory: SimulatorFactory,
) -> None:
    sim = await simulator_factory(sim_inserted=False, firmware=FIRMWARES["numeric-errors"])
    report = await diagnose(sim.port_path, timeout=5)
    steps = {step.name: step for step in report.steps}
    assert steps["errors"].detail == "numeric errors only (firmware without AT+CMEE=2)"
    assert steps["sim"].reply == ["+CME ERROR: 10"]
    assert steps["sim"].remedy == "no SIM card: insert one, or check the SIM tray"


async def test_modem_that_never_registers_fails_at_registration_after_the_timeout(
    simulator_factory: SimulatorFactory,
) -> None:
    sim = await simulator_factory(register_after=120)
    report = await diagnose(sim.port_path, timeout=1.5)
    failed = report.failed_step
    assert failed is not None
    assert failed.name == "registration"
    assert failed.remedy == (
        "not registered after 1.5 s: check the antenna, the coverage at this place and the APN"
    )
    assert "+CEREG 2 (not registered, searching)" in failed.detail
    assert failed.seconds >= 1.5
    assert verdicts(report)["pdp"] is Verdict.NOT_RUN


async def test_firmware_without_gtcoap_fails_at_instances(
    simulator_factory: SimulatorFactory,
) -> None:
    sim = await simulator_factory(firmware=FIRMWARES["no-gtcoap"])
    report = await diagnose(sim.port_path, server=("127.0.0.1", 5683), timeout=5)
    failed = report.failed_step
    assert failed is not None
    assert failed.name == "instances"
    assert "no GTCOAP" in failed.detail
    assert "firmware with the CoAP AT commands" in failed.remedy


async def test_server_that_never_answers_fails_at_the_coap_ping_and_closes(
    simulator_factory: SimulatorFactory, silent_udp_port: SilentPort
) -> None:
    sim = await simulator_factory()
    report = await diagnose(sim.port_path, server=("127.0.0.1", silent_udp_port.port), timeout=1)
    failed = report.failed_step
    assert failed is not None
    assert failed.name == "coap ping"
    assert failed.detail == f"no RST from 127.0.0.1:{silent_udp_port.port} within 1 s"
    assert silent_udp_port.received[0][:2] == b"\x40\x00"
    assert verdicts(report)["coap close"] is Verdict.OK


async def test_port_that_does_not_exist_fails_at_the_port_step(tmp_path: Path) -> None:
    report = await diagnose(str(tmp_path / "ttyUSB9"))
    failed = report.failed_step
    assert failed is not None
    assert failed.name == "port"
    assert "ttyUSB9" in failed.detail
    assert "option driver" in failed.remedy
    assert [step.verdict for step in report.steps[1:]] == [Verdict.NOT_RUN] * (len(STEPS) - 1)


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "doctor",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_passes_with_json_against_a_simulator_process_and_libcoap(
    simulator_process: SimulatorProcessFactory, libcoap_server: LibcoapServer, tmp_path: Path
) -> None:
    port, _ = simulator_process()
    trace = tmp_path / "at.trace"
    status, out, _ = await run_cli(
        "--port",
        port,
        "--server",
        f"127.0.0.1:{libcoap_server.port}",
        "--timeout",
        "5",
        "--json",
        "--trace",
        str(trace),
    )
    assert status == 0, out
    report = json.loads(out)
    assert report["passed"] is True
    assert [step["name"] for step in report["steps"]] == STEPS + COAP_STEPS
    assert all(step["verdict"] == "ok" for step in report["steps"])
    assert trace.read_text().startswith("# mqtt-coap-bridge AT transcript v1")


async def test_cli_text_report_exit_1_and_config_modem_selection(
    simulator_process: SimulatorProcessFactory, tmp_path: Path
) -> None:
    port, _ = simulator_process("--no-sim")
    config = tmp_path / "config.yaml"
    config.write_text(f"modem:\n  port: {port}\n  apn: internet\n")
    status, out, _ = await run_cli("-c", str(config), "--modem", "modem", "--timeout", "2")
    assert status == 1
    assert f"mqtt-coap-bridge doctor: {port} at 115200 baud" in out
    assert "[FAIL] sim: SIM not usable: SIM not inserted" in out
    assert "what to do: no SIM card: insert one, or check the SIM tray" in out
    assert out.rstrip().endswith(
        "failed at step 'sim': no SIM card: insert one, or check the SIM tray"
    )
    status, _, err = await run_cli("-c", str(config), "--modem", "lte2")
    assert status == 2
    assert "no modem 'lte2' in the config" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give --port PORT, or -c CONFIG"),
        (("--port", "/dev/x", "--server", "host"), "--server must be HOST:PORT"),
        (("--port", "/dev/x", "--modem", "a"), "--modem NAME needs -c CONFIG"),
    ],
)
async def test_cli_refuses_unusable_options(args: tuple[str, ...], message: str) -> None:
    status, _, err = await run_cli(*args)
    assert status == 2
    assert message in err
