"""`MqttClientSettings` refuses what the client could not use as meant."""

from __future__ import annotations

import pytest

from bridge.mqtt import MqttClientSettings, TlsSettings


def test_tls_must_be_enabled_when_given() -> None:
    with pytest.raises(ValueError, match="tls=None for plain TCP"):
        MqttClientSettings(client_id="c", base_topic="b", tls=TlsSettings(ca_file="/ca.pem"))
    enabled = TlsSettings(enabled=True, ca_file="/ca.pem")
    assert MqttClientSettings(client_id="c", base_topic="b", tls=enabled).tls is enabled


def test_client_id_and_queue_bound_are_required() -> None:
    with pytest.raises(ValueError, match="client_id"):
        MqttClientSettings(client_id="", base_topic="b")
    with pytest.raises(ValueError, match="max_queued"):
        MqttClientSettings(client_id="c", base_topic="b", max_queued=0)
