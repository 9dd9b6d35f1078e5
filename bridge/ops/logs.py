"""Logging set-up: one line per event as text or JSON, with secrets redacted.

Context travels as `extra=` fields (`logger.info("sent", extra={"coap_id": 1})`); both
formats print every such field after the message; a line logged on behalf of a modem
(`bridge.modem.driver.current_modem`) gets its name as the field `modem`. Fields known
to hold secrets (named like password, passphrase, secret, token; at any depth of a
dict) are printed as `***`. Values passed to register_secret() (the MQTT password, for
instance) of at least `MIN_MASKED_LENGTH` characters are also replaced by `***`
wherever they occur in a line, at every level; a shorter one is not, because masking a
short word everywhere rewrites ordinary text and so gives the secret away
("bridge ***: ...").
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from bridge.modem.driver import current_modem

LogFormat = Literal["text", "json"]

REDACTED = "***"
# Below this length a secret is likely an ordinary word: masking it everywhere would
# both mangle log lines and show which word it is.
MIN_MASKED_LENGTH = 8
_SECRET_FIELD_WORDS = ("password", "passphrase", "secret", "token")

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_BLANK_RECORD = logging.LogRecord("", logging.INFO, "", 0, "", None, None)
_RECORD_ATTRIBUTES = frozenset(vars(_BLANK_RECORD)) | {"message", "asctime", "taskName"}

_secrets_lock = threading.Lock()
# Replaced as a whole (never mutated) so that formatting threads read it without a lock.
_secrets: tuple[str, ...] = ()


def register_secret(value: str) -> bool:
    """Redact `value` from every log line from now on; False (nothing registered) when it
    is shorter than MIN_MASKED_LENGTH, or empty."""
    global _secrets
    if len(value) < MIN_MASKED_LENGTH:
        return False
    with _secrets_lock:
        if value not in _secrets:
            # Longest first, so a secret that contains another is replaced whole.
            _secrets = tuple(sorted((*_secrets, value), key=len, reverse=True))
    return True


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `***`."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _contains_secret(text: str) -> bool:
    return any(secret in text for secret in _secrets)


def _context_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: _masked_field(key, value)
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    }


def _masked_field(key: object, value: object) -> object:
    if isinstance(key, str) and any(word in key.lower() for word in _SECRET_FIELD_WORDS):
        return REDACTED
    if isinstance(value, dict):
        return {inner: _masked_field(inner, item) for inner, item in value.items()}
    return value


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text_value(value: object) -> str:
    text = str(value)
    if not text or any(char.isspace() or char in "\"'=" for char in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger>: <message> key=value ...`, then any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record),
            record.levelname,
            f"{record.name}:",
            record.getMessage(),
        ]
        parts.extend(
            f"{key}={_text_value(value)}" for key, value in _context_fields(record).items()
        )
        line = " ".join(parts)
        exception = self._exception_text(record)
        if exception:
            line = f"{line}\n{exception}"
        return redact(line)

    def _exception_text(self, record: logging.LogRecord) -> str:
        texts = []
        if record.exc_info:
            texts.append(self.formatException(record.exc_info))
        if record.stack_info:
            texts.append(self.formatStack(record.stack_info))
        return "\n".join(texts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _context_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps({key: _redact_json_value(value) for key, value in entry.items()})


def _redact_json_value(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    # Anything else goes out as its JSON text (or str() when it has none); if a secret
    # shows up in that text, the value is replaced by its redacted text.
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError):
        return redact(str(value))
    if _contains_secret(encoded) or _contains_secret(str(value)):
        return redact(str(value))
    return value


_HANDLER_MARK = "_bridge_handler"


def _name_the_modem(record: logging.LogRecord) -> bool:
    if not hasattr(record, "modem"):
        name = current_modem.get()
        if name is not None:
            record.modem = name
    return True


def configure_logging(
    level: str = "info", fmt: LogFormat = "text", *, stream: TextIO | None = None
) -> None:
    """Send every logger's records to `stream` (stderr: journald under systemd).

    Calling it again (on reload) replaces the handler it installed before, so the level
    and format can change at run time.
    """
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(
            f"unknown log level {level!r}; use debug, info, warning, error or critical"
        )
    formatter: logging.Formatter
    if fmt == "text":
        formatter = TextFormatter()
    elif fmt == "json":
        formatter = JsonFormatter()
    else:
        raise ValueError(f"unknown log format {fmt!r}; use text or json")

    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter)
    handler.addFilter(_name_the_modem)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    # Python warnings (deprecations in dependencies) become log lines too.
    logging.captureWarnings(True)
