"""What the MQTT layer counts: one table, kept by the session, its outbox and the front."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class MqttStats:
    """Counters, which only ever grow. `as_dict()` is the health object's `counters`."""

    # The session: CONNACKs accepted, links lost, PUBLISHes received.
    connects: int = 0
    connection_losses: int = 0
    received: int = 0
    # The outbox: messages dropped from its full queue while the link was down.
    dropped_queued: int = 0
    # The front: requests taken, answers published (responses, errors; timeouts among them).
    requests: int = 0
    responses: int = 0
    errors: int = 0
    timeouts: int = 0
    # Redelivered requests answered without serving them again (attached or cached).
    dedupe_hits: int = 0
    # The front's journal: requests the previous process was serving when it died.
    replayed_after_restart: int = 0

    def as_dict(self) -> dict[str, int]:
        """The health object's `counters` member (see the MQTT contract)."""
        return {
            "requests": self.requests,
            "responses": self.responses,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "dropped_queued": self.dropped_queued,
            "dedupe_hits": self.dedupe_hits,
            "replayed_after_restart": self.replayed_after_restart,
        }
