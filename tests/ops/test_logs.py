"""Log formats, context fields and secret redaction, through the real logging machinery."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator

import pytest

from bridge.ops.logs import configure_logging, register_secret


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    yield stream
    for handler in root.handlers[:]:
        if handler not in saved_handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved_level)
    logging.captureWarnings(False)


def _secret() -> str:
    return f"pw-{uuid.uuid4().hex}"


def test_text_line_has_time_level_logger_message_and_context(log_stream: io.StringIO) -> None:
    configure_logging("info", "text", stream=log_stream)
    logging.getLogger("bridge.coap").info(
        "sent %d bytes", 42, extra={"request_id": "a1b2", "coap_id": 3, "host": "meters x"}
    )
    line = log_stream.getvalue()
    assert line.count("\n") == 1
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO bridge\.coap: sent 42 bytes "
        r'request_id=a1b2 coap_id=3 host="meters x"\n',
        line,
    )


def test_level_filters_records(log_stream: io.StringIO) -> None:
    configure_logging("warning", "text", stream=log_stream)
    logging.getLogger("bridge.at").info("hidden")
    logging.getLogger("bridge.at").warning("shown")
    assert "hidden" not in log_stream.getvalue()
    assert "shown" in log_stream.getvalue()


def test_json_lines_carry_context_and_exception(log_stream: io.StringIO) -> None:
    configure_logging("debug", "json", stream=log_stream)
    log = logging.getLogger("bridge.mqtt")
    log.debug("connected", extra={"broker": "127.0.0.1:1883"})
    try:
        raise RuntimeError("broker went away")
    except RuntimeError:
        log.exception("publish failed", extra={"request_id": "r-7", "attempt": 2})
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "debug"
    assert first["logger"] == "bridge.mqtt"
    assert first["msg"] == "connected"
    assert first["broker"] == "127.0.0.1:1883"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert second["request_id"] == "r-7"
    assert second["attempt"] == 2
    assert "RuntimeError: broker went away" in second["exc"]


def test_json_keeps_unserialisable_extras_as_text(log_stream: io.StringIO) -> None:
    configure_logging("info", "json", stream=log_stream)
    logging.getLogger("bridge").info("peer", extra={"remote": ("10.0.0.1", 5683), "when": object})
    entry = json.loads(log_stream.getvalue())
    assert entry["remote"] == ["10.0.0.1", 5683]
    assert entry["when"] == "<class 'object'>"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secret_never_appears_at_debug_level(log_stream: io.StringIO, fmt: str) -> None:
    secret = _secret()
    register_secret(secret)
    configure_logging("debug", "json" if fmt == "json" else "text", stream=log_stream)
    log = logging.getLogger("bridge.mqtt")
    log.debug("password is %s", secret)
    log.debug(f"inline {secret}")
    log.debug("extra", extra={"password": secret, "settings": {"password": secret}})
    try:
        raise ValueError(f"bad credentials {secret}")
    except ValueError:
        log.debug("failure", exc_info=True)
    output = log_stream.getvalue()
    assert secret not in output
    assert output.count("***") >= 5
    if fmt == "json":
        assert all(json.loads(line) for line in output.splitlines())


def test_secret_in_third_party_logger_is_redacted(log_stream: io.StringIO) -> None:
    secret = _secret()
    register_secret(secret)
    configure_logging("debug", "text", stream=log_stream)
    logging.getLogger("paho.mqtt.client").debug("CONNECT password=%s", secret)
    assert secret not in log_stream.getvalue()
    assert "password=***" in log_stream.getvalue()


def test_longer_secret_containing_another_is_redacted_whole(log_stream: io.StringIO) -> None:
    short = _secret()
    register_secret(short)
    register_secret(short + "-suffix")
    configure_logging("info", "text", stream=log_stream)
    logging.getLogger("bridge").info("value %s", short + "-suffix")
    assert log_stream.getvalue().rstrip().endswith("value ***")


def test_reconfigure_replaces_the_handler(log_stream: io.StringIO) -> None:
    configure_logging("info", "text", stream=log_stream)
    second = io.StringIO()
    configure_logging("info", "json", stream=second)
    logging.getLogger("bridge").info("once")
    assert log_stream.getvalue() == ""
    assert json.loads(second.getvalue())["msg"] == "once"


def test_unknown_level_is_refused(log_stream: io.StringIO) -> None:
    with pytest.raises(ValueError, match="loud"):
        configure_logging("loud", "text", stream=log_stream)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_short_secret_is_masked_only_in_fields_that_hold_it(
    log_stream: io.StringIO, fmt: str
) -> None:
    assert not register_secret("ready")
    configure_logging("info", "json" if fmt == "json" else "text", stream=log_stream)
    log = logging.getLogger("bridge.service")
    log.info("bridge ready: modem /dev/ttyUSB2")
    log.info("credentials", extra={"mqtt_password": "ready", "settings": {"password": "ready"}})
    first, second = log_stream.getvalue().splitlines()
    assert "bridge ready: modem /dev/ttyUSB2" in first
    assert "***" not in first
    assert "ready" not in second
    assert second.count("***") == 2
