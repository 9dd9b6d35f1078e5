"""aiocoap's RFC 7252 message layer with NSTART > 1, for pipelining over one instance.

Up to `nstart` CON exchanges run at once per remote (the rest wait in aiocoap's
backlog); giving up after MAX_RETRANSMIT, and a requester losing interest, end that one
exchange, not every one with the remote. Reaches into aiocoap 0.4.17 internals
(`_active_exchanges`, `_backlogs`, `_retransmit`): pyproject pins that release line.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiocoap import error as coap_error
from aiocoap.messagemanager import MessageManager
from aiocoap.numbers.types import CON


class _ExchangesByRemote(dict[tuple[Any, int], Any]):
    """aiocoap's `_active_exchanges` map, keyed (remote, mid), that also counts per remote.

    The base class and this module ask "how many CON exchanges does this remote have?"
    on every send and every answer; scanning the map made each of those cost one
    remote comparison per exchange in flight. aiocoap only adds with `[key] = value`
    and removes with `pop`, which keep the counts here.
    """

    __slots__ = ("per_remote",)

    def __init__(self) -> None:
        super().__init__()
        self.per_remote: Counter[Any] = Counter()

    def __setitem__(self, key: tuple[Any, int], value: Any) -> None:
        if key not in self:
            self.per_remote[key[0]] += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: tuple[Any, int]) -> None:
        super().__delitem__(key)
        self._uncount(key[0])

    def pop(self, key: tuple[Any, int], *default: Any) -> Any:
        if key in self:
            self._uncount(key[0])
        return super().pop(key, *default)

    def popitem(self) -> tuple[tuple[Any, int], Any]:
        key, value = super().popitem()
        self._uncount(key[0])
        return key, value

    def clear(self) -> None:
        super().clear()
        self.per_remote.clear()

    def _uncount(self, remote: Any) -> None:
        left = self.per_remote[remote] - 1
        if left > 0:
            self.per_remote[remote] = left
        else:
            del self.per_remote[remote]


class PipeliningMessageManager(MessageManager):
    def __init__(self, token_manager: Any, *, nstart: int) -> None:
        super().__init__(token_manager)
        # Set to None by aiocoap's shutdown, hence not typed as the counting map.
        self._active_exchanges: Any = _ExchangesByRemote()
        self.nstart = nstart
        # Told about every readable response that matched no request (late answers,
        # stray notifications); aiocoap still RSTs the CON ones as RFC 7252 §4.2 asks.
        self.on_unmatched_response: Callable[[Any], None] | None = None

    def _process_response(self, response: Any) -> bool:
        matched: bool = super()._process_response(response)
        # An OSCORE-protected one cannot be verified or read without its request
        # (typically the notification that follows a cancelled observation).
        unreadable = response.opt.oscore is not None
        if not matched and not unreadable and self.on_unmatched_response is not None:
            try:
                self.on_unmatched_response(response)
            except Exception:
                self.log.exception("unmatched-response handler failed")
        return matched

    def active_exchanges(self, remote: Any) -> int:
        """CON exchanges to `remote` sent and not yet acknowledged, reset or given up."""
        exchanges = self._active_exchanges
        if exchanges is None:
            return 0
        return int(exchanges.per_remote.get(remote, 0))

    def backlogged(self, remote: Any) -> int:
        return len(self._backlogs.get(remote, ()))

    def is_active(self, message: Any) -> bool:
        """True while a CON message still needs to reach its remote."""
        if self._active_exchanges is None:
            return False
        return (message.remote, message.mid) in self._active_exchanges

    def is_pending(self, message: Any) -> bool:
        """True while `message` is still being transmitted or waits in the backlog."""
        backlog = self._backlogs.get(message.remote, ())
        return self.is_active(message) or any(entry[0] is message for entry in backlog)

    def send_message(self, message: Any, messageerror_monitor: Any) -> Callable[[], None] | None:
        super().send_message(message, messageerror_monitor)
        if message.mtype is CON and message.mid is not None:
            return functools.partial(self._abandon, message)
        return None

    def fail_exchange(self, message: Any, exception: Exception) -> None:
        """End one CON exchange and fail the request it carried with `exception`."""
        self._abandon(message)
        request = self.token_manager.outgoing_requests.get((message.token, message.remote))
        if request is not None:
            request.add_exception(exception)

    def _abandon(self, message: Any) -> None:
        """Stop transmitting `message`: nobody waits for its answer any more."""
        backlog = self._backlogs.get(message.remote)
        if backlog:
            backlog[:] = [entry for entry in backlog if entry[0] is not message]
        if self._active_exchanges is None:
            return
        entry = self._active_exchanges.pop((message.remote, message.mid), None)
        if entry is None:
            return
        entry[1].cancel()
        self.log.debug("Exchange abandoned, message ID: %d.", message.mid)
        self._continue_backlog(message.remote)

    # The backlog key exists while the remote is at its NSTART limit (or has a backlog),
    # so the base class's `remote in self._backlogs` test in send_message still decides
    # correctly whether a new CON has to wait.

    def _add_exchange(self, message: Any, messageerror_monitor: Any) -> None:
        super()._add_exchange(message, messageerror_monitor)
        self._drop_backlog_key_if_unneeded(message.remote)

    def _continue_backlog(self, remote: Any) -> None:
        backlog = self._backlogs.get(remote)
        while backlog and self.active_exchanges(remote) < self.nstart:
            next_message, messageerror_monitor = backlog.pop(0)
            self._send_initially(next_message, messageerror_monitor)
        self._drop_backlog_key_if_unneeded(remote)

    def _drop_backlog_key_if_unneeded(self, remote: Any) -> None:
        if self._backlogs.get(remote) == [] and self.active_exchanges(remote) < self.nstart:
            del self._backlogs[remote]

    def _retransmit(self, message: Any, timeout: float, retransmission_counter: int) -> None:
        if retransmission_counter < message.transport_tuning.MAX_RETRANSMIT:
            super()._retransmit(message, timeout, retransmission_counter)
            return
        # Give up on this exchange only; the base class would fail every request to
        # the remote, which with many exchanges in flight punishes the innocent ones.
        self.log.info("Exchange timed out trying to transmit %s", message)
        self.fail_exchange(
            message,
            coap_error.ConRetransmitsExceeded("Retransmissions exceeded"),
        )
