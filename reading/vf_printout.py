"""A visual field laid out as a Humphrey 24-2 single field printout for the reader: greyscale, threshold
values, total and pattern deviation (dB) and their probability plots, with the global indices and the
reliability indices. Built from the values the upload pipeline parsed and computed
(``trials.models.VisualFieldResult``, ``trials.uploads.visual_field``); drawn server-side as SVG by
``templates/reading/includes/vf_printout.html``."""

from __future__ import annotations

from typing import Any

from trials.uploads.visual_field import BLIND_SPOT_POINTS, COORDINATES

CELL = 26  # SVG units per 6 degrees
COLUMNS = tuple(range(-27, 28, 6))  # 10 columns of the 24-2 grid (x in degrees)
ROWS = tuple(range(21, -22, -6))  # 8 rows (y in degrees, top first)
# HFA probability symbols: p < 5 %, 2 %, 1 %, 0.5 %; anything else is "not significant" (a dot).
PROBABILITY_SYMBOLS = (
    (0.005, "p05", "P < 0.5%"),
    (0.01, "p1", "P < 1%"),
    (0.02, "p2", "P < 2%"),
    (0.05, "p5", "P < 5%"),
)
GREYSCALE_STEP_DB = 5  # one greyscale tone per 5 dB, as the printout's legend


def probability_symbol(level: Any) -> str:
    """The symbol class of a probability level (``ns``: not significant; empty: no value)."""
    if level is None:
        return ""
    for cut, symbol, _ in PROBABILITY_SYMBOLS:
        if float(level) <= cut:
            return symbol
    return "ns"


def grey_tone(sensitivity: float | None) -> int:
    """0-255 grey for a threshold: darker for lower sensitivity, in 5 dB steps (0 dB or less is black)."""
    if sensitivity is None:
        return 255
    steps = max(0, min(7, int(sensitivity // GREYSCALE_STEP_DB)))
    return round(steps * 255 / 7)


def _number(value: Any) -> str:
    return "" if value is None else f"{round(float(value)):d}"


def _at(values: Any, index: int) -> Any:
    return values[index] if isinstance(values, list) and index < len(values) else None


def vf_printout(vf: Any) -> dict[str, Any]:
    """Points and indices of a ``VisualFieldResult``, in the eye's own orientation (a left eye is shown as
    the perimeter prints it, blind spot on the left; values are stored in right-eye orientation)."""
    mirror = vf.eye == "OS"
    points = []
    for index, (x, y) in enumerate(COORDINATES):
        shown_x = -x if mirror else x
        blind = index + 1 in BLIND_SPOT_POINTS
        sensitivity = _at(vf.sensitivities, index)
        points.append(
            {
                "number": index + 1,
                "cx": (COLUMNS.index(shown_x) + 0.5) * CELL,
                "cy": (ROWS.index(y) + 0.5) * CELL,
                "left": COLUMNS.index(shown_x) * CELL,
                "top": ROWS.index(y) * CELL,
                "blind_spot": blind,
                "sensitivity": "" if blind else _number(sensitivity),
                "grey": grey_tone(None if blind else sensitivity),
                "td": "" if blind else _number(_at(vf.total_deviation, index)),
                "pd": "" if blind else _number(_at(vf.pattern_deviation, index)),
                "tdp": "" if blind else probability_symbol(_at(vf.total_deviation_probability, index)),
                "pdp": "" if blind else probability_symbol(_at(vf.pattern_deviation_probability, index)),
            }
        )
    numbers = (
        ("vf-threshold", "Threshold (dB)", "sensitivity"),
        ("vf-td", "Total deviation (dB)", "td"),
        ("vf-pd", "Pattern deviation (dB)", "pd"),
    )
    symbols = (
        ("vf-tdp", "Total deviation probability", "tdp"),
        ("vf-pdp", "Pattern deviation probability", "pdp"),
    )
    return {
        "eye": vf.eye,
        "points": points,
        "number_plots": [
            {
                "testid": testid,
                "caption": caption,
                "values": [
                    {"cx": pt["cx"], "cy": pt["cy"], "text": "·" if pt["blind_spot"] else pt[key]} for pt in points
                ],
            }
            for testid, caption, key in numbers
        ],
        "symbol_plots": [
            {
                "testid": testid,
                "caption": caption,
                "cells": [{"left": pt["left"], "top": pt["top"], "symbol": pt[key]} for pt in points if pt[key]],
            }
            for testid, caption, key in symbols
        ],
        "size": len(COLUMNS) * CELL,
        "height": len(ROWS) * CELL,
        "axis_x": len(COLUMNS) * CELL / 2,
        "axis_y": len(ROWS) * CELL / 2,
        "md": vf.mean_deviation,
        "psd": vf.pattern_standard_deviation,
        "vfi": vf.visual_field_index,
        "ght": vf.glaucoma_hemifield_test,
        "indices_source": vf.indices_source or {},
        "fixation_loss_percent": vf.fixation_loss_percent,
        "false_positive_percent": vf.false_positive_percent,
        "false_negative_percent": vf.false_negative_percent,
        "reliable": vf.reliable,
        "reliability_rule": vf.reliability_rule,
        "reliability_reasons": vf.reliability_reasons or [],
        "symbols": [{"symbol": s, "label": label} for _, s, label in PROBABILITY_SYMBOLS],
        "grey_legend": [
            {"label": f"{db}-{db + GREYSCALE_STEP_DB - 1} dB" if db else "< 5 dB", "grey": grey_tone(db)}
            for db in range(0, 40, GREYSCALE_STEP_DB)
        ],
    }
