"""A small sd_notify(3) client: readiness, status, reload, stop and watchdog messages.

systemd passes the notification socket in NOTIFY_SOCKET: a file system path, or an
abstract socket written with a leading `@`. Each message is one AF_UNIX datagram of
`KEY=value` lines. Without NOTIFY_SOCKET (not started by systemd, or in tests) every
call is a no-op. Socket errors never propagate: losing a status line must not take the
bridge down; the first failure is logged, later ones only at debug level.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

# PID 1 drains the notification socket quickly; a full queue means it is very busy, and a
# short blocking wait is better than losing READY=1 (which would fail the start).
_SEND_TIMEOUT = 1.0


class Notifier:
    """Sends notifications to the socket named by NOTIFY_SOCKET in `environ`.

    The environment is read on every send, so a notifier created at import time
    follows later changes (tests set NOTIFY_SOCKET per test).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self._failure_logged = False
        # The last STATUS= text, sent or not: what `systemctl status` shows.
        self.last_status = ""

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def _address(self) -> str | None:
        raw = self._env().get("NOTIFY_SOCKET", "")
        if not raw:
            return None
        if raw.startswith("@"):
            # Linux abstract namespace: the name starts with a NUL byte instead of "@".
            return "\0" + raw[1:]
        if raw.startswith("/"):
            return raw
        self._log_failure(f"unsupported NOTIFY_SOCKET address {raw!r}")
        return None

    def send(self, message: str) -> bool:
        """Send one datagram; True if it was handed to the socket."""
        address = self._address()
        if address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(_SEND_TIMEOUT)
                sock.sendto(message.encode(), address)
        except OSError as exc:
            self._log_failure(f"sd_notify to {address.lstrip(chr(0))!r} failed: {exc}")
            return False
        return True

    def _log_failure(self, text: str) -> None:
        if self._failure_logged:
            logger.debug("%s", text)
            return
        self._failure_logged = True
        logger.warning("%s (further sd_notify failures are logged at debug level)", text)

    def ready(self) -> bool:
        return self.send("READY=1")

    def status(self, text: str) -> bool:
        self.last_status = text
        # A newline would start a new KEY=value assignment in the datagram.
        return self.send("STATUS=" + " ".join(text.splitlines()))

    def reloading(self) -> bool:
        # systemd 253+ (Type=notify-reload) wants MONOTONIC_USEC with RELOADING=1 to order
        # the reload against its own clock; older versions ignore the extra field.
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(f"RELOADING=1\nMONOTONIC_USEC={now_usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of WatchdogSec=), None when not asked for.

        WATCHDOG_PID, when present, names the process that must ping; any other process
        (a child that inherited the environment) must not.
        """
        env = self._env()
        pid = env.get("WATCHDOG_PID")
        if pid is not None and pid.strip() != str(os.getpid()):
            return None
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 2 / 1_000_000

    async def watchdog_loop(self, is_healthy: Callable[[], bool]) -> None:
        """Ping the watchdog every interval while `is_healthy()` holds; return at once when
        systemd asked for no watchdog. Not pinging while unhealthy lets systemd restart us.
        """
        interval = self.watchdog_interval()
        if interval is None:
            return
        healthy = True
        while True:
            now_healthy = is_healthy()
            if now_healthy:
                self.watchdog()
            if now_healthy != healthy:
                healthy = now_healthy
                if healthy:
                    logger.info("healthy again; watchdog pings resumed")
                else:
                    logger.warning("unhealthy; watchdog pings withheld so systemd can restart")
            await asyncio.sleep(interval)


_default = Notifier()


def ready() -> bool:
    """READY=1: start-up (or a reload) is complete."""
    return _default.ready()


def status(text: str) -> bool:
    """STATUS=<text>: one line shown by `systemctl status`."""
    return _default.status(text)


def last_status() -> str:
    """The text of the last status() call ("" before the first)."""
    return _default.last_status


def reloading() -> bool:
    """RELOADING=1 with MONOTONIC_USEC; send ready() once the reload is done."""
    return _default.reloading()


def stopping() -> bool:
    """STOPPING=1: graceful shutdown has begun."""
    return _default.stopping()


def watchdog() -> bool:
    """WATCHDOG=1: the service is alive."""
    return _default.watchdog()


def watchdog_interval() -> float | None:
    """Seconds between pings (half the WatchdogSec= period), or None without a watchdog."""
    return _default.watchdog_interval()


async def watchdog_loop(is_healthy: Callable[[], bool]) -> None:
    """Ping at watchdog_interval() while is_healthy() is true; returns at once without one."""
    await _default.watchdog_loop(is_healthy)
