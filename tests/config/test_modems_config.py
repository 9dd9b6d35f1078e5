"""The modems list beside the one-entry modem section: names, ports, drivers, aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import describe, load_config
from bridge.errors import ConfigError

TWO = """\
gateway_id: g
modems:
  - name: a
    port: /dev/ttyUSB2
  - name: b
    port: /dev/ttyUSB5
    apn: iot.carrier-b
coap:
  servers:
    meters: {host: meters.example, modem: b}
"""


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    return caught.value.problems


def test_a_modems_list_loads_with_names_drivers_and_an_alias_modem(tmp_path: Path) -> None:
    settings = load_config(_write(tmp_path, TWO))
    assert [(m.name, m.model, m.port, m.apn) for m in settings.modems] == [
        ("a", "l610", "/dev/ttyUSB2", ""),
        ("b", "l610", "/dev/ttyUSB5", "iot.carrier-b"),
    ]
    assert settings.modem is None
    assert settings.coap.servers["meters"].modem == "b"
    assert "modem a /dev/ttyUSB2, modem b /dev/ttyUSB5" in describe(settings)


def test_a_modem_section_is_a_one_entry_list_named_modem(tmp_path: Path) -> None:
    settings = load_config(_write(tmp_path, "modem:\n  port: /dev/ttyUSB2\n"))
    assert settings.modems == (settings.modem,)
    assert settings.modems[0].name == "modem"
    assert settings.modem_named("modem") is settings.modems[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "modem: {port: /dev/x}\nmodems: [{name: a, port: /dev/y}]\n",
            "give either modem (one modem) or modems",
            id="both",
        ),
        pytest.param(
            "modems: [{port: /dev/x}, {name: b, port: /dev/y}]\n",
            "modems 0 have no name",
            id="unnamed",
        ),
        pytest.param(
            "modems: [{name: a, port: /dev/x}, {name: a, port: /dev/y}]\n",
            "two modems have the same name: a",
            id="same-name",
        ),
        pytest.param(
            "modems: [{name: a, port: /dev/x}, {name: b, port: /dev/x}]\n",
            "two modems have the same port: /dev/x",
            id="same-port",
        ),
        pytest.param(
            "modems: [{name: A B, port: /dev/x}]\n",
            "modems.0.name (line 2): modem name 'A B' must be",
            id="bad-name",
        ),
        pytest.param(
            "modems: [{name: a, port: /dev/x, model: sim7000}]\n",
            "modems.0.model (line 2): unknown modem model 'sim7000'; known: l610",
            id="model",
        ),
        pytest.param(
            "modems:\n  - name: a\n    port: /dev/x\n    bogus: 1\n",
            "modems.0.bogus (line 5): unknown key (known keys: name, model, port",
            id="unknown-key",
        ),
        pytest.param(
            "modem: {port: /dev/x}\ncoap:\n  servers:\n    m: {host: h, modem: b}\n",
            "coap.servers.m.modem names modem 'b', which is not configured (modems: modem)",
            id="alias-modem",
        ),
    ],
)
def test_bad_modem_lists_are_refused_with_what_to_fix(
    tmp_path: Path, text: str, expected: str
) -> None:
    problems = _problems(tmp_path, "gateway_id: g\n" + text)
    assert any(expected in problem for problem in problems), problems


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path
