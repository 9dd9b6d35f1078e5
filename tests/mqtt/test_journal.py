"""The SQLite dedupe journal: window, bound, in-flight marks across a kill, bad files."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.mqtt.journal import FILE_NAME, PRUNE_EVERY, AnswerJournal, JournaledAnswer

DIGEST = bytes(range(16))  # the digest of the request an answer belongs to


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def open_journal(
    state_dir: Path, clock: FakeClock, window: float = 60, max_entries: int = 1000
) -> AnswerJournal:
    return AnswerJournal.open(state_dir, window, max_entries, clock=clock)


def test_an_answer_is_kept_for_the_window_across_a_reopen(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = open_journal(tmp_path, clock)
    journal.started("a")
    journal.record("a", DIGEST, b'{"id": "a"}', None)
    journal.record("b", DIGEST, b'{"id": "b", "ok": false}', "timeout")
    journal.close()

    clock.now += 59
    again = open_journal(tmp_path, clock)
    assert again.answered("a") == JournaledAnswer(DIGEST, b'{"id": "a"}', None)
    assert again.answered("b") == JournaledAnswer(DIGEST, b'{"id": "b", "ok": false}', "timeout")
    assert again.answered("c") is None
    assert not again.take_replayed("a")  # answered before the stop: not in flight
    clock.now += 2
    assert again.answered("a") is None
    again.close()


def test_expired_rows_are_pruned_and_the_count_is_bounded(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = open_journal(tmp_path, clock, window=10, max_entries=100)
    for index in range(PRUNE_EVERY):
        journal.record(f"old-{index}", DIGEST, b"x", None)
    assert journal.answer_count() == 100  # the bound held at the prune
    assert journal.answered(f"old-{PRUNE_EVERY - 1}") is not None  # newest kept
    assert journal.answered("old-0") is None  # oldest went first
    clock.now += 11
    journal.close()
    assert open_journal(tmp_path, clock, window=10, max_entries=100).answer_count() == 0


def test_requests_in_flight_at_a_kill_are_reported_once(tmp_path: Path) -> None:
    # A real SIGKILL between the writes: what was committed must be there afterwards.
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from bridge.mqtt.journal import AnswerJournal
        journal = AnswerJournal.open(Path({str(tmp_path)!r}), 600, 1000)
        journal.started("answered")
        journal.record("answered", {DIGEST!r}, b"answer", None)
        journal.started("in-flight-1")
        journal.started("in-flight-2")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, cwd=os.getcwd())
    assert result.returncode == -signal.SIGKILL

    journal = AnswerJournal.open(tmp_path, 600, 1000)
    assert journal.answered("answered") == JournaledAnswer(DIGEST, b"answer", None)
    assert journal.left_in_flight == 2
    assert journal.take_replayed("in-flight-1")
    assert not journal.take_replayed("in-flight-1")  # counted once
    assert not journal.take_replayed("answered")
    assert journal.left_in_flight == 1
    journal.close()
    # The marks were taken over at the open: a second restart does not count them again.
    assert AnswerJournal.open(tmp_path, 600, 1000).left_in_flight == 0


def test_a_zero_window_journals_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = open_journal(tmp_path, clock, window=0)
    journal.started("a")
    journal.record("a", DIGEST, b"x", None)
    assert journal.answered("a") is None
    journal.close()
    assert open_journal(tmp_path, clock, window=0).left_in_flight == 0


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda path: path.write_bytes(b"this is not a database" * 100), id="garbage"),
        pytest.param(lambda path: _other_schema(path), id="other-schema"),
        pytest.param(lambda path: _truncated(path), id="truncated"),
    ],
)
def test_an_unusable_file_is_moved_aside_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object
) -> None:
    clock = FakeClock()
    path = tmp_path / FILE_NAME
    journal = open_journal(tmp_path, clock)
    for index in range(200):
        journal.record(f"r{index}", DIGEST, b"x" * 200, None)
    journal.close()
    damage(path)  # type: ignore[operator]

    with caplog.at_level(logging.WARNING, logger="bridge.mqtt.journal"):
        fresh = open_journal(tmp_path, clock)
    assert "moved it to" in caplog.text
    assert (tmp_path / f"{FILE_NAME}.corrupt-{int(clock.now)}").exists()
    assert fresh.answer_count() == 0
    fresh.record("new", DIGEST, b"y", None)
    assert fresh.answered("new") == JournaledAnswer(DIGEST, b"y", None)
    fresh.close()


def _other_schema(path: Path) -> None:
    path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE something (x)")
        db.execute("PRAGMA user_version = 7")
    db.close()


def _truncated(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    data = path.read_bytes()
    # Keep the header page, break the rest: tables point at pages full of noise.
    path.write_bytes(data[:4096] + bytes(range(256)) * ((len(data) - 4096) // 256))


def test_writes_of_one_loop_turn_are_committed_together(tmp_path: Path) -> None:
    scheduled: list[Callable[[], None]] = []
    journal = AnswerJournal.open(tmp_path, 60, 1000, defer=scheduled.append)
    journal.started("a")
    journal.record("a", DIGEST, b"x", None)
    journal.record("b", DIGEST, b"y", None)
    assert len(scheduled) == 1  # one commit for the turn
    with sqlite3.connect(tmp_path / FILE_NAME) as other:
        assert other.execute("SELECT count(*) FROM answers").fetchone()[0] == 0
    scheduled.pop()()
    with sqlite3.connect(tmp_path / FILE_NAME) as other:
        assert other.execute("SELECT count(*) FROM answers").fetchone()[0] == 2
    journal.record("c", DIGEST, b"z", None)
    journal.commit()  # what the front does before publishing: durable now
    with sqlite3.connect(tmp_path / FILE_NAME) as other:
        assert other.execute("SELECT count(*) FROM answers").fetchone()[0] == 3
    scheduled.pop()()  # the deferred one finds nothing left to do
    journal.close()


def test_a_finished_stream_leaves_no_answer_and_no_in_flight_mark(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = open_journal(tmp_path, clock)
    journal.started("stream")
    journal.finished("stream")
    journal.close()

    again = open_journal(tmp_path, clock)
    assert again.answered("stream") is None
    assert not again.take_replayed("stream")
    again.close()
