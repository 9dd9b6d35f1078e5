"""`make bench`, section oscore: what OSCORE costs on the modem line and in the daemon.

One gateway, the same small GET to the same server (`bench.coap_server` with an OSCORE
context), first in plaintext (`coap://bench/small`), then protected
(`coap://secure/small`, an alias with the client side of that context): bytes per
exchange on the serial line in each direction, and daemon CPU per 1,000 requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.driver import RequestFactory, RunResult
from bench.gateway import Gateway, LineUse
from bench.stack import cpu_seconds

SECURE_ALIAS = "secure"

Measure = Callable[[Gateway, str, int, int, RequestFactory], tuple[RunResult, LineUse]]


@dataclass(frozen=True)
class ExchangeCost:
    answered: int
    not_ok: int
    to_modem: float  # pty bytes per exchange, bridge -> modem (AT+GTCOAPSEND and hex)
    from_modem: float  # modem -> bridge (OK, +GTCOAPDATA and hex)
    daemon_cpu_per_1000: float  # seconds

    @property
    def line_bytes(self) -> float:
        return self.to_modem + self.from_modem


def exchange_cost(
    case: Gateway,
    measure: Measure,
    label: str,
    count: int,
    in_flight: int,
    make_request: RequestFactory,
) -> ExchangeCost:
    """One measured run: its line bytes and daemon CPU, per answered exchange."""
    before = cpu_seconds(case.daemon.pid)
    result, line = measure(case, label, count, in_flight, make_request)
    cpu = cpu_seconds(case.daemon.pid) - before
    answered = max(result.answered, 1)
    return ExchangeCost(
        answered=result.answered,
        not_ok=result.sent - result.ok,
        to_modem=line.to_modem / answered,
        from_modem=line.from_modem / answered,
        daemon_cpu_per_1000=1000 * cpu / answered,
    )
