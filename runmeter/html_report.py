"""``runmeter report --html report.html``: one self-contained file, offline, no CDN.

Charts are inline SVG drawn here (no script libraries), beside tables with the
exact figures of the same named queries the CLI prints. Every figure carries a
``data-field`` attribute so a browser test can read it back.
"""

from __future__ import annotations

import html
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runmeter.reports import Filters, run_query

__all__ = ["render_html", "write_html"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1280px;color:#1b1f24;padding:0 1rem}
.scroll{overflow-x:auto}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.sub{color:#666} table{border-collapse:collapse;width:100%;margin:.6rem 0} th,td{padding:.3rem .5rem;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#f6f8fa;font-weight:600} .note{color:#666;font-size:.9em}
.kpis{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0} .kpi{border:1px solid #e3e3e3;border-radius:8px;padding:.7rem 1rem;min-width:10rem}
.kpi b{display:block;font-size:1.4rem} svg text{font-size:11px;fill:#333}
"""
_COLORS = ["#2f6fde", "#e07b39", "#3aa76d", "#c94c4c", "#8d6cc9", "#5bb3c4", "#b5a33a", "#999"]
_OUTCOME_COLORS = {"Accepted": "#3aa76d", "Rejected": "#c94c4c", "Abandoned": "#e0a339", "Failed": "#8d6cc9", "Unknown": "#aaa"}


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _usd(v: Any) -> str:
    return "—" if v is None else f"${float(v):,.6f}".rstrip("0").rstrip(".") if float(v) else "$0"


def _bars(items: list[tuple[str, float]], width: int = 640, unit: str = "$") -> str:
    """A horizontal bar chart."""
    if not items:
        return '<p class="note">no data</p>'
    top = max(v for _, v in items) or 1.0
    row = 24
    h = row * len(items) + 8
    parts = [f'<svg role="img" width="{width}" height="{h}" viewBox="0 0 {width} {h}">']
    for i, (label, v) in enumerate(items):
        w = max(1.0, (width - 260) * v / top)
        y = 4 + i * row
        parts.append(f'<text x="0" y="{y + 15}">{_e(label)[:28]}</text>')
        parts.append(f'<rect x="190" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="{_COLORS[i % len(_COLORS)]}"/>')
        parts.append(f'<text x="{196 + w:.1f}" y="{y + 15}">{unit}{v:,.4f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _stacked(rows: list[dict[str, Any]], width: int = 640) -> str:
    """Outcomes per run name, as stacked bars."""
    if not rows:
        return '<p class="note">no data</p>'
    row = 24
    h = row * len(rows) + 30
    parts = [f'<svg role="img" width="{width}" height="{h}" viewBox="0 0 {width} {h}">']
    for i, r in enumerate(rows):
        y = 4 + i * row
        total = r["Runs"] or 1
        x = 190.0
        parts.append(f'<text x="0" y="{y + 15}">{_e(r["Group"])[:28]}</text>')
        for key, color in _OUTCOME_COLORS.items():
            n = r.get(key, 0) or 0
            w = (width - 200) * n / total
            if n:
                parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="{color}"><title>{key}: {n}</title></rect>')
            x += w
    lx = 190
    for key, color in _OUTCOME_COLORS.items():
        parts.append(f'<rect x="{lx}" y="{h - 18}" width="10" height="10" fill="{color}"/><text x="{lx + 14}" y="{h - 9}">{key}</text>')
        lx += 90
    parts.append("</svg>")
    return "".join(parts)


def _columns(series: dict[str, dict[str, float]], width: int = 640, height: int = 220) -> str:
    """Spend over time: stacked columns per day, one color per model."""
    if not series:
        return '<p class="note">no data</p>'
    buckets = sorted({b for s in series.values() for b in s})
    totals = [sum(s.get(b, 0.0) for s in series.values()) for b in buckets]
    top = max(totals) or 1.0
    colw = max(6.0, (width - 60) / max(1, len(buckets)) - 4)
    parts = [f'<svg role="img" width="{width}" height="{height + 40}" viewBox="0 0 {width} {height + 40}">']
    for i, b in enumerate(buckets):
        x = 50 + i * (colw + 4)
        y = float(height)
        for j, (name, s) in enumerate(sorted(series.items())):
            v = s.get(b, 0.0)
            hgt = height * v / top
            y -= hgt
            if v:
                parts.append(f'<rect data-field="spend.{_e(name)}.{_e(b)}" data-value="{v:.6f}" x="{x:.1f}" y="{y:.1f}" width="{colw:.1f}" '
                             f'height="{hgt:.1f}" fill="{_COLORS[j % len(_COLORS)]}"><title>{_e(name)} {_e(b)}: ${v:.6f}</title></rect>')
        parts.append(f'<text x="{x:.1f}" y="{height + 14}">{_e(b)[5:10]}</text>')
    parts.append(f'<text x="0" y="12">${top:,.4f}</text>')
    lx = 50
    for j, name in enumerate(sorted(series)):
        parts.append(f'<rect x="{lx}" y="{height + 24}" width="10" height="10" fill="{_COLORS[j % len(_COLORS)]}"/><text x="{lx + 14}" y="{height + 33}">{_e(name)[:20]}</text>')
        lx += 140
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[dict[str, Any]], section: str, money: tuple[str, ...] = ()) -> str:
    if not rows:
        return '<p class="note">none</p>'
    cols = list(rows[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for i, r in enumerate(rows):
        cells = []
        for c in cols:
            v = r[c]
            shown = _usd(v) if c in money else ("—" if v is None else f"{v:,.4g}" if isinstance(v, float) else _e(v))
            raw = "" if v is None else _e(v)
            cells.append(f'<td data-field="{section}.{i}.{_e(c)}" data-value="{raw}">{shown}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class=\"scroll\"><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def render_html(data: dict[str, list[dict[str, Any]]], filters: Filters) -> str:
    by_model = data["by_model"]
    by_name = data["by_name"]
    total = sum(float(r["TotalCostUsd"] or 0) for r in by_name)
    accepted = sum(int(r["Accepted"] or 0) for r in by_name)
    runs = sum(int(r["Runs"] or 0) for r in by_name)
    series: dict[str, dict[str, float]] = defaultdict(dict)
    for r in data["spend"]:
        series[r["Group"]][str(r["Bucket"])[:10]] = float(r["PricedUsd"] or 0) + float(r["EstimatedUsd"] or 0)
    per_accepted = [(r["Group"], float(r["CostPerAcceptedRun"])) for r in by_model if r["CostPerAcceptedRun"] is not None]
    loops_cost = [(f'{r["Name"]} · {r["Kind"]}', float(r["WastedUsd"] or 0)) for r in data["loops"][:12]]
    money = ("TotalCostUsd", "CostPerAcceptedRun", "CostPerAcceptedTask", "MedianRunCostUsd", "P90RunCostUsd",
             "CostUsd", "RunCostUsd", "WastedUsd", "CostOfRunsUsd", "SavedUsdEstimate")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>runmeter report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>What your agent runs really cost</h1>
<p class="sub">runmeter report · runs since {_e(filters.since.strftime('%Y-%m-%d %H:%M'))} UTC · generated {generated}</p>
<div class="kpis">
<div class="kpi">Total spend<b data-field="kpi.total_cost" data-value="{total:.6f}">{_usd(total)}</b></div>
<div class="kpi">Runs<b data-field="kpi.runs" data-value="{runs}">{runs:,}</b></div>
<div class="kpi">Accepted runs<b data-field="kpi.accepted" data-value="{accepted}">{accepted:,}</b></div>
<div class="kpi">Cost per accepted run<b data-field="kpi.cost_per_accepted" data-value="{'' if not accepted else f'{total / accepted:.6f}'}">{_usd(total / accepted) if accepted else '—'}</b></div>
</div>
<p class="note">Cost per accepted run = all spend (rejected, abandoned and failed runs included) ÷ accepted runs.</p>
<h2>Spend over time, by model</h2>{_columns(series)}
<h2>Cost per accepted run, by model</h2>{_bars(per_accepted)}{_table(by_model, "by_model", money)}
<h2>Outcomes, by run name</h2>{_stacked(by_name)}{_table(by_name, "by_name", money)}
<h2>Loops: runs that kept working past the point of value</h2>{_bars(loops_cost)}
<p class="note">Wasted spend is measured for identical LLM inputs and estimated for tool repeats (WasteIsEstimate = 1).</p>
{_table(data["loops"], "loops", money)}
<h2>Budgets</h2><p class="note">SavedUsdEstimate is an estimate: a stopped run, had it made as many LLM calls as same-named runs that were not stopped, at its cost per call so far.</p>
{_table(data["budgets"], "budgets", money)}
<h2>Most expensive runs</h2>{_table(data["expensive"], "expensive", money)}
</body></html>
"""


def collect(client: Any, filters: Filters) -> dict[str, list[dict[str, Any]]]:
    return {
        "by_model": run_query(client, "cost_per_accepted_run", filters, group="model"),
        "by_name": run_query(client, "cost_per_accepted_run", filters, group="name"),
        "spend": run_query(client, "spend_over_time", filters, group="model", bucket="day"),
        "loops": run_query(client, "loops", filters),
        "budgets": run_query(client, "budgets", filters),
        "expensive": run_query(client, "expensive_runs", filters, limit=10),
    }


def write_html(client: Any, filters: Filters, path: Path) -> dict[str, list[dict[str, Any]]]:
    data = collect(client, filters)
    Path(path).write_text(render_html(data, filters), encoding="utf-8")
    return data
