"""The mosquitto fixture itself: a port taken between picking and binding it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.fixtures.mosquitto import HOST, MosquittoBroker, PortTaken


def test_first_start_moves_to_another_port_when_its_port_was_taken(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        # As if another process took free_port()'s pick meanwhile.
        broker = MosquittoBroker(tmp_path / "broker", port=taken)
        try:
            with pytest.raises(PortTaken):
                broker.start()
            broker.start_on_free_port()
            assert broker.running
            assert broker.port != taken
            with socket.create_connection((HOST, broker.port), timeout=2):
                pass
        finally:
            broker.kill()
