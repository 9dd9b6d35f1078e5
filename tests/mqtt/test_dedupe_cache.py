"""The dedupe cache, sans-IO with a fake clock."""

from __future__ import annotations

from bridge.mqtt.dedupe import AnswerCache

# The promise of bridge/mqtt/dedupe.py, in its figures: remembered for at least the
# window and at most `window * (1 + 1/64)` (64 time buckets), written out here so that
# a change of the granularity is a change of this test too.
BUCKETS = 64


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entry_lives_for_the_window_and_at_most_one_bucket_more() -> None:
    clock = FakeClock()
    cache: AnswerCache[str] = AnswerCache(window=10, max_entries=100, clock=clock)
    cache.put("a", "answer-a")
    clock.now += 10
    assert cache.get("a") == "answer-a"
    clock.now += 10 / BUCKETS + 0.001
    assert cache.get("a") is None
    assert len(cache) == 0


def test_entries_expire_by_age_across_buckets() -> None:
    clock = FakeClock()
    cache: AnswerCache[int] = AnswerCache(window=64, max_entries=1000, clock=clock)
    for index in range(128):
        cache.put(f"id-{index}", index)
        clock.now += 1
    # Now = 1128: ids put at 1000..1062 are older than the window plus one bucket.
    assert cache.get("id-0") is None
    assert cache.get("id-62") is None
    assert cache.get("id-64") == 64
    assert cache.get("id-127") == 127
    assert len(cache) == 64


def test_oldest_goes_when_full() -> None:
    cache: AnswerCache[int] = AnswerCache(window=600, max_entries=3, clock=FakeClock())
    for index in range(5):
        cache.put(f"id-{index}", index)
    assert [cache.get(f"id-{index}") for index in range(5)] == [None, None, 2, 3, 4]
    assert len(cache) == 3


def test_put_again_refreshes_age_and_order() -> None:
    clock = FakeClock()
    cache: AnswerCache[int] = AnswerCache(window=10, max_entries=2, clock=clock)
    cache.put("a", 1)
    clock.now += 5
    cache.put("b", 2)
    cache.put("a", 3)  # now the newest: "b" is the oldest
    cache.put("c", 4)
    assert cache.get("b") is None
    assert cache.get("a") == 3
    clock.now += 9
    assert cache.get("a") == 3


def test_zero_window_disables_the_cache() -> None:
    cache: AnswerCache[int] = AnswerCache(window=0, max_entries=10)
    cache.put("a", 1)
    assert cache.get("a") is None
