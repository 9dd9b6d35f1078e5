"""The doctor's verdicts, sans-IO: registration states, signal, SIM, the CoAP ping."""

from __future__ import annotations

import pytest

from bridge.tools import diagnosis
from bridge.tools.diagnosis import Verdict


@pytest.mark.parametrize(
    ("rssi", "verdict", "detail"),
    [
        (31, Verdict.OK, "-51 dBm (rssi 31): good"),
        (14, Verdict.OK, "-85 dBm (rssi 14): good"),
        (7, Verdict.OK, "-99 dBm (rssi 7): fair"),
        (6, Verdict.WARN, "-101 dBm (rssi 6): poor"),
        (99, Verdict.FAIL, "no signal measured (rssi 99)"),
    ],
)
def test_signal_in_dbm_with_a_verdict(rssi: int, verdict: Verdict, detail: str) -> None:
    finding = diagnosis.signal_finding(rssi)
    assert (finding.verdict, finding.detail) == (verdict, detail)
    assert bool(finding.remedy) == (verdict is not Verdict.OK)


def test_registered_on_any_technology_passes_and_names_each_state() -> None:
    finding = diagnosis.registration_finding({"+CEREG": 2, "+CGREG": 5, "+CREG": None}, 3.0)
    assert finding.verdict is Verdict.OK
    assert finding.detail == (
        "+CEREG 2 (not registered, searching), +CGREG 5 (registered, roaming), +CREG not supported"
    )


@pytest.mark.parametrize(
    ("stat", "remedy"),
    [
        (2, "not registered after 60 s: check the antenna, the coverage at this place and the APN"),
        (3, "not registered after 60 s: the network refuses this SIM: check its subscription"),
        (0, "not registered after 60 s: the modem is not trying: check the SIM"),
    ],
)
def test_not_registered_says_what_to_do(stat: int, remedy: str) -> None:
    finding = diagnosis.registration_finding({"+CEREG": stat, "+CGREG": stat}, 60)
    assert finding.verdict is Verdict.FAIL
    assert finding.remedy.startswith(remedy)
    assert finding.detail.startswith("not registered after 60 s: +CEREG")


def test_sim_verdicts() -> None:
    assert diagnosis.sim_finding("READY", None, "").verdict is Verdict.OK
    pin = diagnosis.sim_finding("SIM PIN", None, "")
    assert (pin.verdict, pin.detail) == (Verdict.FAIL, "SIM state SIM PIN")
    missing = diagnosis.sim_finding(None, 10, "SIM not inserted")
    assert missing.remedy == "no SIM card: insert one, or check the SIM tray"
    assert missing.detail == "SIM not usable: SIM not inserted"
    assert "reseat" in diagnosis.sim_finding(None, None, "ERROR").remedy


def test_coap_ping_is_an_empty_con_and_only_its_rst_matches() -> None:
    assert diagnosis.coap_ping(0x1234) == b"\x40\x00\x12\x34"
    assert diagnosis.is_reset_for(b"\x70\x00\x12\x34", 0x1234)
    assert not diagnosis.is_reset_for(b"\x70\x00\x12\x35", 0x1234)  # another message id
    assert not diagnosis.is_reset_for(b"\x60\x00\x12\x34", 0x1234)  # an ACK, not a RST
    assert not diagnosis.is_reset_for(b"\x70\x00", 0x1234)
