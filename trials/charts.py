"""Plotly figures for trial pages (rendered by static/js/charts.js with the local plotly.min.js)."""

from __future__ import annotations

from datetime import datetime

import plotly.graph_objects as go

PALETTE = ["#0b5d7a", "#c2571a", "#3b8c3a", "#7a3b8c", "#8c7a3b", "#3b6f8c"]


def accrual_figure(accrual: list[dict], *, title: str, start: datetime, end: datetime) -> dict:
    """Cumulative enrolment per site from ``start`` to ``end``, each site's target a dotted line."""
    fig = go.Figure()
    for n, site in enumerate(accrual):
        colour = PALETTE[n % len(PALETTE)]
        times = site["enrolled_at"]
        # Start at zero and carry the last count to today, so a quiet site shows as a flat line.
        fig.add_trace(
            go.Scatter(
                x=[start.isoformat(), *(t.isoformat() for t in times), end.isoformat()],
                y=[0, *range(1, len(times) + 1), len(times)],
                mode="lines+markers",
                line={"shape": "hv", "color": colour},
                name=f"{site['site']} enrolled ({len(times)})",
            )
        )
        if site["target"]:
            fig.add_trace(
                go.Scatter(
                    x=[start.isoformat(), end.isoformat()],
                    y=[site["target"], site["target"]],
                    mode="lines",
                    line={"dash": "dot", "color": colour},
                    name=f"{site['site']} target ({site['target']})",
                )
            )
    fig.update_layout(
        title=title,
        xaxis_title="Enrolment date",
        yaxis_title="Subjects enrolled",
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        height=360,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.25},
    )
    return fig.to_plotly_json()
