"""TLS with a client certificate, and username/password from a mosquitto password file."""

from __future__ import annotations

import asyncio

import pytest

from bridge.mqtt import MqttClient, TlsSettings
from tests.fixtures.mosquitto import MosquittoFactory, TlsFiles
from tests.mqtt.conftest import PeerFactory
from tests.mqtt.helpers import BASE, EchoHandler, client_settings, running_front


async def test_tls_with_client_certificate(
    mosquitto_factory: MosquittoFactory, tls_files: TlsFiles, peer_factory: PeerFactory
) -> None:
    broker = mosquitto_factory(tls=tls_files)
    peer = peer_factory(broker, tls=tls_files)
    peer.subscribe(f"{BASE}/response/#")
    tls = TlsSettings(
        enabled=True,
        ca_file=str(tls_files.ca_file),
        cert_file=str(tls_files.client_cert),
        key_file=str(tls_files.client_key),
    )
    async with running_front(client_settings(broker, tls=tls), EchoHandler()):
        for index in range(5):
            peer.request({"id": f"tls{index}", "payload": "x" * 5000})
        answers = [(await peer.receive_json())[1] for _ in range(5)]
    assert sorted(answer["id"] for answer in answers) == [f"tls{index}" for index in range(5)]


async def test_tls_without_client_certificate_never_connects(
    mosquitto_factory: MosquittoFactory, tls_files: TlsFiles
) -> None:
    broker = mosquitto_factory(tls=tls_files)
    settings = client_settings(
        broker, tls=TlsSettings(enabled=True, ca_file=str(tls_files.ca_file))
    )
    async with MqttClient(settings) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await client.wait_connected()
        assert client.stats.connects == 0


async def test_username_and_password(
    mosquitto_factory: MosquittoFactory, peer_factory: PeerFactory
) -> None:
    broker = mosquitto_factory(users={"bridge": "s3cret", "app": "app-pw"})
    peer = peer_factory(broker, username="app", password="app-pw")
    peer.subscribe(f"{BASE}/response/#")
    settings = client_settings(broker, username="bridge", password="s3cret")
    async with running_front(settings, EchoHandler()):
        peer.request({"id": "auth"})
        _, answer = await peer.receive_json()
    assert answer["id"] == "auth"


async def test_wrong_password_is_refused_and_retried(
    mosquitto_factory: MosquittoFactory, caplog: pytest.LogCaptureFixture
) -> None:
    broker = mosquitto_factory(users={"bridge": "s3cret"})
    settings = client_settings(broker, username="bridge", password="wrong")
    async with MqttClient(settings) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await client.wait_connected()
    refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
    assert len(refusals) >= 2
    assert "wrong" not in caplog.text
