"""Plotly figures (plain dicts: `data` traces and a `layout`) for the pages.

Built on the server from the same figures the JSON endpoints return; the page hands each to
`Plotly.newPlot` (plotly.js, served from the installed plotly package, see docs/ui.md). No
Python plotly import is needed for this: a figure is JSON.
"""

from __future__ import annotations

from typing import Any

Figure = dict[str, Any]

# Colours of the waterfall: increases, decreases, totals.
UP, DOWN, TOTAL = "#2e7d32", "#c62828", "#1565c0"
# A colour per health band position, best first; bands beyond the list cycle through it.
BAND_COLOURS = ("#2e7d32", "#f9a825", "#c62828", "#6d4c41", "#757575", "#5e35b1")


def _layout(title: str, y_title: str = "", **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "height": 360,
            "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"}, "legend": {"orientation": "h"}, **extra}


def mrr_lines(series: list[dict[str, Any]], currency: str) -> Figure:
    data = [{"type": "scatter", "mode": "lines", "name": s["site"], "x": s["days"], "y": s["mrr"],
             "line": {"shape": "hv"}} for s in series]
    return {"data": data, "layout": _layout("MRR per site", f"MRR ({currency})", xaxis={"type": "date"})}


def movements_waterfall(site: str, wf: dict[str, Any], currency: str) -> Figure:
    return {"data": [{
        "type": "waterfall", "name": site, "x": wf["labels"], "y": wf["values"], "measure": wf["measure"],
        "customdata": wf["types"], "textposition": "outside",
        "text": [f"{v:,.2f}" for v in wf["values"]],
        "increasing": {"marker": {"color": UP}}, "decreasing": {"marker": {"color": DOWN}},
        "totals": {"marker": {"color": TOTAL}},
    }], "layout": _layout(f"{site}: MRR movements in {wf['month'][:7]}", f"MRR ({currency})", showlegend=False)}


def plan_bars(site: str, plans: list[dict[str, Any]], currency: str) -> Figure:
    return {"data": [{"type": "bar", "x": [p["plan_code"] for p in plans], "y": [p["mrr_reporting"] for p in plans],
                      "text": [f"{p['paying_subscriptions']} paying" for p in plans], "name": "MRR"}],
            "layout": _layout(f"{site}: MRR by plan", f"MRR ({currency})", showlegend=False)}


def band_bars(distribution: dict[str, Any]) -> Figure:
    sites = [s["site"] for s in distribution["sites"]]
    data = [{"type": "bar", "name": band, "x": sites,
             "y": [s["accounts"][band] for s in distribution["sites"]],
             "marker": {"color": BAND_COLOURS[i % len(BAND_COLOURS)]}}
            for i, band in enumerate(distribution["bands"])]
    return {"data": data, "layout": _layout("Accounts by health band", "accounts", barmode="stack")}


def account_lines(history: dict[str, Any], currency: str) -> Figure:
    health = history["health"]
    runs = history["mrr"]
    mrr_x, mrr_y = [], []
    for run in runs:  # each run is a constant stretch [day_from, day_to)
        mrr_x += [run["day_from"], run["day_to"]]
        mrr_y += [run["mrr"], run["mrr"]]
    data = [
        {"type": "scatter", "mode": "lines", "name": f"MRR ({currency})", "x": mrr_x, "y": mrr_y,
         "line": {"shape": "hv"}},
        {"type": "scatter", "mode": "lines+markers", "name": "health score", "yaxis": "y2",
         "x": [h["day"] for h in health], "y": [h["health_score"] for h in health],
         "text": [h["health_band"] for h in health]},
    ]
    layout = _layout(f"{history['site']} / {history['account_id']}", f"MRR ({currency})", xaxis={"type": "date"})
    layout["yaxis2"] = {"title": {"text": "health score"}, "overlaying": "y", "side": "right", "range": [0, 100]}
    return {"data": data, "layout": layout}


def extraction_bars(runs: list[dict[str, Any]]) -> Figure:
    resources = sorted({name for run in runs for name in run["records"]})
    ordered = list(reversed(runs))  # oldest first, left to right
    data = [{"type": "bar", "name": res, "x": [run["run_id"] for run in ordered],
             "y": [run["records"].get(res, 0) for run in ordered]} for res in resources]
    return {"data": data, "layout": _layout("Records read per run", "records", barmode="stack",
                                            xaxis={"type": "category", "automargin": True})}


def check_bars(rows: list[dict[str, Any]]) -> Figure:
    checks = sorted({row["check_name"] for row in rows})
    ordered = sorted(rows, key=lambda row: row["checked_at"])
    data = [{"type": "scatter", "mode": "lines+markers", "name": name,
             "x": [row["checked_at"] for row in ordered if row["check_name"] == name],
             "y": [row["offending_rows"] for row in ordered if row["check_name"] == name]} for name in checks]
    return {"data": data, "layout": _layout("Offending rows per data-quality check", "rows",
                                            xaxis={"type": "date"})}
