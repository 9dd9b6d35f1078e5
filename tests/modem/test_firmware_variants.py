"""The L610 driver against the simulator's firmware variants: boot lines it did not
know, numeric-only CME errors, a PDP context the network releases, unknown URCs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from bridge.errors import ModemError, ModemUnavailable
from bridge.modem.l610 import L610
from bridge.modem.l610.unsolicited import Unsolicited, classify
from bridge.simulator import L610Simulator
from bridge.simulator.firmware import FIRMWARES, STANDARD
from tests.fixtures.modem import eventually, fast_engine, make_l610
from tests.fixtures.simulator import SimulatorFactory

from .conftest import EchoServer

DriverFactory = Callable[..., Awaitable[tuple[L610Simulator, L610]]]


@pytest.fixture
async def driver_on(simulator_factory: SimulatorFactory) -> AsyncIterator[DriverFactory]:
    """`sim, modem = await driver_on(firmware=..., probe_interval=...)`."""
    async with AsyncExitStack() as exits:

        async def start(
            probe_interval: float = 30.0, **sim_options: Any
        ) -> tuple[L610Simulator, L610]:
            sim = await simulator_factory(**sim_options)
            at = await exits.enter_async_context(fast_engine(sim.port_path))
            modem = await exits.enter_async_context(make_l610(at, probe_interval=probe_interval))
            return sim, modem

        yield start


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("RDY", Unsolicited.BOOT),
        ("+SIM READY", Unsolicited.BOOT),
        ("+CPIN: READY", Unsolicited.BOOT),
        ("+CFUN: 1", Unsolicited.BOOT),
        ("OK", Unsolicited.LATE_RESULT),
        ("+CME ERROR: 10", Unsolicited.LATE_RESULT),
        ("+EUSIM: 1", Unsolicited.UNKNOWN),
        ("RDY?", Unsolicited.UNKNOWN),
    ],
)
def test_unsolicited_lines_are_classified(line: str, kind: Unsolicited) -> None:
    assert classify(line) is kind


async def test_sim_ready_boot_line_is_a_reset_and_bring_up_follows(
    driver_on: DriverFactory, udp_echo: EchoServer
) -> None:
    sim, modem = await driver_on(firmware=FIRMWARES["sim-ready"])
    await modem.open("127.0.0.1", udp_echo.port)
    await sim.reboot()
    await eventually(lambda: modem.generation == 1 and modem.ready, within=5)
    assert modem.health().resets == 1
    # The instances are gone with the reset; a new one opens on the fresh modem.
    assert await modem.open("127.0.0.1", udp_echo.port) == 1


async def test_sim_ready_in_the_middle_of_a_reply_is_still_a_boot_line(
    driver_on: DriverFactory,
) -> None:
    sim, modem = await driver_on()
    sim.urc_mid_reply("+SIM READY")
    ids = await modem.free_instance_ids()
    assert ids == [1, 2, 3, 4]  # the boot line was not taken for an information line
    await eventually(lambda: modem.generation == 1)


async def test_numeric_only_firmware_brings_up_with_cmee_1_and_probes_keep_it(
    driver_on: DriverFactory,
) -> None:
    _, modem = await driver_on(firmware=FIRMWARES["numeric-errors"], probe_interval=0.1)
    assert modem.ready
    commands = modem.health().at_commands
    # Several health probes (each reads AT+CMEE?) pass without taking mode 1 for a reset.
    await eventually(lambda: modem.health().at_commands >= commands + 9)
    assert (modem.generation, modem.health().resets) == (0, 0)
    with pytest.raises(ModemError) as caught:
        await modem.command("AT+CPIN=1234")
    assert (caught.value.result, caught.value.code) == ("+CME ERROR: 3", 3)
    assert caught.value.text == "operation not allowed"


async def test_numeric_only_firmware_without_sim_says_sim_not_inserted_in_words(
    simulator_factory: SimulatorFactory,
) -> None:
    sim = await simulator_factory(firmware=FIRMWARES["numeric-errors"], sim_inserted=False)
    async with fast_engine(sim.port_path) as at:
        with pytest.raises(ModemUnavailable, match="SIM not usable: SIM not inserted"):
            async with make_l610(at):
                pass


async def test_pdp_context_released_by_the_network_is_activated_again(
    driver_on: DriverFactory, udp_echo: EchoServer
) -> None:
    sim, modem = await driver_on()
    await modem.open("127.0.0.1", udp_echo.port)
    sim.drop_pdp()
    await eventually(lambda: modem.generation == 1)
    await eventually(lambda: modem.ready, within=5)
    assert modem.health().ip == "10.91.0.2"
    assert await modem.command("AT+MIPCALL?") == ['+MIPCALL: 1,"10.91.0.2"']
    coap_id = await modem.open("127.0.0.1", udp_echo.port)
    await modem.send(coap_id, b"\x40\x01\x00\x01")
    await eventually(lambda: udp_echo.protocol.received == [b"\x40\x01\x00\x01"])


async def test_unknown_urcs_are_counted_and_ignored(driver_on: DriverFactory) -> None:
    extra = STANDARD.with_extra_boot_lines(("^MODE: 17",))
    sim, modem = await driver_on(firmware=extra)
    sim.urc("+EUSIM: 1")
    sim.urc('+QIND: "csq",24,99')
    await eventually(lambda: modem.health().unknown_lines == 2)
    assert (modem.ready, modem.generation) == (True, 0)
    assert await modem.free_instance_ids() == [1, 2, 3, 4]
    # A reboot's extra line after the boot lines is one more unknown line, one reset.
    await sim.reboot()
    await eventually(lambda: modem.health().unknown_lines == 3 and modem.ready, within=5)
    assert modem.health().resets == 1
    assert modem.health().as_dict()["unknown_lines"] == 3
