"""Tells a session taken over by another client from an ordinary lost link (sans-IO).

MQTT 5 says so (DISCONNECT reason 142); MQTT 3.1.1 has no reason code, so links
dropped right after their CONNACK, several in a row, are taken as the sign. Only a
link that held `STABLE_LINK` seconds lets the reconnect backoff start over.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

STABLE_LINK = 10.0
QUICK_DROPS_TAKEOVER = 3
SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason code


class TakeoverWatch:
    def __init__(self, client_id: str) -> None:
        self._client_id = client_id
        self._quick_drops = 0  # links lost in a row within STABLE_LINK of their CONNACK
        self.taken_over = False  # the last DISCONNECT said "Session taken over"

    def disconnected(self, reason_code: int, broker: str, *, closing: bool) -> None:
        self.taken_over = reason_code == SESSION_TAKEN_OVER
        if self.taken_over and not closing:
            log.warning(
                "another client with client id %s took over the session on MQTT broker %s; "
                "reconnecting with backoff (two bridges with the same client id?)",
                self._client_id,
                broker,
            )

    def link_lost(self, lasted: float, broker: str) -> bool:
        """True when the link held long enough for the backoff to start over."""
        if lasted >= STABLE_LINK:
            self._quick_drops = 0
            return True
        self._quick_drops += 1
        if self._quick_drops == QUICK_DROPS_TAKEOVER and not self.taken_over:
            log.warning(
                "the MQTT broker %s closed the connection %d times within %.0f s of "
                "accepting it: another client with client id %s may have taken over the "
                "session (two bridges with the same mqtt.client_id?)",
                broker,
                self._quick_drops,
                STABLE_LINK,
                self._client_id,
            )
        return False
