"""`mqtt.hosts` with real mosquitto brokers: the client moves on from a node that is
down or whose TLS certificate does not name it, and back when its node goes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
from pathlib import Path

import pytest

from bridge.mqtt import MqttClient, TlsSettings
from bridge.mqtt.brokers import BrokerAddress
from tests.fixtures.modem import eventually
from tests.fixtures.mosquitto import MosquittoBroker, MosquittoFactory, TlsFiles
from tests.mqtt.helpers import client_settings


def address(broker: MosquittoBroker) -> BrokerAddress:
    return BrokerAddress(broker.host, broker.port)


def misnamed_server(tls_files: TlsFiles, directory: Path) -> TlsFiles:
    """A server certificate from the same CA that names another host only."""
    directory.mkdir()
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    (directory / "san.ext").write_text("subjectAltName=DNS:elsewhere.example\n")
    ca_dir = tls_files.ca_file.parent
    for args in (
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=elsewhere.example",
         "-keyout", str(key), "-out", str(csr)],
        ["x509", "-req", "-in", str(csr), "-CA", str(tls_files.ca_file),
         "-CAkey", str(ca_dir / "ca.key"), "-CAcreateserial", "-days", "2",
         "-out", str(cert), "-extfile", str(directory / "san.ext")],
    ):  # fmt: skip
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    key.chmod(0o600)
    return dataclasses.replace(tls_files, server_cert=cert, server_key=key)


async def test_a_down_node_is_skipped_and_a_lost_one_left_for_the_next(
    mosquitto_factory: MosquittoFactory, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = mosquitto_factory(), mosquitto_factory()
    first.stop()
    settings = client_settings(first, brokers=(address(first), address(second)))
    with caplog.at_level(logging.INFO, logger="bridge.mqtt.client"):
        async with MqttClient(settings) as client:
            async with asyncio.timeout(10):
                await client.wait_connected()
            assert client.broker == str(address(second))
            first.start()
            second.kill()
            # Lost: the next node is tried at once, without waiting for a backoff.
            await eventually(lambda: client.connected and client.broker == str(address(first)), 10)
    assert f"cannot connect to MQTT broker {address(first)}" in caplog.text


async def test_each_node_certificate_is_checked_against_that_node(
    mosquitto_factory: MosquittoFactory,
    tls_files: TlsFiles,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    misnamed = mosquitto_factory(tls=misnamed_server(tls_files, tmp_path / "misnamed"))
    good = mosquitto_factory(tls=tls_files)
    tls = TlsSettings(
        enabled=True,
        ca_file=str(tls_files.ca_file),
        cert_file=str(tls_files.client_cert),
        key_file=str(tls_files.client_key),
    )
    settings = client_settings(misnamed, tls=tls, brokers=(address(misnamed), address(good)))
    with caplog.at_level(logging.WARNING, logger="bridge.mqtt.client"):
        async with MqttClient(settings) as client:
            async with asyncio.timeout(10):
                await client.wait_connected()
            assert client.broker == str(address(good))
    assert "certificate verify failed" in caplog.text
    assert f"cannot connect to MQTT broker {address(misnamed)}" in caplog.text
