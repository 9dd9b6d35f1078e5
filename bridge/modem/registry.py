"""The driver registry: a modem's `model` key -> how to build its driver on an AT engine."""

from __future__ import annotations

from collections.abc import Callable

from bridge.at.engine import AtEngine
from bridge.modem.driver import DriverOptions, ModemDriver
from bridge.modem.l610 import L610
from bridge.modem.l610.driver import MODEL as L610_MODEL

DriverFactory = Callable[[AtEngine, DriverOptions], ModemDriver]


def _l610(engine: AtEngine, options: DriverOptions) -> ModemDriver:
    return L610(
        engine,
        name=options.name,
        apn=options.apn,
        command_timeout=options.command_timeout,
        registration_timeout=options.registration_timeout,
    )


DRIVERS: dict[str, DriverFactory] = {L610_MODEL: _l610}
