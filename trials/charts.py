"""Plotly figures for trial pages (rendered by static/js/charts.js with the local plotly.min.js)."""

from __future__ import annotations

import plotly.graph_objects as go

PALETTE = ["#0b5d7a", "#c2571a", "#3b8c3a", "#7a3b8c", "#8c7a3b", "#3b6f8c"]


def accrual_figure(accrual: list[dict], *, title: str) -> dict:
    """Cumulative enrolment per site over time, with each site's target as a dotted line."""
    fig = go.Figure()
    for n, site in enumerate(accrual):
        colour = PALETTE[n % len(PALETTE)]
        times = site["enrolled_at"]
        fig.add_trace(
            go.Scatter(
                x=[t.isoformat() for t in times],
                y=list(range(1, len(times) + 1)),
                mode="lines+markers",
                line={"shape": "hv", "color": colour},
                name=f"{site['site']} enrolled ({len(times)})",
            )
        )
        if site["target"] and times:
            fig.add_trace(
                go.Scatter(
                    x=[times[0].isoformat(), times[-1].isoformat()],
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
