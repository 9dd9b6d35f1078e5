"""OSCORE (RFC 8613) over the modem: aiocoap's OSCORE transport, sized for 512 bytes.

    contexts = SecurityContexts.load({"meters": "/var/lib/mqtt-coap-bridge/oscore/meters"})
    async with ModemCoap(modem, settings, oscore=contexts) as coap:
        await coap.request(message, timeout=30, oscore="meters")

`SecurityContexts` holds one aiocoap `FilesystemSecurityContext` per alias (it keeps
the sender sequence number in the context's `sequence.json` and a lock file: one
process per context). A context that cannot be loaded does not stop the bridge;
requests to its alias fail with `SecurityError`. Every key, the master secret and
salt are registered with the log redaction.

`OscoreTransport` is aiocoap's `TransportOSCORE` with three changes for the modem:
requests are protected only when `ModemCoap` addressed them to an `OscoreRemote`
(chosen per alias, never by URI patterns); inner block-wise uses 256-byte blocks with
early Block2 inside the protected part, so one protected block is one datagram; and
the protected message goes out without outer block-wise, which CoAP servers need not
support for OSCORE. This subclasses aiocoap 0.4.17 internals (`_request`, `_wire`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Self

import filelock
from aiocoap import oscore
from aiocoap.transports.oscore import OSCOREAddress, TransportOSCORE

from bridge.coap.limits import add_early_block2
from bridge.coap.remote import ModemRemote
from bridge.coap.transport import Spawn
from bridge.errors import SecurityError
from bridge.ops.logs import register_secret

logger = logging.getLogger(__name__)

# At debug level it logs derivation inputs (the master salt), nonces and plaintexts.
_CRYPTO_LOGGER = "aiocoap.cryptography"
_SHORTEST_REDACTED = 8
# The pipe of the OSCORE request a task is protecting (each runs in its own task).
_CURRENT_PIPE: ContextVar[Any] = ContextVar("oscore_pipe")


class OscoreRemote(OSCOREAddress):
    """A protected exchange with a `ModemRemote`, in inner blocks of one datagram each."""

    @property
    def maximum_block_size_exp(self) -> int:
        return int(self.underlying_address.maximum_block_size_exp)

    @property
    def maximum_payload_size(self) -> int:
        return int(self.underlying_address.maximum_payload_size)


def protection_overhead(context: Any) -> int:
    """Bytes OSCORE adds at most to a request datagram protected with `context`.

    The inner code (1) and AEAD tag, a second payload marker, the OSCORE option (a
    header of up to 3 bytes, flags, a partial IV of up to 5 bytes, the kid and any kid
    context) and a few bytes of option deltas restarting in the inner message.
    """
    id_context = context.id_context or b""
    kid_context = 1 + len(id_context) if id_context else 0
    option = 3 + 1 + 5 + len(context.sender_id) + kid_context
    tag = int(context.alg_aead.tag_bytes)
    return 1 + tag + 1 + option + 4


@dataclass
class _Loaded:
    alias: str
    context_dir: str
    context: Any = None
    problem: SecurityError | None = None


class SecurityContexts:
    """The OSCORE contexts of the configured aliases, loaded once per process."""

    def __init__(self, entries: Mapping[str, _Loaded]) -> None:
        self._entries = dict(entries)

    @classmethod
    def load(cls, context_dirs: Mapping[str, str]) -> Self:
        """Load each alias's context from its directory; problems are kept, not raised."""
        logging.getLogger(_CRYPTO_LOGGER).setLevel(logging.WARNING)
        entries = {}
        for alias, context_dir in context_dirs.items():
            entry = _Loaded(alias, context_dir)
            try:
                entry.context = _load_context(alias, context_dir)
            except SecurityError as exc:
                entry.problem = exc
                logger.error("%s", exc)
            else:
                logger.info("OSCORE context for %s loaded from %s", alias, context_dir)
            entries[alias] = entry
        return cls(entries)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def context(self, alias: str) -> Any:
        """The alias's loaded context; SecurityError if it has none or it failed to load."""
        entry = self._entries.get(alias)
        if entry is None:
            raise SecurityError(f"no OSCORE context is configured for {alias}")
        if entry.problem is not None:
            raise SecurityError(str(entry.problem))
        return entry.context

    def readdress(self, message: Any, remote: ModemRemote, alias: str) -> int:
        """Address `message` to `remote` under the alias's context; the bytes OSCORE adds."""
        context = self.context(alias)
        message.remote = OscoreRemote(context, remote)
        return protection_overhead(context)

    def close(self) -> None:
        """Write back the sequence numbers actually used and release the lock files."""
        for entry in self._entries.values():
            context, entry.context = entry.context, None
            if context is None or context.lockfile is None:
                continue
            entry.problem = SecurityError(f"the OSCORE context for {entry.alias} is closed")
            try:
                # aiocoap's own clean-up (otherwise run from __del__): stores the next
                # sequence number exactly and removes the lock.
                context._destroy()
            except OSError as exc:
                logger.warning(
                    "could not store the OSCORE sequence number of %s in %s: %s "
                    "(the next start skips ahead to the last one reserved)",
                    entry.alias,
                    entry.context_dir,
                    exc.strerror,
                )


class _ContextDirectory(oscore.FilesystemSecurityContext):
    """aiocoap's context directory, releasing its lock at once when loading fails
    (aiocoap would leave that to a finalizer that then fails on the half-built object)."""

    def __init__(self, basedir: str) -> None:
        try:
            super().__init__(basedir)
        except BaseException:
            lock = getattr(self, "lockfile", None)
            if lock is not None:
                self.lockfile = None
                lock.release()
            raise


def _load_context(alias: str, context_dir: str) -> Any:
    where = f"OSCORE context of {alias} in {context_dir}"
    _register_key_material(context_dir)
    try:
        context = _ContextDirectory(context_dir)
    except filelock.Timeout:
        raise SecurityError(
            f"{where} is in use by another process (its lock file is held); a context "
            "must only ever be used by one bridge: give each its own"
        ) from None
    except (oscore.FilesystemSecurityContext.LoadError, ValueError, KeyError) as exc:
        raise SecurityError(
            f"{where} cannot be loaded ({exc}); check settings.json (sender-id_hex, "
            "recipient-id_hex, secret_hex, salt_hex) and sequence.json"
        ) from None
    except OSError as exc:
        raise SecurityError(
            f"{where} cannot be used ({exc.strerror}); the directory must exist and be "
            "writable by the bridge (sequence.json and the lock file live there)"
        ) from None
    for key in (context.sender_key, context.recipient_key, context.common_iv):
        register_secret(key.hex())
    return context


def _register_key_material(context_dir: str) -> None:
    """Redact the master secret and salt from every log line, whatever their encoding.

    aiocoap reads them from settings.json or secret.json (never both for one key).
    """
    for name in ("settings.json", "secret.json"):
        data: object = None
        with (
            contextlib.suppress(OSError, ValueError),
            open(os.path.join(context_dir, name), encoding="utf-8") as settings,
        ):
            data = json.load(settings)
        if not isinstance(data, dict):
            continue
        for key in ("secret", "salt"):
            for text in _encodings(data.get(f"{key}_hex"), data.get(f"{key}_ascii")):
                # A salt of a byte or two is no secret, and redacting it would blank
                # out every match of those few hex digits in every line.
                if len(text) >= _SHORTEST_REDACTED:
                    register_secret(text)


def _encodings(hex_text: object, ascii_text: object) -> Iterator[str]:
    raw = b""
    if isinstance(hex_text, str):
        yield hex_text
        with contextlib.suppress(ValueError):
            raw = bytes.fromhex(hex_text)
    elif isinstance(ascii_text, str):
        yield ascii_text
        raw = ascii_text.encode("ascii", "replace")
    if raw:
        yield raw.hex()
        yield raw.hex().upper()


class _UnfragmentedWire:
    """What `TransportOSCORE` sends protected messages through: the same Context,
    without outer block-wise (inner blocks are sized to fit a datagram already)."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self.loop = context.loop

    def request(self, protected: Any) -> Any:
        wire_request = self._context.request(protected, handle_blockwise=False)
        pipe = _CURRENT_PIPE.get(None)
        if pipe is not None:
            # aiocoap's OSCORE transport never ends the outer request of an
            # observation: end it when nobody listens to the inner one any more.
            pipe.on_interest_end(lambda: _end_wire_request(wire_request))
        return wire_request


def _end_wire_request(wire_request: Any) -> None:
    if not wire_request.response.done():
        wire_request.response.cancel()
    observation = wire_request.observation
    if observation is not None and not observation.cancelled:
        observation.cancel()


class OscoreTransport(TransportOSCORE):
    """aiocoap's OSCORE request interface for `OscoreRemote`s (see the module docstring)."""

    def __init__(self, context: Any, *, spawn: Spawn) -> None:
        super().__init__(context, _UnfragmentedWire(context))
        self._spawn = spawn

    async def fill_or_recognize_remote(self, message: Any) -> bool:
        return isinstance(message.remote, OSCOREAddress)

    def request(self, request: Any) -> None:
        # RFC 7959 §2.4 inside the protection: the server's blocks fit one datagram.
        add_early_block2(request.request, request.request.remote.maximum_block_size_exp)
        # At shutdown the token manager fails every outer request, which ends the task.
        task = self._spawn(self._protected_exchange(request))
        request.on_interest_end(task.cancel)

    async def _protected_exchange(self, request: Any) -> None:
        _CURRENT_PIPE.set(request)
        try:
            await self._request(request)
        except Exception as exc:
            request.add_exception(exc)


def security_error(exc: Exception, alias: str, target: str) -> SecurityError | None:
    """The bridge's error for an OSCORE failure raised by aiocoap, or None if not one."""
    if isinstance(exc, oscore.NotAProtectedMessage):
        answer = exc.plain_message
        diagnostic = _diagnostic(answer.payload)
        return SecurityError(
            f"{target} ({alias}) answered the protected request with "
            f"{answer.code.dotted} {answer.code.name_printable}{diagnostic} without OSCORE "
            "protection: it did not accept our security context; check that the server "
            "holds the same context (ids, secret, salt) and that this one was never "
            "copied or restored (reused sequence numbers are refused as replays)"
        )
    if isinstance(exc, oscore.ReplayError):
        return SecurityError(
            f"response from {target} ({alias}) was refused as a replay; "
            "check that nothing else uses this security context"
        )
    if isinstance(exc, oscore.ProtectionInvalid):
        return SecurityError(
            f"response from {target} ({alias}) failed OSCORE verification ({exc}); "
            "check that the server's security context matches this one"
        )
    if isinstance(exc, oscore.ContextUnavailable):
        return SecurityError(
            f"the OSCORE context for {alias} cannot protect more requests ({exc}); "
            "provision a new context with the server"
        )
    return None


def _diagnostic(payload: bytes) -> str:
    """An unprotected error's diagnostic payload (RFC 7252 §5.5.2), if short and readable."""
    try:
        text = bytes(payload[:80]).decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return f' ("{text}")' if text and text.isprintable() else ""
