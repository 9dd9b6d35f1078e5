"""Firmware variants of the simulated L610, as data: what differs between builds.

`FIRMWARES` names the variants the simulator can run (`--firmware NAME`, the
`firmware=` argument); see README.md in this package for what each reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Firmware:
    """boot_lines: printed after a reset with a SIM (`RDY` alone without one);
    cmee_max: the highest `AT+CMEE` mode accepted (1: numeric errors only);
    gtcoap: whether the GTCOAP commands exist; extra_boot_lines: unknown lines a
    build prints after its boot lines."""

    name: str
    boot_lines: tuple[str, ...] = ("RDY", "+CPIN: READY")
    cmee_max: int = 2
    gtcoap: bool = True
    extra_boot_lines: tuple[str, ...] = ()

    def boot(self, *, sim_inserted: bool) -> tuple[str, ...]:
        lines = self.boot_lines if sim_inserted else self.boot_lines[:1]
        return (*lines, *self.extra_boot_lines)

    def with_extra_boot_lines(self, lines: tuple[str, ...]) -> Firmware:
        return replace(self, extra_boot_lines=(*self.extra_boot_lines, *lines))


STANDARD = Firmware("standard")

FIRMWARES: dict[str, Firmware] = {
    firmware.name: firmware
    for firmware in (
        STANDARD,
        # Builds that announce the SIM as +SIM READY instead of +CPIN: READY (neither the
        # manual nor RT-Thread's L610 code names this line; reported from the field).
        Firmware("sim-ready", boot_lines=("RDY", "+SIM READY")),
        # Only AT+CMEE=0|1: every SIM/network error is a number.
        Firmware("numeric-errors", cmee_max=1),
        # A build without the CoAP chapter: GTCOAP commands are unknown (ERROR).
        Firmware("no-gtcoap", gtcoap=False),
    )
}
