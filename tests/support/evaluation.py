"""Shared helpers of the evaluation tests: fixture paths and comparison to a published figure's printed digits."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from evaluation.stats.reads import ReadsTable, parse_reads_csv

DATA = Path(__file__).resolve().parents[1] / "evaluation" / "data"


def load_reads(name: str) -> ReadsTable:
    with open(DATA / name, encoding="utf-8", newline="") as handle:
        return parse_reads_csv(handle)


def assert_printed(test, actual: float, printed: str, what: str = "") -> None:
    """``actual`` rounds to the published figure ``printed`` at the number of decimals it was printed with."""
    decimals = -Decimal(printed).as_tuple().exponent
    tolerance = 0.5 * 10.0**-decimals + 1e-15
    test.assertLessEqual(
        abs(actual - float(printed)),
        tolerance,
        f"{what or 'value'}: computed {actual!r}, published {printed} ({decimals} decimals)",
    )
