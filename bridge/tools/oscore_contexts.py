"""OSCORE security context directories in aiocoap's format, for the demo, bench and tests.

`write_context` writes one side's `settings.json` (mode 0600 in a 0700 directory);
`write_pair` writes a fresh client/server pair with a random master secret and salt.
Production contexts are provisioned by hand (systemd/README.md); these are throwaway.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

CLIENT_ID = b""
SERVER_ID = b"\x01"


def write_context(
    directory: Path, *, sender_id: bytes, recipient_id: bytes, secret: bytes, salt: bytes
) -> Path:
    """`directory` holding a security context whose sender is `sender_id`."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    settings = {
        "sender-id_hex": sender_id.hex(),
        "recipient-id_hex": recipient_id.hex(),
        "secret_hex": secret.hex(),
        "salt_hex": salt.hex(),
    }
    path = directory / "settings.json"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as settings_file:
        json.dump(settings, settings_file)
    path.chmod(0o600)
    return directory


@dataclass(frozen=True)
class ContextPair:
    client: Path
    server: Path


def write_pair(directory: Path) -> ContextPair:
    """A matching client (the bridge) and server context under `directory`."""
    secret, salt = secrets.token_bytes(16), secrets.token_bytes(8)
    return ContextPair(
        client=write_context(
            directory / "client",
            sender_id=CLIENT_ID,
            recipient_id=SERVER_ID,
            secret=secret,
            salt=salt,
        ),
        server=write_context(
            directory / "server",
            sender_id=SERVER_ID,
            recipient_id=CLIENT_ID,
            secret=secret,
            salt=salt,
        ),
    )
