"""The long reads CSV of ``analyze_reads``: ``reader,modality,case,truth,rating``, one row per read.

A standalone algorithm is a modality whose rating is the same for every reader. The design must be fully
crossed (every reader rated every case in every modality), each case has one truth (0 non-diseased, 1
diseased) and each class has at least two cases (the case jackknife needs them). Anything else is refused
with a ``ReadsCsvError`` that names the line or the missing read, so nothing is analysed from a partial table.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

COLUMNS = ("reader", "modality", "case", "truth", "rating")


class ReadsCsvError(ValueError):
    """The CSV cannot be analysed; the message says why and where."""


@dataclass(frozen=True)
class ReadsTable:
    readers: list[str]
    modalities: list[str]
    cases: list[str]
    truth: np.ndarray  # (N,) bool
    ratings: np.ndarray  # (T, R, N)

    def standalone_modalities(self) -> list[str]:
        """Modalities whose ratings are the same for every reader (a standalone algorithm)."""
        if len(self.readers) < 2:
            return []
        return [m for t, m in enumerate(self.modalities) if np.all(self.ratings[t] == self.ratings[t, :1])]


def _ordered(ids: list[str]) -> list[str]:
    """Numeric ids in numeric order; otherwise the order of first appearance."""
    try:
        return sorted(ids, key=float)
    except ValueError:
        return ids


def parse_reads_csv(lines: Iterable[str]) -> ReadsTable:
    """Parse and validate the reads CSV (an open text file or any iterable of lines)."""
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise ReadsCsvError("the CSV is empty: expected the header reader,modality,case,truth,rating") from None
    except csv.Error as error:
        raise ReadsCsvError(f"line 1: not a readable CSV ({error})") from None
    names = [name.strip().lower() for name in header]
    missing = [column for column in COLUMNS if column not in names]
    if missing:
        raise ReadsCsvError(
            f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)} "
            f"(found: {', '.join(h for h in header if h.strip()) or 'nothing'}; expected {','.join(COLUMNS)})"
        )
    position = {column: names.index(column) for column in COLUMNS}
    seen: dict[tuple[str, str, str], int] = {}
    rating_of: dict[tuple[str, str, str], float] = {}
    truth_of: dict[str, tuple[int, int]] = {}
    order: dict[str, dict[str, None]] = {"reader": {}, "modality": {}, "case": {}}
    line = 1
    try:
        for line, row in enumerate(reader, start=2):
            if not any(field.strip() for field in row):
                continue
            if len(row) != len(header):
                raise ReadsCsvError(f"line {line}: {len(row)} fields, but the header has {len(header)}")
            fields = {column: row[position[column]].strip() for column in COLUMNS}
            for column in ("reader", "modality", "case"):
                if not fields[column]:
                    raise ReadsCsvError(f"line {line}: the {column} is empty")
            try:
                rating = float(fields["rating"])
            except ValueError:
                raise ReadsCsvError(f"line {line}: rating {fields['rating']!r} is not a number") from None
            if not math.isfinite(rating):
                raise ReadsCsvError(f"line {line}: rating {fields['rating']!r} is not a finite number")
            if fields["truth"] not in ("0", "1"):
                raise ReadsCsvError(f"line {line}: truth {fields['truth']!r} must be 0 (non-diseased) or 1 (diseased)")
            truth = int(fields["truth"])
            key = (fields["reader"], fields["modality"], fields["case"])
            if key in seen:
                raise ReadsCsvError(
                    f"line {line}: duplicate row: reader {key[0]} rated case {key[2]} in modality {key[1]} "
                    f"already on line {seen[key]}"
                )
            seen[key] = line
            rating_of[key] = rating
            case = fields["case"]
            if case in truth_of and truth_of[case][0] != truth:
                raise ReadsCsvError(
                    f"line {line}: case {case} has truth {truth} here "
                    f"but {truth_of[case][0]} on line {truth_of[case][1]}"
                )
            truth_of.setdefault(case, (truth, line))
            for column in ("reader", "modality", "case"):
                order[column].setdefault(fields[column], None)
    except csv.Error as error:
        raise ReadsCsvError(f"line {line}: not a readable CSV ({error})") from None
    if not seen:
        raise ReadsCsvError("the CSV has a header but no reads")
    readers = _ordered(list(order["reader"]))
    modalities = _ordered(list(order["modality"]))
    cases = _ordered(list(order["case"]))
    missing_reads = [
        (reader_id, modality, case)
        for modality in modalities
        for reader_id in readers
        for case in cases
        if (reader_id, modality, case) not in rating_of
    ]
    if missing_reads:
        shown = "; ".join(f"reader {r} did not read case {c} in modality {m}" for r, m, c in missing_reads[:5])
        more = f" (and {len(missing_reads) - 5} more missing reads)" if len(missing_reads) > 5 else ""
        raise ReadsCsvError(
            f"the design is not fully crossed: {shown}{more}. Every reader must rate every case in every modality."
        )
    diseased = np.array([truth_of[case][0] == 1 for case in cases])
    if diseased.all() or not diseased.any():
        only = "diseased (truth 1)" if diseased.all() else "non-diseased (truth 0)"
        raise ReadsCsvError(f"every case is {only}: an ROC analysis needs both diseased and non-diseased cases")
    if min(int(diseased.sum()), int((~diseased).sum())) < 2:
        raise ReadsCsvError(
            f"{int(diseased.sum())} diseased and {int((~diseased).sum())} non-diseased cases: the case jackknife "
            "needs at least two of each"
        )
    ratings = np.array(
        [[[rating_of[(r, m, c)] for c in cases] for r in readers] for m in modalities],
        dtype=float,
    )
    return ReadsTable(readers=readers, modalities=modalities, cases=cases, truth=diseased, ratings=ratings)
