"""The pool on its own clean-start connection: three gateways as processes on a real
mosquitto, pooled GETs at 30/s, one gateway SIGKILLed after 4 s and left dead."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fleet import FleetPlan, run_pool

pytestmark = pytest.mark.timeout(300)

KILL_ONE = FleetPlan(
    gateways=3,
    requests=300,
    rate=30.0,
    kill=1,
    freeze=0,
    kill_at=4.0,
    restart_at=-1,
    retry_after=5.0,
    drain=30.0,
)


def test_a_dead_member_strands_nothing_once_the_requester_republishes(tmp_path: Path) -> None:
    report = run_pool(tmp_path, KILL_ONE, retries=3)
    print("\n".join(report.lines()))
    assert report.lost == 0
    assert report.answered == 300
    assert report.duplicate_answers == 0
    # Only what was in flight on the dead member needed a second publish.
    assert report.republished <= 0.02 * 300
    # The survivors served everything after the kill.
    assert sum(report.share.values()) == 300
    assert report.share.get("fleet-01", 0) < 300 / 3


def test_without_republishing_a_killed_member_strands_at_most_its_receive_maximum(
    tmp_path: Path,
) -> None:
    report = run_pool(tmp_path, KILL_ONE, retries=0)
    print("\n".join(report.lines()))
    assert report.lost <= KILL_ONE.pool_receive_maximum
