"""Final result code recognition."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.at.results import FinalResult, parse_final_result


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("OK", FinalResult("OK", True, None, "")),
        ("ERROR", FinalResult("ERROR", False, None, "")),
        ("NO CARRIER", FinalResult("NO CARRIER", False, None, "")),
        ("BUSY", FinalResult("BUSY", False, None, "")),
        ("NO ANSWER", FinalResult("NO ANSWER", False, None, "")),
        ("NO DIALTONE", FinalResult("NO DIALTONE", False, None, "")),
        ("+CME ERROR: 10", FinalResult("+CME ERROR: 10", False, 10, "SIM not inserted")),
        (
            "+CME ERROR: SIM not inserted",
            FinalResult("+CME ERROR: SIM not inserted", False, 10, "SIM not inserted"),
        ),
        ("+CME ERROR:3", FinalResult("+CME ERROR:3", False, 3, "operation not allowed")),
        ("+CME ERROR: 9999", FinalResult("+CME ERROR: 9999", False, 9999, "9999")),
        (
            "+CME ERROR: vendor specific trouble",
            FinalResult(
                "+CME ERROR: vendor specific trouble", False, None, "vendor specific trouble"
            ),
        ),
        ("+CMS ERROR: 500", FinalResult("+CMS ERROR: 500", False, 500, "500")),
        (
            "+CMS ERROR: unknown error",
            FinalResult("+CMS ERROR: unknown error", False, None, "unknown error"),
        ),
    ],
)
def test_final_result_codes(line: str, expected: FinalResult) -> None:
    assert parse_final_result(line) == expected


@pytest.mark.parametrize(
    "line",
    ["OK ", "ok", "+CME: 1", "+GTCOAPCLOSE: 1", "+CSQ: 20,99", "OKAY", "ERROR2", "RDY", ""],
)
def test_other_lines_are_not_final(line: str) -> None:
    assert parse_final_result(line) is None


@given(st.text(max_size=80))
def test_never_raises(line: str) -> None:
    result = parse_final_result(line)
    assert result is None or result.text == line
