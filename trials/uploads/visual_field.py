"""Humphrey 24-2 visual fields: parsing (CSV and DICOM perimetry), STATPAC-style indices and the PD plot.

Conventions (see ``VISUAL_FIELD_CSV.md``):

* 54 points numbered 1..54 row by row from the top, left to right, in **right-eye orientation**: left-eye
  fields are mirrored left-right so the blind spot is always points 26 and 35 (the convention of the
  visualFields R package, vfprogression and UWHVF). 52 points are analysed.
* Sensitivities in dB; a negative value means "< 0 dB" (stimulus not seen at maximum intensity). "<0" is
  stored as -2 dB, the value HFA exports carry (vfprogression, visualFields): the perimeter's own total
  deviation at such points is -2 dB minus the age normal (checked in the tests on the vfseries fields), so a
  not-seen point is not clamped to 0 dB.
* Normative values: SUNY-IU 24-2 (SITA Standard) from visualFields, stored in ``data/``. HFA's own normative
  variances are proprietary, so computed MD/PSD/VFI/GHT approximate the perimeter's values (the tests measure
  the agreement on 20 real HFA fields); what the perimeter reported (indices, GHT, TD/PD maps and their
  probability symbols) is kept and preferred, and ``indices_source`` says which values are whose.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from PIL import Image

from trials.uploads.errors import UploadRejected

N_POINTS = 54
BLIND_SPOT_POINTS = (26, 35)  # 1-based, right-eye orientation
NOT_SEEN_DB = -2.0  # "<0 dB": how HFA exports a point not seen at maximum intensity

# (x, y) in degrees, right-eye orientation, in point order: rows of 4, 6, 8, 9, 9, 8, 6, 4 points.
_ROWS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (21, (-9, -3, 3, 9)),
    (15, (-15, -9, -3, 3, 9, 15)),
    (9, (-21, -15, -9, -3, 3, 9, 15, 21)),
    (3, (-27, -21, -15, -9, -3, 3, 9, 15, 21)),
    (-3, (-27, -21, -15, -9, -3, 3, 9, 15, 21)),
    (-9, (-21, -15, -9, -3, 3, 9, 15, 21)),
    (-15, (-15, -9, -3, 3, 9, 15)),
    (-21, (-9, -3, 3, 9)),
)
COORDINATES: tuple[tuple[int, int], ...] = tuple((x, y) for y, xs in _ROWS for x in xs)
_POINT_BY_XY = {xy: i for i, xy in enumerate(COORDINATES)}
_BLIND = np.zeros(N_POINTS, dtype=bool)
_BLIND[[p - 1 for p in BLIND_SPOT_POINTS]] = True
_ANALYSED = ~_BLIND

# Probability levels flagged on HFA printouts (lower tail only), most significant first.
PROBABILITY_LEVELS = (0.005, 0.01, 0.02, 0.05)
NOT_SIGNIFICANT = 1.0

# Bengtsson & Heijl 2008 weight points by eccentricity band (ganglion-cell density); band edges and weights as
# read from the paper's figure by the visualFields package (imarinfr/vf1, nv.R, vfcomputevfi comments).
_VFI_BANDS = ((6.0, 3.29), (12.0, 1.28), (18.0, 0.79), (24.0, 0.57), (math.inf, 0.45))
_ECCENTRICITY = np.array([math.hypot(x, y) for x, y in COORDINATES])
VFI_WEIGHTS = np.array([next(w for edge, w in _VFI_BANDS if d < edge) for d in _ECCENTRICITY])

GHT_LABELS = {
    "wnl": "Within normal limits",
    "within normal limits": "Within normal limits",
    "borderline": "Borderline",
    "onl": "Outside normal limits",
    "outside normal limits": "Outside normal limits",
    "grs": "General reduction of sensitivity",
    "general reduction of sensitivity": "General reduction of sensitivity",
    "ahs": "Abnormally high sensitivity",
    "abnormally high sensitivity": "Abnormally high sensitivity",
}

DATA_DIR = Path(__file__).resolve().parent / "data"
NORMALS_FILE = DATA_DIR / "normvals_sunyiu_24d2.json"
GHT_LIMITS_FILE = DATA_DIR / "ght_limits_sunyiu_24d2.json"

DEVICE_MAPS = (
    "device_total_deviation",
    "device_pattern_deviation",
    "device_total_deviation_probability",
    "device_pattern_deviation_probability",
)
# CSV column prefix of each device map (td1..td54, ...), blind-spot cells empty.
DEVICE_MAP_PREFIXES = {
    "device_total_deviation": "td",
    "device_pattern_deviation": "pd",
    "device_total_deviation_probability": "tdp",
    "device_pattern_deviation_probability": "pdp",
}

# Perimeters whose dB scale and normative database are not the Humphrey Field Analyzer's. Their fields cannot be
# analysed against HFA normals (Octopus, for one, reports MD with the opposite sign on a different dB scale).
HUMPHREY_MAKERS = ("humphrey", "zeiss", "hfa")
OTHER_MAKERS = {
    "octopus": "Haag-Streit Octopus",
    "haag-streit": "Haag-Streit Octopus",
    "haag streit": "Haag-Streit Octopus",
    "medmont": "Medmont",
    "kowa": "Kowa",
    "oculus": "Oculus",
    "centervue": "CenterVue Compass",
    "compass": "CenterVue Compass",
    "icare": "iCare Compass",
    "heidelberg": "Heidelberg Edge Perimeter",
    "topcon": "Topcon",
    "olleyes": "Olleyes VisuALL",
    "virtual field": "Virtual Field",
}


def check_humphrey(maker: str | None) -> None:
    """Refuse a field from a perimeter other than the Humphrey Field Analyzer, naming the maker when it is a known
    one (any other text is not echoed: it came from the file). ``None`` (not stated) is accepted: the CSV format
    and the DICOM object do not require it."""
    if maker is None or not maker.strip():
        return
    text = " ".join(maker.lower().split())
    if any(word in text for word in HUMPHREY_MAKERS):
        return
    known = next((name for key, name in OTHER_MAKERS.items() if key in text), None)
    if known is not None:
        raise UploadRejected(
            f"This visual field comes from a {known} perimeter. Visus analyses Humphrey (HFA) 24-2 fields only: "
            f"{known} uses its own dB scale and normative values, so its field cannot be compared with HFA normals.",
            "vf_not_humphrey",
        )
    raise UploadRejected(
        "This visual field does not come from a Humphrey Field Analyzer (the perimeter's maker is not Zeiss/"
        "Humphrey). Visus analyses Humphrey 24-2 fields only, against HFA-scale normal values.",
        "vf_not_humphrey",
    )


Eye = Literal["OD", "OS"]


# --------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VisualField:
    """One 24-2 test. ``sensitivities`` are in right-eye orientation (see module docstring); blind-spot values
    may be NaN. Indices the perimeter reported are kept as reported (None when absent)."""

    eye: Eye
    age: float
    sensitivities: tuple[float, ...]
    mean_deviation: float | None = None
    pattern_standard_deviation: float | None = None
    visual_field_index: float | None = None
    glaucoma_hemifield_test: str | None = None
    fixation_losses: int | None = None
    fixation_checks: int | None = None
    false_positive_percent: float | None = None
    false_negative_percent: float | None = None
    source: str = "csv"
    # The perimeter's own maps (54 values, right-eye orientation, None at the blind spot) when the export has them.
    device_total_deviation: tuple[float | None, ...] | None = None
    device_pattern_deviation: tuple[float | None, ...] | None = None
    device_total_deviation_probability: tuple[float | None, ...] | None = None
    device_pattern_deviation_probability: tuple[float | None, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.sensitivities) != N_POINTS:
            raise ValueError(f"a 24-2 field has {N_POINTS} points, got {len(self.sensitivities)}")
        if self.eye not in ("OD", "OS"):
            raise ValueError("eye must be OD or OS")
        for name in DEVICE_MAPS:
            values = getattr(self, name)
            if values is not None and len(values) != N_POINTS:
                raise ValueError(f"{name} needs {N_POINTS} values, got {len(values)}")

    @property
    def fixation_loss_percent(self) -> float | None:
        if self.fixation_losses is None or not self.fixation_checks:
            return None
        return 100.0 * self.fixation_losses / self.fixation_checks


@dataclass(frozen=True)
class ReliabilityCriteria:
    """Cut-offs in percent; a field is reliable when every rate is strictly below its cut-off.

    The default is Li et al.'s (BMC Medical Imaging 2018;18:35), the gate of the data the VF net follows: fixation
    losses under 2/13 of the fixation checks, false positives and false negatives under 15%.
    """

    name: str = "Li et al. 2018"
    fixation_losses_max: float = 100.0 * 2 / 13
    false_positives_max: float = 15.0
    false_negatives_max: float = 15.0

    def as_dict(self) -> dict[str, float | str]:
        """What a verdict stores so that it can be re-read and re-judged later."""
        return {
            "name": self.name,
            "fixation_losses_max": self.fixation_losses_max,
            "false_positives_max": self.false_positives_max,
            "false_negatives_max": self.false_negatives_max,
        }


LI_2018 = ReliabilityCriteria()
HFA_FULL_THRESHOLD = ReliabilityCriteria("HFA full threshold", 20.0, 33.0, 33.0)
GLAUCOMA_TRIALS_33 = ReliabilityCriteria("33% on each index", 33.0, 33.0, 33.0)


@dataclass(frozen=True)
class Reliability:
    reliable: bool
    criteria: ReliabilityCriteria
    fired: tuple[str, ...]  # rules that made the field unreliable, e.g. "false_positives > 15%"
    not_evaluated: tuple[str, ...]  # indices missing from the upload


@dataclass(frozen=True)
class VisualFieldAnalysis:
    """Per-point values are tuples of 54 in right-eye orientation with None at the blind spot."""

    eye: Eye
    total_deviation: tuple[float | None, ...]
    pattern_deviation: tuple[float | None, ...]
    total_deviation_probability: tuple[float | None, ...]
    pattern_deviation_probability: tuple[float | None, ...]
    general_height: float
    computed_mean_deviation: float
    computed_pattern_standard_deviation: float
    computed_visual_field_index: float
    mean_deviation: float  # as reported by the perimeter when it did, otherwise computed
    pattern_standard_deviation: float
    visual_field_index: float
    # {"md" | "psd" | "vfi" | "ght" | "td" | "pd" | "tdp" | "pdp": "perimeter" | "computed"}
    indices_source: Mapping[str, str]
    reliability: Reliability
    normals: str
    computed_glaucoma_hemifield_test: str = ""
    glaucoma_hemifield_test: str = ""  # the perimeter's when it gave one, otherwise computed


@dataclass(frozen=True)
class Normals:
    """Normative values for one 24-2 set, arrays of 54 (NaN at the blind spot)."""

    name: str
    intercept: np.ndarray
    slope: np.ndarray
    sd_td: np.ndarray
    td_lut: np.ndarray  # (54, len(probs))
    pd_lut: np.ndarray
    probs: tuple[float, ...]
    gh_perc: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    def expected(self, age: float) -> np.ndarray:
        return self.intercept + self.slope * age


def _number(value: Any) -> float:
    if isinstance(value, str):
        return {"NA": math.nan, "Inf": math.inf, "-Inf": -math.inf}[value]
    return float(value)


@lru_cache(maxsize=4)
def load_normals(name: str = "sunyiu_24d2") -> Normals:
    """Load a normative set from ``data/normvals_sunyiu_24d2.json`` (cached; the file ships with the code)."""
    with NORMALS_FILE.open(encoding="utf-8") as fh:
        raw = json.load(fh)[name]

    def vec(values: Sequence[Any]) -> np.ndarray:
        return np.array([_number(v) for v in values], dtype=float)

    def lut(table: Mapping[str, Sequence[Any]]) -> np.ndarray:
        return np.array([[_number(v) for v in table[f"l{i}"]] for i in range(1, N_POINTS + 1)], dtype=float)

    return Normals(
        name=name,
        intercept=vec(raw["agem_coeff"]["intercept"]),
        slope=vec(raw["agem_coeff"]["slope"]),
        sd_td=vec(raw["sd"]["td"]),
        td_lut=lut(raw["td_lut"]),
        pd_lut=lut(raw["pd_lut"]),
        probs=tuple(float(p) for p in raw["td_probs"]),
        gh_perc=float(raw["gh_perc"]),
        extra={"info": raw.get("info", {})},
    )


# --------------------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------------------
SENSITIVITY_COLUMNS = tuple(f"s{i}" for i in range(1, N_POINTS + 1))
REQUIRED_COLUMNS = (
    "eye",
    "age",
    *SENSITIVITY_COLUMNS,
    "fixation_losses",
    "fixation_checks",
    "false_positives",
    "false_negatives",
)
OPTIONAL_COLUMNS = ("md", "psd", "vfi", "ght", "perimeter")
DEVICE_MAP_COLUMNS = {
    name: tuple(f"{prefix}{i}" for i in range(1, N_POINTS + 1)) for name, prefix in DEVICE_MAP_PREFIXES.items()
}
ALL_COLUMNS = (
    frozenset(REQUIRED_COLUMNS)
    | frozenset(OPTIONAL_COLUMNS)
    | frozenset(c for columns in DEVICE_MAP_COLUMNS.values() for c in columns)
)
MAX_CSV_ROWS = 20


def _header(text: str) -> list[str]:
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    return [c.strip().lower() for c in first.strip().split(",")]


def looks_like_visual_field_csv(text: str) -> bool:
    """True when the first line is a header naming eye, age and s1 (in any order) - used for type detection.
    Full validation of the columns happens in ``parse_visual_field_csv``."""
    return {"eye", "age", "s1"} <= set(_header(text))


def _reject(message: str, code: str = "visual_field_csv_invalid") -> UploadRejected:
    return UploadRejected(message, code)


def _parse_float(cell: str, column: str, row: int, *, lo: float, hi: float) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise _reject(f"Row {row}, column {column}: expected a number.") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise _reject(f"Row {row}, column {column}: value outside the accepted range {lo:g} to {hi:g}.")
    return value


def _optional(cell: str | None) -> str | None:
    if cell is None:
        return None
    cell = cell.strip()
    return cell or None


def parse_visual_field_csv(text: str) -> list[VisualField]:
    """Parse the documented CSV (one field per data row). Raises UploadRejected with row/column positions only -
    cell values are never echoed, and unknown columns are refused because they may carry identifiers."""
    try:
        return _parse_visual_field_csv(text)
    except csv.Error:  # e.g. a stray quote or NUL: the csv module's message would quote nothing useful
        raise _reject(
            "The file is not a well-formed CSV (a stray quote, a NUL byte or a broken line). Export it again "
            "in the documented format."
        ) from None


def _parse_visual_field_csv(text: str) -> list[VisualField]:
    # newline="": universal newlines, so files with CR, LF or CRLF line ends (and a stray CR) all parse.
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise _reject("The CSV file is empty.") from None
    columns = [c.strip().lower() for c in header]
    unknown = [i + 1 for i, c in enumerate(columns) if c not in ALL_COLUMNS]
    if unknown:
        raise _reject(
            f"The CSV header has {len(unknown)} column(s) that are not part of the documented format (positions "
            f"{', '.join(map(str, unknown[:10]))}). Remove them: extra columns may carry patient identifiers."
        )
    if len(set(columns)) != len(columns):
        raise _reject("The CSV header repeats a column.")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise _reject(f"The CSV header is missing required column(s): {', '.join(missing[:10])}.")

    fields: list[VisualField] = []
    for row_number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(columns):
            raise _reject(f"Row {row_number} has {len(cells)} cells; the header has {len(columns)}.")
        if len(fields) >= MAX_CSV_ROWS:
            raise _reject(f"The CSV holds more than {MAX_CSV_ROWS} fields; upload at most {MAX_CSV_ROWS} per file.")
        fields.append(_parse_row(dict(zip(columns, cells, strict=True)), row_number))
    if not fields:
        raise _reject("The CSV file has a header but no visual field rows.")
    return fields


def _parse_sensitivity(cell: str, column: str, row: int, *, blind_spot: bool) -> float:
    cell = cell.strip()
    if blind_spot and cell == "":
        return math.nan
    if cell == "<0":
        return NOT_SEEN_DB
    return _parse_float(cell, column, row, lo=-5.0, hi=50.0)


def _parse_device_map(row: dict[str, str], name: str, n: int) -> tuple[float | None, ...] | None:
    """A device map is all-or-nothing: every analysed point or no column of it. The blind-spot columns (26, 35)
    may be absent or empty (exports such as vfprogression's omit them)."""
    columns = DEVICE_MAP_COLUMNS[name]
    needed = [c for i, c in enumerate(columns) if (i + 1) not in BLIND_SPOT_POINTS]
    present = [c for c in needed if c in row]
    if not present:
        return None
    if len(present) != len(needed):
        missing = [c for c in needed if c not in row]
        raise _reject(f"The CSV header has some {DEVICE_MAP_PREFIXES[name]}* columns but not {', '.join(missing[:5])}.")
    if all(row[c].strip() == "" for c in needed):
        return None
    probability = name.endswith("probability")
    values: list[float | None] = []
    for i, column in enumerate(columns):
        if (i + 1) in BLIND_SPOT_POINTS:
            values.append(None)
            continue
        cell = row[column].strip()
        if cell == "":
            raise _reject(f"Row {n}, column {column}: a value is needed at every point outside the blind spot.")
        if probability:
            value = _parse_float(cell, column, n, lo=0.0, hi=1.0)
            if value not in (*PROBABILITY_LEVELS, NOT_SIGNIFICANT):
                raise _reject(f"Row {n}, column {column}: use 0.005, 0.01, 0.02, 0.05 or 1 (not significant).")
        else:
            value = _parse_float(cell, column, n, lo=-60.0, hi=30.0)
        values.append(value)
    return tuple(values)


def _parse_row(row: dict[str, str], n: int) -> VisualField:
    eye = row["eye"].strip().upper()
    if eye not in ("OD", "OS"):
        raise _reject(f"Row {n}, column eye: use OD (right eye) or OS (left eye).")
    age = _parse_float(row["age"].strip(), "age", n, lo=1.0, hi=120.0)
    sens = tuple(
        _parse_sensitivity(row[c], c, n, blind_spot=(i + 1) in BLIND_SPOT_POINTS)
        for i, c in enumerate(SENSITIVITY_COLUMNS)
    )
    _check_orientation(sens, n)

    def count(column: str) -> int:
        value = _parse_float(row[column].strip(), column, n, lo=0, hi=1000)
        if value != int(value):
            raise _reject(f"Row {n}, column {column}: expected a whole number of trials.")
        return int(value)

    losses, checks = count("fixation_losses"), count("fixation_checks")
    if losses > checks:
        raise _reject(f"Row {n}: fixation_losses cannot exceed fixation_checks.")

    def opt_float(column: str, lo: float, hi: float) -> float | None:
        cell = _optional(row.get(column))
        return None if cell is None else _parse_float(cell, column, n, lo=lo, hi=hi)

    perimeter = _optional(row.get("perimeter"))
    if perimeter is not None:
        try:
            check_humphrey(perimeter)
        except UploadRejected as exc:
            raise _reject(f"Row {n}: {exc.message}", exc.code) from None

    ght_cell = _optional(row.get("ght"))
    ght = None
    if ght_cell is not None:
        ght = GHT_LABELS.get(ght_cell.lower())
        if ght is None:
            raise _reject(f"Row {n}, column ght: use WNL, Borderline, ONL, GRS or AHS (see VISUAL_FIELD_CSV.md).")
    return VisualField(
        eye=eye,  # type: ignore[arg-type]
        age=age,
        sensitivities=sens,
        mean_deviation=opt_float("md", -40.0, 10.0),
        pattern_standard_deviation=opt_float("psd", 0.0, 30.0),
        visual_field_index=opt_float("vfi", 0.0, 100.0),
        glaucoma_hemifield_test=ght,
        fixation_losses=losses,
        fixation_checks=checks,
        false_positive_percent=_parse_float(row["false_positives"].strip(), "false_positives", n, lo=0, hi=100),
        false_negative_percent=_parse_float(row["false_negatives"].strip(), "false_negatives", n, lo=0, hi=100),
        source="csv",
        **{name: _parse_device_map(row, name, n) for name in DEVICE_MAPS},
    )


def _is_hole(sens: Sequence[float], index: int) -> bool:
    """A point under 10 dB whose 4-neighbours (outside the blind spot) have a median at least 10 dB higher."""
    x, y = COORDINATES[index]
    neighbours = [
        sens[_POINT_BY_XY[(x + dx, y + dy)]]
        for dx, dy in ((6, 0), (-6, 0), (0, 6), (0, -6))
        if (x + dx, y + dy) in _POINT_BY_XY and not _BLIND[_POINT_BY_XY[(x + dx, y + dy)]]
    ]
    value = sens[index]
    return value < 10 and float(np.median(neighbours)) >= value + 10


# Where the blind spot falls when a left-eye field is typed in its native orientation: (-15, -3) when the points
# keep their coordinates, (-21, -3) when each printed row is typed left to right (the 9-point rows shift by one).
_MIRRORED_BLIND_SPOT = (_POINT_BY_XY[(-15, -3)], _POINT_BY_XY[(-21, -3)])


def looks_mirrored(sens: Sequence[float]) -> bool:
    """True when the blind spot is missing at (15, -3) and a blind-spot-like hole sits at its mirror position.

    A hole (a point under 10 dB with neighbours 10 dB higher) tells a blind spot from a glaucomatous nasal defect,
    which is deep over several neighbouring points: all 700 real right-eye-oriented fields of the test data pass.
    """
    values = [0.0 if math.isnan(v) else v for v in sens]
    lower_blind = sens[_POINT_BY_XY[(15, -3)]]
    if math.isnan(lower_blind) or lower_blind < 15:
        return False
    return any(_is_hole(values, i) for i in _MIRRORED_BLIND_SPOT)


def _check_orientation(sens: tuple[float, ...], row: int) -> None:
    if looks_mirrored(sens):
        raise _reject(
            f"Row {row}: the blind spot does not fall on points 26 and 35. Enter left-eye fields mirrored into "
            "right-eye orientation (see VISUAL_FIELD_CSV.md).",
            "visual_field_orientation",
        )


# --------------------------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------------------------
def _probability_levels(values: np.ndarray, lut: np.ndarray, probs: Sequence[float]) -> np.ndarray:
    """Lowest flagged level (0.005 .. 0.05) whose normative percentile the value falls below, else 1.0."""
    levels = np.full(N_POINTS, NOT_SIGNIFICANT)
    for level in reversed(PROBABILITY_LEVELS):  # from 5% down so the most significant level wins
        column = probs.index(level)
        levels[values < lut[:, column]] = level
    levels[_BLIND] = np.nan
    return levels


def reliability(field_: VisualField, criteria: ReliabilityCriteria = LI_2018) -> Reliability:
    return reliability_from_rates(
        fixation_loss_percent=field_.fixation_loss_percent,
        false_positive_percent=field_.false_positive_percent,
        false_negative_percent=field_.false_negative_percent,
        criteria=criteria,
    )


def reliability_from_rates(
    *,
    fixation_loss_percent: float | None,
    false_positive_percent: float | None,
    false_negative_percent: float | None,
    criteria: ReliabilityCriteria,
) -> Reliability:
    """The verdict from the three rates (percent); also what re-judging a stored field uses."""
    rates = {
        "fixation_losses": (fixation_loss_percent, criteria.fixation_losses_max),
        "false_positives": (false_positive_percent, criteria.false_positives_max),
        "false_negatives": (false_negative_percent, criteria.false_negatives_max),
    }
    # Reliable means strictly under each cut-off (Li et al.: FL < 2/13, FP < 15%, FN < 15%).
    fired = tuple(
        f"{name} >= {cut:.4g}%" for name, (rate, cut) in rates.items() if rate is not None and rate >= cut - 1e-9
    )
    missing = tuple(name for name, (rate, _) in rates.items() if rate is None)
    if len(missing) == len(rates):
        # Nothing says the patient did the test well: such a field is not called reliable.
        fired = ("no reliability indices (fixation losses, false positives, false negatives) in the export",)
    return Reliability(reliable=not fired, criteria=criteria, fired=fired, not_evaluated=missing)


def _device_map(values: tuple[float | None, ...] | None) -> np.ndarray | None:
    if values is None:
        return None
    out = np.array([math.nan if v is None else float(v) for v in values], dtype=float)
    out[_BLIND] = math.nan
    return out if not np.isnan(out[_ANALYSED]).any() else None


def mean_and_pattern_standard_deviation(td: np.ndarray, sd: np.ndarray) -> tuple[float, float]:
    """MD and PSD of the analysed TD values against the normative SD ``s`` of each point (same order, no NaN).

    MD weights each point by ``1/s`` (visualFields' ``gl_wtd`` for SUNY-IU); weighting by ``1/s²``, as HFA does with
    its own proprietary variances, puts the SUNY-IU MD 0.5-0.8 dB above the perimeter's on advanced fields, where
    the deep peripheral points are down-weighted too much. PSD is Heijl et al.'s (1987) formula,
    ``√(mean(s²) · Σ((TD − MD)²/s²) / (n − 1))``; centring it on the ``1/s²`` mean instead moves it by at most
    0.02 dB on the 20 vfseries fields.
    """
    md = float(np.sum(td / sd) / np.sum(1.0 / sd))
    s2 = sd**2
    psd = float(math.sqrt(np.mean(s2) * np.sum((td - md) ** 2 / s2) / (td.size - 1)))
    return md, psd


def analyse_visual_field(
    field_: VisualField,
    *,
    normals: Normals | None = None,
    criteria: ReliabilityCriteria = LI_2018,
) -> VisualFieldAnalysis:
    """TD, PD, probability maps, MD, PSD, VFI and GHT against the normative set (SUNY-IU 24-2 by default).

    The computed values are always computed; where the perimeter gave its own (indices, GHT, TD/PD maps and their
    probability symbols) those are what the analysis reports, and ``indices_source`` says so per value.
    """
    nv = normals or load_normals()
    sens = np.array(field_.sensitivities, dtype=float)
    analysed = sens[_ANALYSED]
    if np.isnan(analysed).any():
        raise UploadRejected("Every point outside the blind spot needs a sensitivity value.", "visual_field_incomplete")
    expected = nv.expected(field_.age)
    # Not-seen points keep their exported value (-2 dB): the perimeter's TD there is that value minus the normal.
    td = sens - expected
    td[_BLIND] = np.nan

    td_analysed = td[_ANALYSED]
    n = td_analysed.size
    # General height: the k-th highest TD with k = floor((1 - gh_perc) * n) = 7 for 52 points (HFA uses the 7th).
    k = int((1.0 - nv.gh_perc) * n)
    gh = float(np.sort(td_analysed)[::-1][k - 1])
    pd = td - gh

    md, psd = mean_and_pattern_standard_deviation(td_analysed, nv.sd_td[_ANALYSED])

    tdp = _probability_levels(td, nv.td_lut, nv.probs)
    pdp = _probability_levels(pd, nv.pd_lut, nv.probs)
    computed_ght = glaucoma_hemifield_test(pd, pdp, gh, nv)

    maps = {
        "td": (td, _device_map(field_.device_total_deviation)),
        "pd": (pd, _device_map(field_.device_pattern_deviation)),
        "tdp": (tdp, _device_map(field_.device_total_deviation_probability)),
        "pdp": (pdp, _device_map(field_.device_pattern_deviation_probability)),
    }
    sources = {
        "md": "perimeter" if field_.mean_deviation is not None else "computed",
        "psd": "perimeter" if field_.pattern_standard_deviation is not None else "computed",
        "vfi": "perimeter" if field_.visual_field_index is not None else "computed",
        "ght": "perimeter" if field_.glaucoma_hemifield_test else "computed",
        **{key: "perimeter" if device is not None else "computed" for key, (_, device) in maps.items()},
    }
    chosen = {key: computed if device is None else device for key, (computed, device) in maps.items()}
    # The VFI's significance comes from the perimeter's symbols when it gave them: with them the formula is within
    # 1 point of the perimeter's VFI on the 20 vfseries fields. With computed symbols it is up to 2.16 points high:
    # the SUNY-IU 5% PD limits are wider than HFA's (27 points that the perimeter flags lie above them, none the
    # other way) and the SUNY-IU age-normal shape can put the general height lower than HFA's (tests/trials,
    # ValidationAgainstHumphreyTests).
    vfi = _visual_field_index(sens, chosen["td"], chosen["tdp"], chosen["pdp"], expected, md)

    def per_point(values: np.ndarray) -> tuple[float | None, ...]:
        return tuple(None if math.isnan(v) else float(v) for v in values)

    return VisualFieldAnalysis(
        eye=field_.eye,
        total_deviation=per_point(chosen["td"]),
        pattern_deviation=per_point(chosen["pd"]),
        total_deviation_probability=per_point(chosen["tdp"]),
        pattern_deviation_probability=per_point(chosen["pdp"]),
        general_height=gh,
        computed_mean_deviation=md,
        computed_pattern_standard_deviation=psd,
        computed_visual_field_index=vfi,
        mean_deviation=field_.mean_deviation if field_.mean_deviation is not None else md,
        pattern_standard_deviation=(
            field_.pattern_standard_deviation if field_.pattern_standard_deviation is not None else psd
        ),
        visual_field_index=field_.visual_field_index if field_.visual_field_index is not None else vfi,
        indices_source=sources,
        reliability=reliability(field_, criteria),
        normals=nv.name,
        computed_glaucoma_hemifield_test=computed_ght,
        glaucoma_hemifield_test=field_.glaucoma_hemifield_test or computed_ght,
    )


def _visual_field_index(
    sens: np.ndarray, td: np.ndarray, tdp: np.ndarray, pdp: np.ndarray, expected: np.ndarray, md: float
) -> float:
    # Bengtsson & Heijl 2008: significance from the PD map unless the field is so depressed (MD < -20 dB) that PD
    # is unreliable, then from the TD map; a significant point scores its percentage of age-normal sensitivity.
    significance = pdp if md >= -20.0 else tdp
    score = 100.0 * (1.0 - np.abs(td) / expected)
    score = np.clip(score, 0.0, 100.0)
    score[significance > 0.05] = 100.0
    score[sens < 0] = 0.0
    mask = _ANALYSED
    return float(np.sum(score[mask] * VFI_WEIGHTS[mask]) / np.sum(VFI_WEIGHTS[mask]))


# --------------------------------------------------------------------------------------------------------------
# Glaucoma Hemifield Test (Asman & Heijl, Arch Ophthalmol 1992;110:812-819)
# --------------------------------------------------------------------------------------------------------------
# Five sectors of the superior hemifield (1-based points, right-eye orientation), each compared with its mirror
# image below the horizontal meridian: the 24-2 layout of the 30-2 sectors of the paper.
GHT_SECTORS: tuple[tuple[int, ...], ...] = (
    (1, 2, 5, 6, 7, 8),
    (3, 4, 9, 10),
    (11, 12, 19, 20, 21),
    (13, 14, 15, 16),
    (22, 23, 24),
)


def _mirror(point: int) -> int:
    x, y = COORDINATES[point - 1]
    return _POINT_BY_XY[(x, -y)] + 1


GHT_MIRROR_SECTORS = tuple(tuple(_mirror(p) for p in sector) for sector in GHT_SECTORS)


def ght_sector_scores(pd: np.ndarray, pdp: np.ndarray, nv: Normals) -> np.ndarray:
    """(5, 2) sums of point scores, superior and inferior, from the PD map: 0 when not significant, 2 at p < 5%,
    5 at p < 2%, and 10 x PD / (the 1% PD limit) at p < 1% (Asman & Heijl's scoring)."""
    limit_1 = nv.pd_lut[:, nv.probs.index(0.01)]
    score = np.zeros(N_POINTS)
    score[pdp <= 0.05] = 2.0
    score[pdp <= 0.02] = 5.0
    deep = pdp <= 0.01
    score[deep] = 10.0 * np.abs(pd[deep] / limit_1[deep])
    return np.array(
        [
            [score[[p - 1 for p in up]].sum(), score[[p - 1 for p in down]].sum()]
            for up, down in zip(GHT_SECTORS, GHT_MIRROR_SECTORS, strict=True)
        ]
    )


@lru_cache(maxsize=1)
def load_ght_limits() -> Mapping[str, Any]:
    """Normal limits of the GHT sector sums, differences and general height (``data/ght_limits_sunyiu_24d2.json``,
    made by ``ght_normal_limits`` from the SUNY-IU controls; a test checks the file against a recomputation)."""
    with GHT_LIMITS_FILE.open(encoding="utf-8") as fh:
        limits: Mapping[str, Any] = json.load(fh)
        return limits


def ght_normal_limits(fields: Sequence[VisualField], *, normals: Normals | None = None) -> dict[str, Any]:
    """Percentiles over normal fields: up-down differences at 0.5/99.5% (outside normal limits) and 1.5/98.5%
    (borderline), sector sums at 99.5%, general height at 0.5/99.5%."""
    nv = normals or load_normals()
    diffs, sums, heights = [], [], []
    for f in fields:
        sens = np.array(f.sensitivities, dtype=float)
        td = sens - nv.expected(f.age)
        td[_BLIND] = np.nan
        k = int((1.0 - nv.gh_perc) * int(_ANALYSED.sum()))
        gh = float(np.sort(td[_ANALYSED])[::-1][k - 1])
        pd = td - gh
        pdp = _probability_levels(pd, nv.pd_lut, nv.probs)
        scores = ght_sector_scores(pd, pdp, nv)
        diffs.append(scores[:, 0] - scores[:, 1])
        sums.append(scores)
        heights.append(gh)
    d, s, h = np.array(diffs), np.array(sums), np.array(heights)

    def q(values: np.ndarray, level: float) -> list[float]:
        return [round(float(v), 4) for v in np.atleast_1d(np.quantile(values, level, axis=0))]

    return {
        "fields": len(fields),
        "diff_low_onl": q(d, 0.005),
        "diff_high_onl": q(d, 0.995),
        "diff_low_borderline": q(d, 0.015),
        "diff_high_borderline": q(d, 0.985),
        "sum_high_onl": q(s.reshape(len(fields), -1), 0.995),
        "gh_low": q(h, 0.005)[0],
        "gh_high": q(h, 0.995)[0],
    }


def glaucoma_hemifield_test(
    pd: np.ndarray, pdp: np.ndarray, general_height: float, nv: Normals, limits: Mapping[str, Any] | None = None
) -> str:
    """Asman & Heijl's decision: outside normal limits when a sector pair differs beyond the 0.5/99.5% limits or
    both sectors of a pair are beyond their 99.5% sums; borderline beyond the 1.5/98.5% limits; otherwise general
    reduction (or abnormally high sensitivity) when the general height is beyond its 0.5/99.5% limits."""
    lim = limits or load_ght_limits()
    scores = ght_sector_scores(pd, pdp, nv)
    diff = scores[:, 0] - scores[:, 1]
    sum_high = np.array(lim["sum_high_onl"]).reshape(len(GHT_SECTORS), 2)
    if (
        (diff < np.array(lim["diff_low_onl"])).any()
        or (diff > np.array(lim["diff_high_onl"])).any()
        or ((scores > sum_high).all(axis=1)).any()
    ):
        return "Outside normal limits"
    if (diff < np.array(lim["diff_low_borderline"])).any() or (diff > np.array(lim["diff_high_borderline"])).any():
        return "Borderline"
    if general_height < lim["gh_low"]:
        return "General reduction of sensitivity"
    if general_height > lim["gh_high"]:
        return "Abnormally high sensitivity"
    return "Within normal limits"


# --------------------------------------------------------------------------------------------------------------
# DICOM Ophthalmic Visual Field Static Perimetry Measurements
# --------------------------------------------------------------------------------------------------------------
def _first_item(ds: Any, keyword: str) -> Any:
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _get_number(ds: Any, keyword: str) -> float | None:
    if ds is None:
        return None
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        # FL attributes are float32: 2.1 reads back as 2.0999999; perimeters report two decimals at most.
        return round(float(value), 4)
    except (TypeError, ValueError):
        return None


def _catch_rate(ds: Any, estimate_flag: str, estimate: str, errors: str, trials: str) -> float | None:
    if ds is None:
        return None
    # SITA reports an estimated rate instead of counting catch trials; the flag says which one is meaningful.
    if str(ds.get(estimate_flag, "")).upper() == "YES":
        return _get_number(ds, estimate)
    n_errors, n_trials = _get_number(ds, errors), _get_number(ds, trials)
    if n_errors is None or not n_trials:
        return _get_number(ds, estimate)
    return 100.0 * n_errors / n_trials


def _global_index(ds: Any, words: str) -> Any:
    for item in ds.get("VisualFieldGlobalResultsIndexSequence", None) or ():
        observations = item.get("DataObservationSequence", None) or [item]
        for obs in observations:
            concept = _first_item(obs, "ConceptNameCodeSequence")
            meaning = str(concept.get("CodeMeaning", "")) if concept is not None else ""
            if words in meaning.lower():
                return obs
    return None


def _dicom_probability(value: float | None) -> float | None:
    """A DICOM probability value is a percentage (5 = p < 5%); it maps to the printout's symbol levels."""
    if value is None:
        return None
    for level in sorted(PROBABILITY_LEVELS):
        if value / 100.0 <= level + 1e-9:
            return level
    return NOT_SIGNIFICANT


def visual_field_from_dicom_bytes(data: bytes | IO[bytes], *, age: float) -> VisualField:
    """Parse a perimetry object from the uploaded bytes (or file), in memory and before de-identification.

    De-identification removes what the analysis needs (a GHT given as ``TextValue``, for one), so the field is read
    from the original; only numbers and the known GHT labels leave this function, never the file's text.
    """
    from pydicom import dcmread  # local: the CSV path does not need pydicom

    from trials.uploads.spool import as_file

    ds = dcmread(as_file(data), stop_before_pixels=True)
    return visual_field_from_dicom(ds, age=age)


def visual_field_from_dicom(ds: Any, *, age: float) -> VisualField:
    """Read a pydicom Dataset of Ophthalmic Visual Field Static Perimetry Measurements into a VisualField.

    ``age`` comes from the caller (the subject's age at the visit). Test-point coordinates are matched to the 24-2
    grid (mirrored for left eyes); raises UploadRejected when the object is not a 24-2 threshold test or comes from
    a perimeter other than the Humphrey Field Analyzer. The perimeter's per-point total and pattern deviation and
    their probabilities (Visual Field Test Point Normals Sequence) are kept when every analysed point has them.
    """
    check_humphrey(str(ds.get("Manufacturer", "") or "") or None)
    laterality = str(ds.get("Laterality", "") or ds.get("MeasurementLaterality", "")).upper()
    if laterality not in ("R", "L"):
        raise UploadRejected("The perimetry object does not say which eye was tested (Laterality).", "vf_laterality")
    eye: Eye = "OD" if laterality == "R" else "OS"
    sens = [math.nan] * N_POINTS
    device: dict[str, list[float | None]] = {name: [None] * N_POINTS for name in DEVICE_MAPS}
    points = ds.get("VisualFieldTestPointSequence", None) or ()
    for item in points:
        x, y = (
            _get_number(item, "VisualFieldTestPointXCoordinate"),
            _get_number(item, "VisualFieldTestPointYCoordinate"),
        )
        if x is None or y is None:
            continue
        key = (round(-x if eye == "OS" else x), round(y))
        index = _POINT_BY_XY.get(key)
        if index is None:
            raise UploadRejected(
                "The perimetry object holds test points outside the 24-2 pattern; only 24-2 fields are accepted.",
                "vf_not_24_2",
            )
        value = _get_number(item, "SensitivityValue")
        if str(item.get("StimulusResults", "")).upper() == "NOT SEEN" and (value is None or value <= 0):
            value = NOT_SEEN_DB
        if value is not None:
            sens[index] = value
        normals = _first_item(item, "VisualFieldTestPointNormalsSequence")
        if normals is not None:
            device["device_total_deviation"][index] = _get_number(normals, "AgeCorrectedSensitivityDeviationValue")
            device["device_pattern_deviation"][index] = _get_number(
                normals, "GeneralizedDefectCorrectedSensitivityDeviationValue"
            )
            device["device_total_deviation_probability"][index] = _dicom_probability(
                _get_number(normals, "AgeCorrectedSensitivityDeviationProbabilityValue")
            )
            device["device_pattern_deviation_probability"][index] = _dicom_probability(
                _get_number(normals, "GeneralizedDefectCorrectedSensitivityDeviationProbabilityValue")
            )
    if any(math.isnan(sens[i]) for i in range(N_POINTS) if _ANALYSED[i]):
        raise UploadRejected(
            "The perimetry object does not hold a sensitivity for every 24-2 point; only 24-2 threshold tests "
            "are accepted.",
            "vf_not_24_2",
        )
    fixation = _first_item(ds, "FixationSequence") or ds
    catch = _first_item(ds, "VisualFieldCatchTrialSequence") or ds
    losses, checks = (
        _get_number(fixation, "PatientNotProperlyFixatedQuantity"),
        _get_number(fixation, "FixationCheckedQuantity"),
    )
    vfi_obs = _global_index(ds, "visual field index")
    ght_obs = _global_index(ds, "hemifield")
    ght = None
    if ght_obs is not None:
        code = _first_item(ght_obs, "ConceptCodeSequence")
        text = str(code.get("CodeMeaning", "")) if code is not None else str(ght_obs.get("TextValue", ""))
        # Only the known GHT results (the labels the CSV accepts) are kept; anything else, including a
        # reviewer's note typed into CodeMeaning or TextValue, becomes unknown: the raw text never leaves the file.
        ght = GHT_LABELS.get(" ".join(text.split()).lower())
    return VisualField(
        eye=eye,
        age=age,
        sensitivities=tuple(sens),
        mean_deviation=_get_number(ds, "GlobalDeviationFromNormal"),
        pattern_standard_deviation=_get_number(ds, "LocalizedDeviationFromNormal"),
        visual_field_index=_get_number(vfi_obs, "NumericValue"),
        glaucoma_hemifield_test=ght,
        fixation_losses=None if losses is None else int(losses),
        fixation_checks=None if checks is None else int(checks),
        false_positive_percent=_catch_rate(
            catch,
            "FalsePositivesEstimateFlag",
            "FalsePositivesEstimate",
            "FalsePositivesQuantity",
            "PositiveCatchTrialsQuantity",
        ),
        false_negative_percent=_catch_rate(
            catch,
            "FalseNegativesEstimateFlag",
            "FalseNegativesEstimate",
            "FalseNegativesQuantity",
            "NegativeCatchTrialsQuantity",
        ),
        source="dicom",
        **{name: _complete_map(values) for name, values in device.items()},
    )


def _complete_map(values: list[float | None]) -> tuple[float | None, ...] | None:
    """A device map is kept only when every analysed point has a value (the blind spot is dropped)."""
    out = tuple(None if _BLIND[i] else v for i, v in enumerate(values))
    return out if all(v is not None for i, v in enumerate(out) if _ANALYSED[i]) else None


# --------------------------------------------------------------------------------------------------------------
# Pattern Deviation probability plot
# --------------------------------------------------------------------------------------------------------------
# Fraction of a cell's pixels that are black for each level, as on the HFA printout: a dot for n.s., then
# increasingly dense stipple, a solid square at p < 0.5%.
_SYMBOL_DENSITY = {NOT_SIGNIFICANT: 0.0, 0.05: 0.125, 0.02: 0.25, 0.01: 0.5, 0.005: 1.0}
_GRID_X = tuple(range(-27, 28, 6))  # 10 columns
_GRID_Y = tuple(range(21, -22, -6))  # 8 rows, drawn in a 10-row square canvas


def _stipple(size: int, density: float) -> np.ndarray:
    """Boolean mask of ``size``x``size`` with the given black fraction, ordered-dither style (deterministic)."""
    bayer4 = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]]) / 16.0
    tiled = np.tile(bayer4, (size // 4 + 1, size // 4 + 1))[:size, :size]
    return tiled < density


def render_pattern_deviation_plot(
    analysis: VisualFieldAnalysis,
    *,
    size: int = 224,
    orientation: Literal["native", "right"] = "native",
    axes: bool = True,
) -> bytes:
    """Grayscale PNG of the PD probability plot on the fixed 24-2 grid (the glaucoma network's input).

    ``orientation="native"`` draws left eyes as the HFA printout shows them (blind spot on the left), which is
    what Li et al. (2018) trained on; ``"right"`` keeps every field in right-eye orientation. The blind spot is
    left blank. ``size`` must be at least 80 px so each symbol has 8 px or more.
    """
    if size < 80:
        raise ValueError("size must be at least 80 px")
    canvas = np.full((size, size), 255, dtype=np.uint8)
    cell = size / 10.0
    pad = max(1, round(cell * 0.12))
    symbol = int(round(cell)) - 2 * pad
    mirror = orientation == "native" and analysis.eye == "OS"
    for (x, y), level in zip(COORDINATES, analysis.pattern_deviation_probability, strict=True):
        if level is None:
            continue
        col = _GRID_X.index(-x if mirror else x)
        row = _GRID_Y.index(y) + 1  # one empty row above and below centres the 8 rows in the square
        top, left = int(round(row * cell)) + pad, int(round(col * cell)) + pad
        density = _SYMBOL_DENSITY[level]
        if density == 0.0:
            dot = max(2, symbol // 6)
            c = symbol // 2 - dot // 2
            canvas[top + c : top + c + dot, left + c : left + c + dot] = 0
        else:
            block = canvas[top : top + symbol, left : left + symbol]
            block[_stipple(symbol, density)[: block.shape[0], : block.shape[1]]] = 0
    if axes:
        mid = size // 2
        canvas[int(round(cell)) : int(round(9 * cell)), mid] = 0
        canvas[mid, int(round(0.5 * cell)) : int(round(9.5 * cell))] = 0
    out = io.BytesIO()
    Image.fromarray(canvas).save(out, format="PNG")
    return out.getvalue()
