"""Security of the daemon as deployed: TLS with a client certificate, a password read
from a file (and refused when others can read it), no secret in any log line even at
debug level, and no CoAP traffic to targets outside the allow list.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from bridge.tools.loopback import free_port
from tests.fixtures.daemon import BridgeStackFactory
from tests.fixtures.daemon_config import BASE, apply_overrides, base_config
from tests.fixtures.mosquitto import MosquittoFactory, TlsFiles
from tests.fixtures.simulator import REPO_ROOT, SimulatorProcessFactory
from tests.fixtures.stack_coap import CoapServerThread
from tests.fixtures.wait import eventually
from tests.reliability.conftest import Ledger, LedgerFactory, assert_serving

pytestmark = pytest.mark.timeout(60)

PASSWORD = "Pw-7f3a91c2e4d8-do-not-log"


@pytest.fixture
def coap_server() -> Iterator[CoapServerThread]:
    server = CoapServerThread()
    server.start()
    yield server
    server.stop()


def write_config(tmp_path: Path, config: Mapping[str, object]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def password_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "mqtt-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(mode)
    return path


def bridge_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_tls_client_certificate_and_password_file_and_no_secret_in_debug_logs(
    tmp_path: Path,
    mosquitto_factory: MosquittoFactory,
    tls_files: TlsFiles,
    simulator_process: SimulatorProcessFactory,
    coap_server: CoapServerThread,
) -> None:
    # The broker wants all of it: a certificate signed by the test CA, and a password.
    broker = mosquitto_factory(tls=tls_files, users={"bridge": PASSWORD, "app": "app-pw"})
    pty_path, _ = simulator_process()
    config = apply_overrides(
        base_config(
            pty_path=pty_path,
            broker=broker,
            coap_port=coap_server.port,
            silent_port=free_port(socket.SOCK_DGRAM),
            rst_port=free_port(socket.SOCK_DGRAM),
        ),
        {
            "mqtt.username": "bridge",
            "mqtt.password_file": str(password_file(tmp_path, 0o600)),
            "mqtt.tls": {
                "enabled": True,
                "ca_file": str(tls_files.ca_file),
                "cert_file": str(tls_files.client_cert),
                "key_file": str(tls_files.client_key),
            },
        },
    )
    config_path = write_config(tmp_path, config)
    check = bridge_cli("check-config", str(config_path))
    assert check.returncode == 0, check.stderr
    assert "TLS" in check.stdout

    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "-c", str(config_path), "--log-level", "debug"],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    book = Ledger(broker, BASE, username="app", password="app-pw")
    try:
        eventually(
            lambda: daemon.poll() is not None or "bridge ready" in log_path.read_text(),
            15,
            "the daemon ready (or exited)",
        )
        # Served over TLS with the certificate and the password; a client that puts the
        # password into a request (by mistake or to probe) does not get it logged either.
        book.request("secure-1", "coap://lab/hello")
        book.request("secure-2", f"coap://lab/count?id={PASSWORD}")
        book.wait_answered(["secure-1", "secure-2"], timeout=15)
        assert book.single("secure-1")["ok"]
        assert book.single("secure-2")["ok"]
        # A reload reads the password file again.
        daemon.send_signal(1)  # SIGHUP
        book.request("secure-3", "coap://lab/hello")
        book.wait_answered(["secure-3"], timeout=15)
    finally:
        book.close()
        daemon.terminate()
        assert daemon.wait(30) == 0
    log_text = log_path.read_text()
    assert " DEBUG " in log_text  # the level really was debug
    assert "bridge ready" in log_text
    assert PASSWORD not in log_text
    assert PASSWORD[:12] not in log_text  # not even cut short


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=["0644", "0640", "0604"])
def test_password_file_readable_by_others_is_refused(
    tmp_path: Path, simulator_process: SimulatorProcessFactory, mode: int
) -> None:
    secret = password_file(tmp_path, mode)
    config = {
        "gateway_id": "sec",
        "modem": {"port": "/dev/null"},
        "mqtt": {
            "host": "127.0.0.1",
            "port": 1,
            "username": "bridge",
            "password_file": str(secret),
        },
    }
    config_path = write_config(tmp_path, config)

    check = bridge_cli("check-config", str(config_path))
    assert check.returncode != 0
    assert "readable by group/others" in check.stderr
    assert "chmod 600" in check.stderr

    began = time.monotonic()
    run = bridge_cli("run", "-c", str(config_path))
    # Refused before touching the modem or the broker, with the reason on stderr.
    assert run.returncode != 0
    assert time.monotonic() - began < 10
    assert "readable by group/others" in run.stderr
    assert str(secret) in run.stderr
    assert PASSWORD not in run.stdout + run.stderr + check.stdout + check.stderr


def test_targets_outside_the_allow_list_are_refused_without_any_traffic(
    bridge_stack: BridgeStackFactory, ledger: LedgerFactory
) -> None:
    stack = bridge_stack()
    book = ledger(stack)
    assert_serving(stack, book, "warm")  # the instance to the lab server is open
    before = stack.sim.stats()
    refused = {
        "host-ip": "coap://10.20.30.40/x",
        "host-name": "coap://evil.example/x",
        "localhost-name": "coap://localhost/x",
        "other-loopback": "coap://127.0.0.2/x",
        "uri-host-option": "coap://evil.example:5683/x",
        "ipv6": "coap://[::1]/x",
    }
    for request_id, uri in refused.items():
        book.request(request_id, uri)
    book.wait_answered(list(refused), timeout=10)
    book.one_answer_each(list(refused))
    assert set(book.kinds(list(refused)).values()) == {"forbidden_target"}, book.kinds(
        list(refused)
    )
    # Nothing went to the modem for them: no instance opened, no datagram sent.
    after = stack.sim.stats()
    assert after["datagrams_out"] == before["datagrams_out"]
    assert after["instances_open"] == before["instances_open"]

    # Allowed after a reload that lists the host (applied live, no restart).
    stack.reload({"coap.allow_hosts": ["127.0.0.2"]})
    stack.wait_log("applied live")
    book.request("now-allowed", "coap://127.0.0.2/x", timeout=1)
    book.wait_answered(["now-allowed"], timeout=10)
    assert book.kinds(["now-allowed"]) == {"now-allowed": "timeout"}  # nobody serves there
    assert stack.sim.stats()["datagrams_out"] > after["datagrams_out"]


def test_password_file_not_readable_by_the_daemon_at_reload_keeps_the_old_config(
    bridge_stack: BridgeStackFactory, ledger: LedgerFactory, tmp_path: Path
) -> None:
    stack = bridge_stack()
    book = ledger(stack)
    # A reload pointing at a world-readable password file is refused; the daemon keeps
    # serving on its old config and says why in its log.
    secret = password_file(tmp_path, 0o644)
    stack.reload({"mqtt.username": "bridge", "mqtt.password_file": str(secret)})
    log = stack.wait_log("reload refused")
    assert "readable by group/others" in log
    assert PASSWORD not in log
    assert_serving(stack, book)
    assert os.stat(secret).st_mode & 0o777 == 0o644
