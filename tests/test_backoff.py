"""The shared backoff: capped, jittered below the step, reset after success."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.backoff import Backoff


def test_doubles_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(1.0, 10.0, jitter=0.0)
    assert [backoff.next() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.attempts == 6


def test_reset_starts_again_from_initial() -> None:
    backoff = Backoff(0.5, 4.0, jitter=0.0)
    backoff.next()
    backoff.next()
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next() == 0.5


def test_jitter_draws_below_the_step() -> None:
    draws: list[tuple[float, float]] = []

    def lowest(low: float, high: float) -> float:
        draws.append((low, high))
        return low

    backoff = Backoff(2.0, 8.0, jitter=0.25, uniform=lowest)
    assert backoff.next() == 1.5
    assert backoff.next() == 3.0
    assert draws == [(1.5, 2.0), (3.0, 4.0)]


@given(
    initial=st.floats(0.01, 10.0),
    extra=st.floats(0.0, 100.0),
    jitter=st.floats(0.0, 0.99),
    attempts=st.integers(1, 40),
)
def test_a_wait_never_exceeds_the_cap(
    initial: float, extra: float, jitter: float, attempts: int
) -> None:
    maximum = initial + extra
    backoff = Backoff(initial, maximum, jitter=jitter)
    for _ in range(attempts):
        wait = backoff.next()
        assert 0 < wait <= maximum


@pytest.mark.parametrize(
    ("initial", "maximum", "jitter", "factor"),
    [(0.0, 1.0, 0.5, 2.0), (2.0, 1.0, 0.5, 2.0), (1.0, 2.0, 1.0, 2.0), (1.0, 2.0, 0.5, 0.5)],
)
def test_refuses_settings_that_cannot_back_off(
    initial: float, maximum: float, jitter: float, factor: float
) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial, maximum, jitter=jitter, factor=factor)
