"""The AT engine: sans-IO line framing and result parsing, and the asyncio command engine."""

from bridge.at.engine import AtEngine, AtStats
from bridge.at.framer import Line, LineFramer, Overflow
from bridge.at.results import FinalResult, parse_final_result

__all__ = [
    "AtEngine",
    "AtStats",
    "FinalResult",
    "Line",
    "LineFramer",
    "Overflow",
    "parse_final_result",
]
