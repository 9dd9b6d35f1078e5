"""OSCORE security context directories named in the config: checked at load time.

aiocoap's format: `settings.json` (and optionally `secret.json`) with the ids and the
master secret, readable by the owner only; the bridge writes `sequence.json` and a
lock file beside them, so the directory must be writable by the bridge's user.
"""

from __future__ import annotations

import os
import stat

_CONTEXT_FILES = ("settings.json", "secret.json")


def oscore_context_problem(path: str) -> str | None:
    """Why directory `path` cannot hold an OSCORE security context for the bridge, or None."""
    if not os.path.isdir(path):
        return f"OSCORE context directory {path} does not exist (see systemd/README.md)"
    present = [
        os.path.join(path, name)
        for name in _CONTEXT_FILES
        if os.path.exists(os.path.join(path, name))
    ]
    if not present:
        return (
            f"OSCORE context directory {path} has no settings.json (sender-id_hex, "
            "recipient-id_hex, secret_hex, salt_hex)"
        )
    for name in present:
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
        except OSError as exc:
            return f"OSCORE context file {name} cannot be read ({exc.strerror})"
        if mode & 0o044:
            return (
                f"OSCORE context file {name} is readable by group/others (mode {mode:04o}); "
                f"run chmod 600 {name}"
            )
        if not os.access(name, os.R_OK):
            return f"OSCORE context file {name} is not readable by the bridge's user"
    if not os.access(path, os.W_OK | os.X_OK):
        return (
            f"OSCORE context directory {path} is not writable by the bridge's user "
            "(it keeps sequence.json and a lock file there); give that user the directory"
        )
    return None
