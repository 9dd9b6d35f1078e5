"""A short soak: 500 requests through mosquitto, the daemon and the simulator, with faults.

The full soak is `make soak` (10,000 requests on a 115200-baud link); this one runs on
an unthrottled link with a little latency so it takes seconds, but injects the same
faults (5% datagram loss, modem reboot, garbage, broker restart, unplug, swallowed OK).
"""

from __future__ import annotations

import pytest

from bench.soak import run_soak
from bench.stack import LinkProfile

pytestmark = pytest.mark.timeout(180)


def test_every_request_is_answered_through_faults() -> None:
    report = run_soak(
        500,
        in_flight=16,
        profile=LinkProfile(latency_ms=5, loss=0.05, seed=11),
        request_timeout=8.0,
        grace=30.0,
        log_level="warning",
    )

    assert report.lost == [], report.render()
    assert report.answered == report.sent == 500, report.render()
    assert report.daemon_alive, report.render()
    assert len(report.faults) == 5, report.render()
    # Faults cost some requests an error answer, but most must get through.
    assert report.ok >= 400, report.render()
    # The server sees an id twice only when a modem reset caught its CON in flight (it is
    # retransmitted from a new instance, see tests/reliability/test_faults_modem.py):
    # at most one window of requests per modem fault (reboot, unplug).
    assert report.duplicate_sends <= 2 * 16, report.render()
