"""Sans-IO recognition of AT final result codes.

A final result code ends a command's reply (ITU-T V.250 §5.7, 3GPP TS 27.007 §9.2,
TS 27.005 §3.2.5). ``+CME ERROR``/``+CMS ERROR`` carry either a number (``AT+CMEE=1``)
or the standard's text (``AT+CMEE=2``); both are normalised so callers can test the code
whatever the modem's CMEE mode, and always keep the modem's own words.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.at.cme import CME_ERRORS

__all__ = ["CME_ERRORS", "FinalResult", "parse_final_result"]


@dataclass(frozen=True, slots=True)
class FinalResult:
    """A final result code line.

    `text` is the whole line, `ok` is true only for ``OK``, `code` the CME/CMS error
    number when known and `message` the error's words (empty for plain results).
    """

    text: str
    ok: bool
    code: int | None
    message: str


_CME_CODES: dict[str, int] = {words.lower(): code for code, words in CME_ERRORS.items()}

_PLAIN: dict[str, FinalResult] = {
    text: FinalResult(text, text == "OK", None, "")
    for text in ("OK", "ERROR", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE")
}
_ERROR_PREFIXES = ("+CME ERROR:", "+CMS ERROR:")


def parse_final_result(line: str) -> FinalResult | None:
    """Return the final result `line` stands for, or None when it is any other line."""
    plain = _PLAIN.get(line)
    if plain is not None:
        return plain
    if not line.startswith(_ERROR_PREFIXES):
        return None
    detail = line[len("+CME ERROR:") :].strip()
    if detail.isascii() and detail.isdigit():
        code = int(detail)
        # CMS codes (TS 27.005) are a different numbering: no words to add for them.
        words = CME_ERRORS.get(code, "") if line.startswith("+CME") else ""
        return FinalResult(line, False, code, words or detail)
    known = _CME_CODES.get(detail.lower()) if line.startswith("+CME") else None
    return FinalResult(line, False, known, detail)
