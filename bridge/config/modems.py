"""The `modem:` section and the `modems:` list: one entry per modem, each with its driver."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pydantic import Field, ValidationInfo, field_validator

from bridge.config.sections import Seconds, Section, resolve_path
from bridge.modem.registry import DRIVERS

# The name of the modem of a one-entry `modem:` section that gives none.
SINGLE_MODEM_NAME = "modem"

_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]{0,30}[a-z0-9_])?$")


class ModemSettings(Section):
    # Unique among the modems: requests, server aliases, health and logs name it.
    name: str = ""
    model: str = "l610"
    port: str = Field(min_length=1)
    baudrate: int = Field(default=115200, ge=1)
    apn: str = ""
    command_timeout: Seconds = 5.0
    registration_timeout: Seconds = 60.0
    max_instances: int = Field(default=4, ge=1)
    instance_idle_close: Seconds = 300.0
    # The AT transcript (docs/transcripts.md): "" writes none.
    trace_file: str = ""
    trace_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not _NAME.match(value):
            raise ValueError(
                f"modem name {value!r} must be 1-32 lower-case letters, digits, '-', '_' "
                "or '.' (requests and server aliases name the modem with it)"
            )
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in DRIVERS:
            raise ValueError(f"unknown modem model {value!r}; known: {', '.join(sorted(DRIVERS))}")
        return value

    @field_validator("trace_file")
    @classmethod
    def _trace_path(cls, value: str, info: ValidationInfo) -> str:
        return resolve_path(value, info) if value else value


def modems_from_sections(
    single: ModemSettings | None, listed: tuple[ModemSettings, ...]
) -> tuple[ModemSettings, ...]:
    """The configured modems, a `modem:` section being a one-entry list; raises ValueError."""
    if single is not None and listed:
        raise ValueError("give either modem (one modem) or modems (a list of modems), not both")
    if single is None and not listed:
        raise ValueError("no modem configured: add a modem section (or a modems list)")
    if single is not None:
        return (single if single.name else single.model_copy(update={"name": SINGLE_MODEM_NAME}),)
    unnamed = [str(index) for index, modem in enumerate(listed) if not modem.name]
    if unnamed:
        raise ValueError(
            f"modems {', '.join(unnamed)} have no name: every entry of modems needs one"
        )
    for what, values in (("name", [m.name for m in listed]), ("port", [m.port for m in listed])):
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise ValueError(f"two modems have the same {what}: {', '.join(repeated)}")
    return listed


def unknown_modem_problem(
    server_modems: Mapping[str, str], modems: Iterable[ModemSettings]
) -> str | None:
    """A server alias naming a modem that is not configured, as a problem."""
    names = {modem.name for modem in modems}
    for alias, name in server_modems.items():
        if name and name not in names:
            return (
                f"coap.servers.{alias}.modem names modem {name!r}, which is not configured "
                f"(modems: {', '.join(sorted(names))})"
            )
    return None
