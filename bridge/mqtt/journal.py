"""The crash-safe dedupe journal: answered request ids and their answers in SQLite.

With `state_dir` set, the front journals each request's first answer before it is
published, so a request the broker redelivers after a crash or restart is answered
from here instead of reaching the CoAP server again. A request is also marked when it
starts being served; the marks a killed process left behind are the requests it had
in flight, and `take_replayed(id)` tells (once) whether a redelivered id is one of them.

Contract: entries live `window` seconds (wall clock, which survives a restart) and at
most `max_entries` are kept, the oldest going first. SQLite in WAL mode with
`synchronous=NORMAL`: a committed write survives SIGKILL of the process (not a power
cut). Writes are grouped: they join one open transaction, committed by `commit()`,
which the front calls before it publishes a journaled answer, and which `defer` (the
loop's `call_soon`) schedules after the first write of a loop turn; without `defer`
each write commits at once. A file that is not a usable journal (corrupt, another
schema) is moved aside with a warning and a new one started, so a bad file never
stops the daemon; a failed write is logged and the dedupe goes on in memory.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import BridgeError

log = logging.getLogger(__name__)

FILE_NAME = "dedupe.sqlite3"
SCHEMA_VERSION = 1
# Expired rows are pruned every this many writes (and at open), not on every write.
PRUNE_EVERY = 256
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS answers ("
    " id TEXT PRIMARY KEY, answered_at REAL NOT NULL, digest BLOB NOT NULL,"
    " payload BLOB NOT NULL, error_kind TEXT)",
    "CREATE INDEX IF NOT EXISTS answers_by_age ON answers (answered_at)",
    "CREATE TABLE IF NOT EXISTS in_flight (id TEXT PRIMARY KEY, started_at REAL NOT NULL)",
)


class JournalError(BridgeError):
    """The dedupe journal cannot be opened or created; check `state_dir`."""


@dataclass(frozen=True, slots=True)
class JournaledAnswer:
    # The digest of the request this answers: the same id with another request is not it.
    digest: bytes
    payload: bytes
    error_kind: str | None


class AnswerJournal:
    """`AnswerJournal.open(state_dir, window, max_entries)`; `close()` when done."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        window: float,
        max_entries: int,
        clock: Callable[[], float],
        defer: Callable[[Callable[[], None]], object] | None,
    ) -> None:
        self._db = connection
        self._window = window
        self._max_entries = max_entries
        self._clock = clock
        self._defer = defer
        self._commit_pending = False
        self._writes = 0
        self._left_in_flight = {row[0] for row in self._db.execute("SELECT id FROM in_flight")}
        self._db.execute("DELETE FROM in_flight")
        self._prune()
        self._db.commit()

    @classmethod
    def open(
        cls,
        state_dir: Path,
        window: float,
        max_entries: int,
        clock: Callable[[], float] = time.time,
        defer: Callable[[Callable[[], None]], object] | None = None,
    ) -> AnswerJournal:
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create state_dir {state_dir}: {exc}") from exc
        path = state_dir / FILE_NAME
        try:
            connection = _connect(path)
        except sqlite3.DatabaseError as exc:
            moved = _move_aside(path, clock())
            log.warning(
                "dedupe journal %s is not usable (%s): moved it to %s and started a new one",
                path,
                exc,
                moved,
            )
            try:
                connection = _connect(path)
            except sqlite3.Error as again:
                raise JournalError(f"cannot create the dedupe journal {path}: {again}") from again
        journal = cls(connection, window, max_entries, clock, defer)
        log.info(
            "dedupe journal %s: %d answers kept, %d requests were in flight at the last stop",
            path,
            journal.answer_count(),
            len(journal._left_in_flight),
        )
        return journal

    @property
    def left_in_flight(self) -> int:
        """Requests the previous process had in flight that have not come back yet."""
        return len(self._left_in_flight)

    def answer_count(self) -> int:
        row = self._db.execute("SELECT count(*) FROM answers").fetchone()
        return int(row[0])

    def answered(self, request_id: str) -> JournaledAnswer | None:
        """The answer journaled for `request_id` within the window, or None."""
        row = self._db.execute(
            "SELECT digest, payload, error_kind FROM answers WHERE id = ? AND answered_at > ?",
            (request_id, self._clock() - self._window),
        ).fetchone()
        return None if row is None else JournaledAnswer(bytes(row[0]), bytes(row[1]), row[2])

    def take_replayed(self, request_id: str) -> bool:
        """True (once) when the previous process had `request_id` in flight."""
        if request_id in self._left_in_flight:
            self._left_in_flight.discard(request_id)
            return True
        return False

    def started(self, request_id: str) -> None:
        """Mark `request_id` as being served (its answer is not journaled yet)."""
        self._write(
            [
                (
                    "INSERT OR REPLACE INTO in_flight (id, started_at) VALUES (?, ?)",
                    (request_id, self._clock()),
                )
            ]
        )

    def record(
        self, request_id: str, digest: bytes, payload: bytes, error_kind: str | None
    ) -> None:
        """Journal the first answer of `request_id` (whose request has `digest`);
        `commit()` before publishing it."""
        writes: list[tuple[str, tuple[object, ...]]] = [
            ("DELETE FROM in_flight WHERE id = ?", (request_id,))
        ]
        if self._window > 0 and self._max_entries > 0:
            writes.append(
                (
                    "INSERT OR REPLACE INTO answers (id, answered_at, digest, payload, error_kind)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (request_id, self._clock(), digest, payload, error_kind),
                )
            )
        self._write(writes)

    def finished(self, request_id: str) -> None:
        """`request_id` is no longer being served and leaves no answer to replay (a stream)."""
        self._write([("DELETE FROM in_flight WHERE id = ?", (request_id,))])

    def commit(self) -> None:
        """Make every write so far durable (a no-op when there is none)."""
        self._commit_pending = False
        if not self._db.in_transaction:
            return
        try:
            if self._writes >= PRUNE_EVERY:
                self._writes = 0
                self._prune()
            self._db.commit()
        except sqlite3.Error as exc:
            log.error("dedupe journal: commit failed (%s); the dedupe goes on in memory", exc)
            with contextlib.suppress(sqlite3.Error):
                self._db.rollback()

    def close(self) -> None:
        self.commit()
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def _write(self, writes: list[tuple[str, tuple[object, ...]]]) -> None:
        try:
            for statement, parameters in writes:
                self._db.execute(statement, parameters)
        except sqlite3.Error as exc:
            log.error("dedupe journal: write failed (%s); the dedupe goes on in memory", exc)
            return
        self._writes += 1
        if self._defer is None:
            self.commit()
        elif not self._commit_pending:
            self._commit_pending = True
            self._defer(self.commit)

    def _prune(self) -> None:
        """Drop expired rows and the oldest beyond `max_entries` (in the open transaction)."""
        horizon = self._clock() - self._window
        self._db.execute("DELETE FROM answers WHERE answered_at <= ?", (horizon,))
        self._db.execute("DELETE FROM in_flight WHERE started_at <= ?", (horizon,))
        self._db.execute(
            "DELETE FROM answers WHERE id IN (SELECT id FROM answers"
            " ORDER BY answered_at DESC LIMIT -1 OFFSET ?)",
            (self._max_entries,),
        )


def _connect(path: Path) -> sqlite3.Connection:
    """Open (or create) the journal and check it; sqlite3.DatabaseError if unusable."""
    # Python's default isolation: each `with connection:` block is one transaction.
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and version != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version}, expected {SCHEMA_VERSION}")
        check = connection.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {check}")
        with connection:
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        connection.close()
        raise
    return connection


def _move_aside(path: Path, now: float) -> Path:
    """Rename the journal and its WAL files to `<name>.corrupt-<unix time>`."""
    target = path.with_name(f"{path.name}.corrupt-{int(now)}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.replace(Path(f"{target}{suffix}"))
    return target
