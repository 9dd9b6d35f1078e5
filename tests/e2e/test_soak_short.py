"""A short soak: 500 requests through mosquitto, the daemon and the simulator, with faults.

The full soak is `make soak` (10,000 requests on a 115200-baud link); this one runs on
an unthrottled link with a little latency so it takes seconds, but injects the same
faults (5% datagram loss, modem reboot, garbage, broker restart, unplug, swallowed OK).
"""

from __future__ import annotations

import pytest

from bench.soak import run_soak
from bench.stack import LinkProfile

pytestmark = pytest.mark.timeout(240)

REQUESTS = 500
IN_FLIGHT = 16
# RFC 7252 §4.8.2: MAX_TRANSMIT_SPAN, 45 s from a CON's first transmission to its last
# retransmission. With a request timeout beyond it, the 5% loss costs a request a
# retransmission, not its answer (all five transmissions of one exchange lost: about
# 1e-5 per request), and every fault below is over long before (the unplug, 3 s, plus
# the engine's reconnect backoff cap, 5 s).
REQUEST_TIMEOUT = 60.0


def test_every_request_is_answered_once_with_2_05_through_faults() -> None:
    report = run_soak(
        REQUESTS,
        in_flight=IN_FLIGHT,
        profile=LinkProfile(latency_ms=5, loss=0.05, seed=11),
        request_timeout=REQUEST_TIMEOUT,
        grace=REQUEST_TIMEOUT + 15,
        log_level="warning",
    )

    assert report.lost == [], report.render()
    assert report.answered == report.sent == REQUESTS, report.render()
    assert report.daemon_alive, report.render()
    assert len(report.faults) == 5, report.render()
    # Every duplicate published before the sentinel's answer has been counted.
    assert report.sentinel == "invalid_request", report.render()
    # Each timeout outlasts every fault's recovery: none costs a request its 2.05.
    assert report.errors == {}, report.render()
    assert report.ok == REQUESTS, report.render()
    # One answer each, but for QoS 1's at-least-once over the broker restart: a request
    # in flight when the broker went is redelivered, and answered again, from the dedupe
    # cache, with the same answer (docs/mqtt-api.md, "Delivery guarantees").
    assert report.differing_repeats == [], report.render()
    assert report.unexplained_repeats == [], report.render()
    # The server sees an id twice only when a modem reset caught its CON in flight (it is
    # retransmitted from a new instance, see tests/reliability/test_faults_modem.py):
    # at most one window of requests per modem fault (reboot, unplug).
    assert report.duplicate_sends <= 2 * IN_FLIGHT, report.render()
