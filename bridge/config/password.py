"""The MQTT password file: checked at load time, read when the client is built."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from bridge.errors import ConfigError

if TYPE_CHECKING:
    from bridge.config.models import Settings


def password_file_problem(path: str) -> str | None:
    """Why `path` cannot hold the MQTT password, or None if it can."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return f"password file {path} does not exist"
    except OSError as exc:
        return f"password file {path} cannot be read ({exc.strerror})"
    if not stat.S_ISREG(status.st_mode):
        return f"password file {path} is not a regular file"
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o044:
        return (
            f"password file {path} is readable by group/others (mode {mode:04o}); "
            f"run chmod 600 {path}"
        )
    return None


def load_password(settings: Settings) -> str | None:
    """The MQTT password from `mqtt.password_file`, or None when none is configured."""
    path = settings.mqtt.password_file
    if not path:
        return None
    problem = password_file_problem(path)
    if problem is not None:
        raise ConfigError(path, [problem])
    try:
        with open(path, encoding="utf-8") as password_file:
            password = password_file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"password file {path} cannot be read ({exc})"]) from None
    # Editors add a final newline; it is never part of the password.
    return password.removesuffix("\n").removesuffix("\r")
