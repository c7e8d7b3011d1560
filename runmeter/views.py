"""The pieces every page is made of, for ``runmeter ui`` and the static HTML report alike.

Plain HTML strings, inline SVG charts and one stylesheet; no script library, nothing fetched
from the network. Every figure carries ``data-field`` (what it is) and ``data-value`` (the
exact number, where the text shows it rounded for reading), so a browser test can read the
numbers back and compare them with the queries.
"""

from __future__ import annotations

import colorsys
import html
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Sequence

from runmeter.reports import BUCKETS

__all__ = [
    "CSS", "DEFINITIONS", "Column", "Palette", "bars", "duration", "exact", "kpis", "outcome_bars", "pricing_badge",
    "short_id_cell", "signal_text",
    "spend_columns", "table", "usd",
]

CSS = """
:root{--fg:#1b1f24;--muted:#5f6670;--line:#e4e7eb;--head:#f6f8fa;--accent:#2f6fde}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;margin:0;color:var(--fg)}
main{max-width:1400px;margin:0 auto;padding:1rem 1.25rem 3rem}
nav.top{display:flex;gap:1.2rem;align-items:baseline;padding:.6rem 1.25rem;border-bottom:1px solid var(--line);background:#fbfcfd}
nav.top b{margin-right:1rem} nav.top a{color:var(--fg);text-decoration:none} nav.top a.on{color:var(--accent);font-weight:600}
h1{font-size:1.5rem;margin:.6rem 0 .2rem} h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid var(--line);padding-bottom:.3rem}
a{color:var(--accent)} .sub,.note{color:var(--muted)} .note{font-size:.9em}
table{border-collapse:collapse;margin:.6rem 0;width:100%}
th,td{padding:.3rem .45rem;border-bottom:1px solid var(--line);text-align:right;vertical-align:top}
td{white-space:nowrap} th{background:var(--head);font-weight:600;font-size:.88em;overflow-wrap:normal;word-break:normal;hyphens:none;vertical-align:bottom}
th.text,td.text{text-align:left} td.name{max-width:18em;overflow:hidden;text-overflow:ellipsis}
th a{color:inherit;text-decoration:none} th a.sorted{color:var(--accent)}
.fit{max-width:100%;overflow-x:auto}
.kpis{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.kpi{border:1px solid var(--line);border-radius:8px;padding:.7rem 1rem;min-width:11rem}
.kpi b{display:block;font-size:1.45rem}
abbr.def{text-decoration:none;border-bottom:1px dotted var(--muted);cursor:help}
.badge{display:inline-block;border-radius:4px;padding:0 .35rem;font-size:.85em;background:#eef1f4;color:#333}
.badge.estimated{background:#fff4d6} .badge.partially_priced{background:#ffe3c2} .badge.unpriced{background:#fbd9d9}
.badge.loop{background:#fbd9d9} .badge.stop{background:#e9defa} .badge.incomplete{background:#e8e8e8}
.outcome-accepted{color:#217a4b} .outcome-rejected{color:#b03030} .outcome-abandoned{color:#a86d00} .outcome-failed{color:#6b46b0}
code,.id{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:.92em}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end;margin:.8rem 0}
form.filters label{display:flex;flex-direction:column;font-size:.85em;color:var(--muted)}
form.filters input,form.filters select{font:inherit;padding:.2rem .3rem;min-width:7rem}
form.filters label.check{flex-direction:row;align-items:center;gap:.35rem;color:var(--fg);padding-bottom:.25rem}
form.filters input[type=checkbox]{min-width:0;margin:0} form.filters button{font:inherit;padding:.2rem .8rem}
.pager{display:flex;gap:1rem;align-items:center;margin:.5rem 0}
.tree{list-style:none;padding-left:1.2rem;margin:.2rem 0} .tree>li{margin:.15rem 0}
ul.tree.root{padding-left:0}
.node{display:inline-flex;gap:.8rem;flex-wrap:wrap;align-items:baseline}
.node .kind{font-size:.8em;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.signal{margin:.1rem 0 .1rem 1.2rem;color:#8a1f1f;font-size:.92em}
svg text{font-size:11px;fill:#333} svg .axis{stroke:#ccc}
.legend{display:flex;flex-wrap:wrap;gap:.3rem 1rem;font-size:.9em;margin:.3rem 0}
.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:-.05em}
.events li{margin:.15rem 0}
"""

# The definitions one hover away, the same on every page.
DEFINITIONS = {
    "spend": "Every priced LLM call of the runs that started in the period, rejected, abandoned and failed runs "
             "included. Unpriced calls are counted, never added as $0.",
    "runs": "Top-level runs that started in the period (sub-runs are part of their parent).",
    "accepted": "Runs whose final outcome is accepted (the latest outcome wins: a later review overrides the run).",
    "cost_per_accepted_run": "All spend in the period (rejected, abandoned and failed runs included) ÷ accepted runs.",
    "cost_per_accepted_task": "All spend ÷ tasks with at least one accepted run (retries of one task count once).",
    "abandoned": "A run with no outcome that ended more than the abandoned_after_s setting ago.",
    "estimated": "Tokens were estimated where the provider reported none; the cost is an estimate.",
    "unpriced": "No price is known for the model (or the usage was invalid): the call is counted, its cost is not.",
}

_BASE_COLOURS = ["#2f6fde", "#e07b39", "#3aa76d", "#c94c4c", "#8d6cc9", "#3fa9bd", "#b5a33a", "#d264a8", "#6b7a8f", "#7a5230"]
OUTCOME_COLOURS = {"accepted": "#3aa76d", "rejected": "#c94c4c", "abandoned": "#e0a339", "failed": "#8d6cc9", "unknown": "#aaa"}


def e(value: Any) -> str:
    """HTML-escaped text; None is empty."""
    return html.escape("" if value is None else str(value))


def exact(value: Any) -> str:
    """A number as the data carries it (no rounding, never ``7.5e-05``), for ``data-value``."""
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        text = f"{value:.12f}".rstrip("0").rstrip(".")
        return text if text not in ("", "-0") else "0"
    return str(value)


def usd(value: Any) -> str:
    """Dollars rounded for reading: $1,234.56, $0.50, $0.022, $0.00077 (cents from a dime up, two
    significant digits below), $0; never scientific notation. The exact figure belongs in ``data-value`` or ``--json``."""
    if value is None:
        return "—"
    v = float(value)
    if not math.isfinite(v):
        return "—"
    if v == 0:
        return "$0"
    sign, a = ("-" if v < 0 else ""), abs(v)
    if a >= 0.1:
        return f"{sign}${a:,.2f}"
    digits = -math.floor(math.log10(a)) + 1  # two significant digits
    return f"{sign}${a:.{digits}f}".rstrip("0").rstrip(".")


def duration(seconds: float) -> str:
    """A wall-clock time for reading: 48 ms, 3.2 s, 1,204 s."""
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:,.1f} s"


class Palette:
    """One colour per name, the same on every chart of a page: names are coloured in sorted order
    (ten distinct colours, then evenly spread hues), so a model keeps its colour wherever it appears."""

    def __init__(self, names: Iterable[str]) -> None:
        self._colours: dict[str, str] = {}
        for i, name in enumerate(sorted(set(names))):
            if i < len(_BASE_COLOURS):
                self._colours[name] = _BASE_COLOURS[i]
            else:
                r, g, b = colorsys.hls_to_rgb((i * 0.618034) % 1.0, 0.5, 0.55)
                self._colours[name] = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"

    def __call__(self, name: str) -> str:
        return self._colours.get(name, "#999")

    def legend(self, names: Iterable[str]) -> str:
        items = "".join(f'<span><i style="background:{self(n)}"></i>{e(n or "(none)")}</span>' for n in names)
        return f'<div class="legend">{items}</div>'


def define(label: str, key: str) -> str:
    """A label whose definition shows on hover."""
    return f'<abbr class="def" title="{e(DEFINITIONS[key])}">{e(label)}</abbr>'


def kpis(total: float, runs: int, accepted: int, unpriced_calls: int = 0) -> str:
    """The four headline figures of a period, each with its definition."""
    cpa = total / accepted if accepted else None
    extra = f'<p class="note">{unpriced_calls} LLM calls unpriced: not in the spend ({define("why?", "unpriced")}).</p>' if unpriced_calls else ""
    return (
        '<div class="kpis">'
        f'<div class="kpi">{define("Spend", "spend")}<b data-field="kpi.total_cost" data-value="{exact(round(total, 6))}">{usd(total)}</b></div>'
        f'<div class="kpi">{define("Runs", "runs")}<b data-field="kpi.runs" data-value="{runs}">{runs:,}</b></div>'
        f'<div class="kpi">{define("Accepted runs", "accepted")}<b data-field="kpi.accepted" data-value="{accepted}">{accepted:,}</b></div>'
        f'<div class="kpi">{define("Cost per accepted run", "cost_per_accepted_run")}'
        f'<b data-field="kpi.cost_per_accepted" data-value="{exact(None if cpa is None else round(cpa, 6))}">{usd(cpa)}</b></div>'
        f"</div>{extra}"
    )


def signal_text(s: dict[str, Any]) -> str:
    """A run_signals row in words (plain text): "loop: identical_tool_call — search#q × 4",
    "budget max_cost_usd: 0.41 over 0.35 (stopped)"."""
    if s["Signal"] == "loop":
        return f'loop: {s["Kind"]} — {s["Key"]} × {s["Count"]}'
    action = "stopped" if s["Action"] == "stop" else "warned"
    return f'budget {s["Kind"]}: {exact(s["Value"])} over {exact(s["Threshold"])} ({action})'


def pricing_badge(row: dict[str, Any]) -> str:
    """The state of a run's or call's number: nothing for priced, else a badge with its definition."""
    state = row.get("Pricing") or ""
    out = ""
    if state in ("estimated", "partially_priced", "unpriced"):
        key = "estimated" if state == "estimated" else "unpriced"
        out += f'<span class="badge {state}" title="{e(DEFINITIONS[key])}">{e(state.replace("_", " "))}</span>'
    if row.get("Incomplete"):
        out += ' <span class="badge incomplete" title="Some of the run\'s spans never arrived.">incomplete</span>'
    return out


def short_id_cell(run_id: str, short: str, href: str | None) -> str:
    inner = f'<span class="id" title="{e(run_id)}">{e(short)}</span>'
    return f'<a href="{e(href)}">{inner}</a>' if href else inner


@dataclass(frozen=True)
class Column:
    """A table column: the row key, its header, how to show a value, and how it aligns."""

    key: str
    label: str
    kind: str = "text"  # text | name | money | int | float | seconds | time | html
    title: str = ""
    sort: str = ""  # the RUN_SORTS column this header sorts by, if any
    render: Callable[[dict[str, Any]], str] | None = None


def _cell(col: Column, row: dict[str, Any]) -> tuple[str, str]:
    v = row.get(col.key)
    if col.render is not None:  # shown as the renderer draws it; the exact value stays in data-value
        return col.render(row), (e(v) if isinstance(v, str) else exact(v))
    if col.kind == "money":
        return usd(v), exact(v)
    if v is None:
        return "—", ""
    if col.kind == "int":
        return f"{int(v):,}", exact(v)
    if col.kind == "float":
        return f"{float(v):,.2f}", exact(v)
    if col.kind == "seconds":
        return duration(float(v)), exact(v)
    if col.kind == "time":
        return (v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else e(v)), e(v)
    return e(v), e(v)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], section: str, *,
          sort_link: Callable[[str], str] | None = None, sorted_by: str = "", empty: str = "none") -> str:
    """A table whose every cell has ``data-field="section.row.key"`` and the exact ``data-value``.
    Values never wrap; headers wrap between words only; long names are cut with an ellipsis
    (the whole name on hover)."""
    if not rows:
        return f'<p class="note">{e(empty)}</p>'
    head = []
    for c in columns:
        align = "text" if c.kind in ("text", "name", "html", "time") else ""
        label = e(c.label)
        if c.title:
            label = f'<abbr class="def" title="{e(c.title)}">{label}</abbr>'
        if c.sort and sort_link is not None:
            label = f'<a class="{"sorted" if c.sort == sorted_by else ""}" href="{e(sort_link(c.sort))}">{label}</a>'
        head.append(f'<th class="{align}">{label}</th>')
    body = []
    for i, r in enumerate(rows):
        cells = []
        for c in columns:
            shown, raw = _cell(c, r)
            cls = {"text": "text", "html": "text", "time": "text", "name": "text name"}.get(c.kind, "")
            tip = f' title="{e(r.get(c.key))}"' if c.kind == "name" else ""
            cells.append(f'<td class="{cls}" data-field="{e(section)}.{i}.{e(c.key)}" data-value="{raw}"{tip}>{shown}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="fit"><table data-table="{e(section)}"><thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def bars(items: Sequence[tuple[str, float]], colour: Callable[[str], str], field: str, width: int = 720) -> str:
    """Horizontal bars, one per (label, dollars), coloured by label."""
    if not items:
        return '<p class="note">no data</p>'
    top = max(v for _, v in items) or 1.0
    row, label_w = 24, 200
    h = row * len(items) + 8
    parts = [f'<svg role="img" width="{width}" height="{h}" viewBox="0 0 {width} {h}">']
    for i, (label, v) in enumerate(items):
        w = max(1.0, (width - label_w - 90) * v / top)
        y = 4 + i * row
        parts.append(f'<text x="0" y="{y + 15}"><title>{e(label)}</title>{e(_clip(label, 30))}</text>')
        parts.append(f'<rect data-field="{e(field)}.{e(label)}" data-value="{exact(v)}" x="{label_w}" y="{y + 3}" width="{w:.1f}" '
                     f'height="{row - 8}" fill="{colour(label)}"><title>{e(label)}: {usd(v)}</title></rect>')
        parts.append(f'<text x="{label_w + 6 + w:.1f}" y="{y + 15}">{usd(v)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def outcome_bars(rows: Sequence[dict[str, Any]], width: int = 720) -> str:
    """Outcomes per group (cost_per_accepted_run rows) as stacked bars."""
    if not rows:
        return '<p class="note">no data</p>'
    row, label_w = 24, 200
    h = row * len(rows) + 8
    parts = [f'<svg role="img" width="{width}" height="{h}" viewBox="0 0 {width} {h}">']
    for i, r in enumerate(rows):
        y = 4 + i * row
        total = r["Runs"] or 1
        x = float(label_w)
        parts.append(f'<text x="0" y="{y + 15}"><title>{e(r["Group"])}</title>{e(_clip(str(r["Group"]), 30))}</text>')
        for key, colour in OUTCOME_COLOURS.items():
            n = r.get(key.capitalize(), 0) or 0
            w = (width - label_w - 10) * n / total
            if n:
                parts.append(f'<rect data-field="outcomes.{e(r["Group"])}.{key}" data-value="{n}" x="{x:.1f}" y="{y + 3}" '
                             f'width="{w:.1f}" height="{row - 8}" fill="{colour}"><title>{key}: {n}</title></rect>')
            x += w
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{c}"></i>{k}</span>' for k, c in OUTCOME_COLOURS.items())
    return "".join(parts) + f'<div class="legend">{legend}</div>'


_TICK = {"second": "%H:%M:%S", "10s": "%H:%M:%S", "minute": "%H:%M", "hour": "%m-%d %H:00", "day": "%m-%d", "week": "%Y-%m-%d"}


def spend_columns(rows: Sequence[dict[str, Any]], bucket: str, palette: Palette, width: int = 1000, height: int = 220) -> str:
    """Spend over time (spend_over_time rows): a stacked column per bucket, one colour per group;
    empty buckets between the first and the last are shown empty, not left out."""
    if not rows:
        return '<p class="note">no spend in this period</p>'
    series: dict[datetime, dict[str, float]] = {}
    for r in rows:
        v = float(r["PricedUsd"] or 0) + float(r["EstimatedUsd"] or 0)
        series.setdefault(r["Bucket"], {})[str(r["Group"])] = series.get(r["Bucket"], {}).get(str(r["Group"]), 0.0) + v
    buckets = _fill(sorted(series), bucket)
    groups = sorted({g for s in series.values() for g in s})
    totals = [sum(series.get(b, {}).values()) for b in buckets]
    top = max(totals) or 1.0
    left = 64
    step = (width - left - 10) / len(buckets)
    colw = min(48.0, max(2.0, step * 0.8))
    parts = [f'<svg role="img" width="{width}" height="{height + 24}" viewBox="0 0 {width} {height + 24}">',
             f'<line class="axis" x1="{left - 4}" y1="{height}" x2="{width}" y2="{height}"/>',
             f'<text x="0" y="12">{usd(top)}</text><text x="0" y="{height}">$0</text>']
    label_every = max(1, math.ceil(len(buckets) / 12))
    for i, b in enumerate(buckets):
        x = left + i * step
        y = float(height)
        for g in groups:
            v = series.get(b, {}).get(g, 0.0)
            if not v:
                continue
            hgt = (height - 16) * v / top
            y -= hgt
            parts.append(f'<rect data-field="spend.{e(g)}.{b.isoformat()}" data-value="{exact(round(v, 9))}" x="{x:.1f}" y="{y:.1f}" '
                         f'width="{colw:.1f}" height="{max(hgt, 0.5):.1f}" fill="{palette(g)}"><title>{e(g)} · {e(b.strftime(_TICK[bucket]))}: {usd(v)}</title></rect>')
        if i % label_every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height + 14}">{e(b.strftime(_TICK[bucket]))}</text>')
    parts.append("</svg>")
    total = sum(totals)
    return ("".join(parts) + palette.legend(groups)
            + f'<p class="note">Per {bucket}; the columns add up to <span data-field="spend.total" data-value="{exact(round(total, 6))}">{usd(total)}</span>.</p>')


def _fill(buckets: list[datetime], bucket: str, limit: int = 400) -> list[datetime]:
    if not buckets:
        return buckets
    step: timedelta = BUCKETS[bucket]
    out = [buckets[0]]
    while out[-1] < buckets[-1] and len(out) < limit:
        out.append(out[-1] + step)
    return sorted(set(out) | set(buckets))


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


LIMIT_COLUMNS = (
    Column("Limit", "Limit", "name"),
    Column("Value", "For", "name"),
    Column("Per", "Per", "text"),
    Column("MaxUsd", "Max", "money"),
    Column("SpentUsd", "Spent", "money", "LLM calls stored since the period began (UTC), every process"),
    Column("HeadroomUsd", "Headroom", "money"),
    Column("Action", "Action", "text"),
)
GROUP_COLUMNS = (
    Column("Group", "Group", "name"),
    Column("Runs", "Runs", "int", DEFINITIONS["runs"]),
    Column("TotalCostUsd", "Spend", "money", DEFINITIONS["spend"]),
    Column("Accepted", "Accepted", "int", DEFINITIONS["accepted"]),
    Column("Rejected", "Rejected", "int"),
    Column("Abandoned", "Abandoned", "int", DEFINITIONS["abandoned"]),
    Column("Failed", "Failed", "int"),
    Column("Unknown", "No outcome yet", "int"),
    Column("CostPerAcceptedRun", "Cost per accepted run", "money", DEFINITIONS["cost_per_accepted_run"]),
    Column("Tasks", "Tasks", "int"),
    Column("AcceptedTasks", "Accepted tasks", "int"),
    Column("CostPerAcceptedTask", "Cost per accepted task", "money", DEFINITIONS["cost_per_accepted_task"]),
    Column("MedianRunCostUsd", "Median run", "money"),
    Column("P90RunCostUsd", "p90 run", "money"),
    Column("MeanLlmCalls", "LLM calls per run", "float"),
    Column("MeanToolCalls", "Tool calls per run", "float"),
    Column("UnpricedCalls", "Unpriced calls", "int", DEFINITIONS["unpriced"]),
)


def runs_columns(short: dict[str, str], href: Callable[[str], str | None]) -> tuple[Column, ...]:
    """The columns of a run list (runs_page or expensive_runs rows)."""

    def run_id(r: dict[str, Any]) -> str:
        return short_id_cell(r["RunId"], short.get(r["RunId"], r["RunId"]), href(r["RunId"]))

    def cost(r: dict[str, Any]) -> str:
        shown = "—" if r["Pricing"] == "unpriced" else usd(r["CostUsd"])
        return f'<span data-value="{exact(r["CostUsd"])}">{shown}</span> {pricing_badge(r)}'

    def outcome(r: dict[str, Any]) -> str:
        return f'<span class="outcome-{e(r["Outcome"])}">{e(r["Outcome"])}</span>'

    def flags(r: dict[str, Any]) -> str:
        out = []
        if r.get("LoopSignals"):
            out.append(f'<span class="badge loop" title="repeated tool calls, context reads or LLM inputs">loop ×{int(r["LoopSignals"])}</span>')
        if r.get("Stopped"):
            out.append('<span class="badge stop" title="stopped by its budget">budget stop</span>')
        elif r.get("Breaches"):
            out.append('<span class="badge stop" title="went over a budget limit (warned)">over budget</span>')
        return " ".join(out)

    return (
        Column("RunId", "Run", "html", "A short id: `runmeter run <id>` accepts it.", render=run_id),
        Column("Name", "Name", "name", sort="Name"),
        Column("Owner", "Owner", "name", sort="Owner"),
        Column("Project", "Project", "name", sort="Project"),
        Column("Model", "Model", "name", "The model with the most spend in the run.", sort="Model"),
        Column("Outcome", "Outcome", "html", DEFINITIONS["abandoned"], sort="Outcome", render=outcome),
        Column("CostUsd", "Cost", "html", DEFINITIONS["spend"], sort="CostUsd", render=cost),
        Column("LlmCalls", "LLM calls", "int", sort="LlmCalls"),
        Column("ToolCalls", "Tool calls", "int", sort="ToolCalls"),
        Column("WallClockS", "Wall clock", "seconds", sort="WallClockS"),
        Column("StartTime", "Started (UTC)", "time", sort="StartTime"),
        Column("Flags", "Signals", "html", render=flags),
    )


BAKEOFF_COLUMNS = (
    Column("Model", "Model", "name"),
    Column("PromptSize", "Prompt size", "text"),
    Column("Calls", "Calls", "int"),
    Column("MedianInputTokens", "Median input tokens", "int"),
    Column("MedianOutputTokens", "Median output tokens", "int"),
    Column("CostPerCallUsd", "Cost per call", "money"),
    Column("CostUsd", "Spend", "money"),
    Column("Runs", "Runs served", "int"),
    Column("AcceptedRuns", "Accepted runs", "int"),
    Column("AcceptanceRate", "Acceptance rate", "float", "Accepted runs ÷ runs these calls served."),
)

PROJECTION_COLUMNS = (
    Column("PromptSize", "Prompt size", "text"),
    Column("Calls", "Calls", "int"),
    Column("ActualUsd", "Spend today", "money"),
    Column("ProjectedUsd", "On the other model", "money", "Each call priced at the other model's measured cost per call in the same bucket."),
    Column("ChangeUsd", "Change", "money"),
    Column("TargetSamples", "Calls measured on the other model", "int"),
)


def model_totals(bakeoff: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model, over all prompt sizes: calls, spend, runs served and the acceptance rate."""
    out: dict[str, dict[str, Any]] = {}
    for r in bakeoff:
        t = out.setdefault(r["Model"], {"Model": r["Model"], "Calls": 0, "CostUsd": 0.0, "Runs": 0, "AcceptedRuns": 0})
        t["Calls"] += r["Calls"]
        t["CostUsd"] += float(r["CostUsd"] or 0)
        t["Runs"] += r["Runs"]
        t["AcceptedRuns"] += r["AcceptedRuns"]
    for t in out.values():
        t["CostUsd"] = round(t["CostUsd"], 6)
        t["CostPerCallUsd"] = round(t["CostUsd"] / t["Calls"], 8) if t["Calls"] else None
    return list(out.values())


MODEL_TOTAL_COLUMNS = (
    Column("Model", "Model", "name"),
    Column("Calls", "Calls", "int"),
    Column("CostUsd", "Spend", "money"),
    Column("CostPerCallUsd", "Cost per call", "money"),
    Column("Runs", "Runs served (per size)", "int", "Runs served, summed over the prompt-size buckets (a run with calls of two sizes counts in both)."),
    Column("AcceptedRuns", "Accepted (per size)", "int"),
)


def compare_section(bakeoff: Sequence[dict[str, Any]], projection: Sequence[dict[str, Any]], models: Sequence[str],
                    small_below: int, large_above: int, palette: Palette) -> str:
    """The model bake-off by prompt size, with totals, acceptance rates and the projected spend
    of moving the first model's traffic to the second."""
    if not bakeoff:
        return '<p class="note">no LLM calls to these models in the period</p>'
    by_cost = [(r["Model"] + " · " + r["PromptSize"], float(r["CostPerCallUsd"] or 0)) for r in bakeoff]
    size_note = f"Prompt size by input tokens: small &lt; {small_below:,} ≤ medium ≤ {large_above:,} &lt; large."
    parts = [f'<p class="note">{size_note}</p>', palette.legend(models),
             bars(by_cost, lambda label: palette(label.rsplit(" · ", 1)[0]), "bakeoff.cost_per_call"),
             table(model_totals(bakeoff), MODEL_TOTAL_COLUMNS, "model_totals"),
             table(bakeoff, BAKEOFF_COLUMNS, "bakeoff")]
    if len(models) >= 2:
        parts.append(f"<h3>If {e(models[0])}'s traffic moved to {e(models[1])}</h3>")
        parts.append(table(projection, PROJECTION_COLUMNS, "projection", empty="no prompt sizes in common to project"))
    return "".join(parts)
