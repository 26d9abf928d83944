"""The plotly figures of a trial's analysis dashboard, as plain ``{"data": [...], "layout": {...}}`` dicts built from
``evaluation.analysis.trial_analysis`` (no plotly.py figure objects, whose validation the page does not need).
Only cartesian trace types (scatter, bar, heatmap), so a cartesian-only plotly bundle draws them;
``static/js/dashboard.js`` draws each with the locally served plotly.min.js."""

from __future__ import annotations

from typing import Any

PALETTE = ["#0b5d7a", "#c2571a", "#3b8c3a", "#7a3b8c", "#8c7a3b", "#3b6f8c", "#a83232", "#4d4d4d"]
MODEL_COLOURS = ["#111111", "#6b6b6b", "#9c27b0", "#00897b"]
PHASE_SYMBOLS = {"unaided": "circle", "aided": "diamond"}
HEIGHT = 420


def _layout(title: str, x: str, y: str, **extra: Any) -> dict[str, Any]:
    layout = {
        "title": {"text": title},
        "xaxis": {"title": {"text": x}},
        "yaxis": {"title": {"text": y}},
        "height": HEIGHT,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "legend": {"orientation": "h", "y": -0.2},
    }
    for key, value in extra.items():
        if key in ("xaxis", "yaxis"):
            layout[key].update(value)  # type: ignore[attr-defined]
        else:
            layout[key] = value
    return layout


def roc_figure(question: dict[str, Any]) -> dict[str, Any]:
    """Each model's ROC curve with its high-sensitivity and high-specificity points, and every reader as a point
    (unaided circles, aided diamonds, coloured by experience group)."""
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "x": [0, 1],
            "y": [0, 1],
            "mode": "lines",
            "line": {"dash": "dot", "color": "#bbbbbb"},
            "name": "chance",
            "hoverinfo": "skip",
        }
    ]
    for m, model in enumerate(question.get("models", [])):
        if not model.get("roc"):
            continue
        colour = MODEL_COLOURS[m % len(MODEL_COLOURS)]
        auc = model["auc"]
        data.append(
            {
                "type": "scatter",
                "x": model["roc"]["fpr"],
                "y": model["roc"]["tpr"],
                "mode": "lines",
                "line": {"color": colour},  # straight segments: tied scores make diagonal steps
                "name": f"{model['model']} (AUC {auc['auc']:.3f})",
            }
        )
        for key, label, symbol in (
            ("high_sensitivity", "high-sensitivity point", "triangle-up"),
            ("high_specificity", "high-specificity point", "square"),
        ):
            point = model.get(key)
            if point:
                data.append(
                    {
                        "type": "scatter",
                        "x": [1 - point["specificity"]["estimate"]],
                        "y": [point["sensitivity"]["estimate"]],
                        "mode": "markers",
                        "marker": {
                            "symbol": symbol,
                            "size": 12,
                            "color": colour,
                            "line": {"color": "#fff", "width": 1},
                        },
                        "name": f"{model['model']} {label}",
                    }
                )
    groups = sorted({r["group"] for r in question.get("readers", [])})
    for phase, symbol in PHASE_SYMBOLS.items():
        for g, group in enumerate(groups):
            rows = [
                r
                for r in question.get("readers", [])
                if r["phase"] == phase
                and r["group"] == group
                and r["sensitivity"]["total"]
                and r["specificity"]["total"]
            ]
            if not rows:
                continue
            data.append(
                {
                    "type": "scatter",
                    "x": [1 - r["specificity"]["estimate"] for r in rows],
                    "y": [r["sensitivity"]["estimate"] for r in rows],
                    "text": [r["reader"] for r in rows],
                    "mode": "markers",
                    "marker": {"symbol": symbol, "size": 10, "color": PALETTE[g % len(PALETTE)]},
                    "name": f"{group} readers, {phase}",
                    "hovertemplate": "%{text}: sensitivity %{y:.3f}, 1 - specificity %{x:.3f}<extra></extra>",
                }
            )
    return {
        "data": data,
        "layout": _layout(
            f"ROC: {question['label']}",
            "1 - specificity",
            "Sensitivity",
            xaxis={"range": [-0.02, 1.02]},
            yaxis={"range": [-0.02, 1.02]},
        ),
    }


def reliability_figure(question: dict[str, Any]) -> dict[str, Any] | None:
    models = [m for m in question.get("models", []) if m.get("calibration")]
    if not models:
        return None
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "x": [0, 1],
            "y": [0, 1],
            "mode": "lines",
            "name": "perfect calibration",
            "line": {"dash": "dot", "color": "#bbbbbb"},
        }
    ]
    for m, model in enumerate(models):
        c = model["calibration"]
        data.append(
            {
                "type": "scatter",
                "x": c["mean_predicted"],
                "y": c["observed"],
                "text": [f"{n} cases" for n in c["cases"]],
                "mode": "lines+markers",
                "line": {"color": MODEL_COLOURS[m % len(MODEL_COLOURS)]},
                "name": f"{model['model']} (Brier {c['brier']:.3f})",
            }
        )
    return {
        "data": data,
        "layout": _layout(
            f"AI calibration: {question['label']}",
            "Mean predicted probability",
            "Observed proportion diseased",
            xaxis={"range": [0, 1]},
            yaxis={"range": [0, 1]},
        ),
    }


def heatmap(title: str, z: list[list[Any]], x: list[str], y: list[str], xlabel: str, ylabel: str, **extra) -> dict:
    return {
        "data": [
            {
                "type": "heatmap",
                "z": z,
                "x": x,
                "y": y,
                "colorscale": "Blues",
                "reversescale": True,  # plotly's Blues runs dark to light: more counts, darker
                "hovertemplate": f"{ylabel} %{{y}}, {xlabel} %{{x}}: %{{z}}<extra></extra>",
                **extra,
            }
        ],
        "layout": _layout(
            title,
            xlabel,
            ylabel,
            yaxis={"autorange": "reversed", "type": "category"},
            xaxis={"type": "category"},
            height=360,
        ),
    }


def confusion_figure(confusion: dict[str, Any]) -> dict[str, Any]:
    grades = ["0", "1", "2", "3", "4"]
    figure = heatmap(f"ICDR grade: {confusion['source']}", confusion["table"], grades, grades, "Graded", "Reference")
    figure["data"][0]["texttemplate"] = "%{z}"
    return figure


def kappa_figure(question: dict[str, Any]) -> dict[str, Any]:
    agreement = question["agreement"]
    return heatmap(
        f"Reader agreement (Cohen's kappa, {agreement['weights']}, unaided): {question['label']}",
        agreement["kappa"],
        agreement["readers"],
        agreement["readers"],
        "Reader",
        "Reader",
        zmin=-1,
        zmax=1,
        colorscale="RdBu",  # reversed (as every heatmap here): disagreement red, agreement blue
        texttemplate="%{z:.2f}",
    )


def drift_figure(drift: list[dict[str, Any]]) -> dict[str, Any]:
    data = [
        {
            "type": "scatter",
            "x": list(range(1, len(d["cumulative"]) + 1)),
            "y": d["cumulative"],
            "mode": "lines+markers",
            "name": f"{d['reader']} ({d['group']})",
            "line": {"color": PALETTE[i % len(PALETTE)]},
        }
        for i, d in enumerate(drift)
    ]
    return {
        "data": data,
        "layout": _layout(
            "Reader drift on hidden calibration cases",
            "Calibration read (in signing order)",
            "Cumulative agreement with the known answer",
            yaxis={"range": [-0.05, 1.05]},
        ),
    }


def progress_figure(progress: dict[str, Any]) -> dict[str, Any]:
    data = []
    for p, phase in enumerate(PHASE_SYMBOLS):
        rows = [r for r in progress["readers"] if r["phase"] == phase]
        if rows:
            data.append(
                {
                    "type": "bar",
                    "x": [r["reader"] for r in rows],
                    "y": [r["signed"] for r in rows],
                    "name": f"signed, {phase}",
                    "marker": {"color": PALETTE[p]},
                }
            )
    return {
        "data": data,
        "layout": _layout(
            f"Reading progress ({progress['readable_cases']} cases to read per phase)",
            "Reader",
            "Signed reads",
            barmode="group",
        ),
    }


def accrual_figure(progress: dict[str, Any]) -> dict[str, Any]:
    sites = progress["sites"]
    return {
        "data": [
            {
                "type": "bar",
                "x": [s["site"] for s in sites],
                "y": [s["enrolled"] for s in sites],
                "name": "enrolled",
                "marker": {"color": PALETTE[0]},
            },
            {
                "type": "bar",
                "x": [s["site"] for s in sites],
                "y": [s["target"] for s in sites],
                "name": "target",
                "marker": {"color": "#cccccc"},
            },
        ],
        "layout": _layout("Accrual per site", "Site", "Subjects", barmode="group"),
    }


def figures(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every figure of the dashboard by the id of its element (``data-dashboard-figure``)."""
    out: dict[str, dict[str, Any]] = {}
    for question in report["questions"]:
        if "reason" in question:
            continue
        key = question["key"]
        out[f"roc-{key}"] = roc_figure(question)
        reliability = reliability_figure(question)
        if reliability:
            out[f"reliability-{key}"] = reliability
        if len(question["agreement"]["readers"]) > 1:
            out[f"kappa-{key}"] = kappa_figure(question)
    for i, confusion in enumerate(report["confusion"]):
        out[f"confusion-{i}"] = confusion_figure(confusion)
    if report["drift"]:
        out["drift"] = drift_figure(report["drift"])
    out["progress"] = progress_figure(report["progress"])
    out["accrual"] = accrual_figure(report["progress"])
    return out
