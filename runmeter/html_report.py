"""``runmeter report --html report.html``: one self-contained file, offline, no CDN.

Made of the same components as ``runmeter ui`` (:mod:`runmeter.views`) over the same named
queries the CLI prints: inline SVG charts beside tables, dollars rounded for reading with the
exact figure in each cell's ``data-value``, one colour per model on every chart.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runmeter import views
from runmeter.reports import Filters, project_spend, run_query, short_ids, spend_series

__all__ = ["collect", "render_html", "write_html"]

COMPARE_MODELS = 4  # the bake-off compares the models with the most spend in the period
SMALL_BELOW, LARGE_ABOVE = 1_000, 10_000


def collect(client: Any, filters: Filters) -> dict[str, Any]:
    by_model = run_query(client, "cost_per_accepted_run", filters, group="model")
    bucket, spend = spend_series(client, filters, group="model")
    models = [r["Group"] for r in by_model if r["Group"]][:COMPARE_MODELS]
    bakeoff = run_query(client, "bakeoff", filters, models=models, small_below=SMALL_BELOW, large_above=LARGE_ABOVE) if models else []
    return {
        "by_model": by_model,
        "by_name": run_query(client, "cost_per_accepted_run", filters, group="name"),
        "bucket": bucket,
        "spend": spend,
        "loops": run_query(client, "loops", filters),
        "budgets": run_query(client, "budgets", filters),
        "expensive": run_query(client, "expensive_runs", filters, limit=10),
        "compare_models": models,
        "bakeoff": bakeoff,
        "projection": project_spend(bakeoff, models[0], models[1]) if len(models) >= 2 else [],
    }


_LOOP_COLUMNS = (
    views.Column("RunId", "Run", "name"), views.Column("Name", "Name", "name"), views.Column("Owner", "Owner", "name"),
    views.Column("Kind", "Signal", "text"), views.Column("Key", "Repeated", "name"), views.Column("Count", "Times", "int"),
    views.Column("RunCostUsd", "Run cost", "money"),
    views.Column("WastedUsd", "Spent on repeats", "money", "Measured for identical LLM inputs; estimated for tool repeats."),
    views.Column("WasteIsEstimate", "Estimate?", "int"),
)
_BUDGET_COLUMNS = (
    views.Column("Limit", "Limit", "text"), views.Column("Action", "Action", "text"), views.Column("Breaches", "Breaches", "int"),
    views.Column("Runs", "Runs", "int"), views.Column("CostOfRunsUsd", "Cost of those runs", "money"),
    views.Column("SavedUsdEstimate", "Saved (estimate)", "money",
                 "A stopped run, had it made as many LLM calls as same-named runs that were not stopped, at its cost per call so far."),
)


def render_html(data: dict[str, Any], filters: Filters) -> str:
    by_model, by_name = data["by_model"], data["by_name"]
    total = sum(float(r["TotalCostUsd"] or 0) for r in by_name)
    accepted = sum(int(r["Accepted"] or 0) for r in by_name)
    runs = sum(int(r["Runs"] or 0) for r in by_name)
    unpriced = sum(int(r["UnpricedCalls"] or 0) for r in by_name)
    palette = views.Palette([r["Group"] for r in by_model] + [str(r["Group"]) for r in data["spend"]])
    per_accepted = [(r["Group"], float(r["CostPerAcceptedRun"])) for r in by_model if r["CostPerAcceptedRun"] is not None]
    loops_cost = [(f'{r["Name"]} · {r["Kind"]}', float(r["WastedUsd"] or 0)) for r in data["loops"][:12]]
    expensive = data["expensive"]
    short = short_ids([r["RunId"] for r in expensive])
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    e = views.e
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>runmeter report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{views.CSS}</style></head>
<body><main>
<h1>What your agent runs really cost</h1>
<p class="sub">runmeter report · runs since {e(filters.since.strftime('%Y-%m-%d %H:%M'))} UTC · generated {generated}</p>
{views.kpis(total, runs, accepted, unpriced)}
<p class="note">Cost per accepted run = all spend (rejected, abandoned and failed runs included) ÷ accepted runs.
Figures are rounded for reading; each cell holds the exact value (and <code>runmeter report --json</code> prints it).</p>
<h2>Spend over time, by model</h2>{views.spend_columns(data["spend"], data["bucket"], palette)}
<h2>Cost per accepted run, by model</h2>{views.bars(per_accepted, palette, "cost_per_accepted")}
{views.table(by_model, views.GROUP_COLUMNS, "by_model")}
<h2>Outcomes, by run name</h2>{views.outcome_bars(by_name)}{views.table(by_name, views.GROUP_COLUMNS, "by_name")}
<h2>Loops: runs that kept working past the point of value</h2>{views.bars(loops_cost, lambda _: "#c94c4c", "loops")}
{views.table(data["loops"], _LOOP_COLUMNS, "loops", empty="no loop signals")}
<h2>Budgets</h2>{views.table(data["budgets"], _BUDGET_COLUMNS, "budgets", empty="no budget breaches")}
<h2>Most expensive runs</h2>
{views.table(expensive, views.runs_columns(short, lambda _: None), "expensive", empty="no runs")}
<p class="note">Short run ids: <code>runmeter run &lt;id&gt;</code> accepts them.</p>
<h2>Compare models on your own traces</h2>
{views.compare_section(data["bakeoff"], data["projection"], data["compare_models"], SMALL_BELOW, LARGE_ABOVE, palette)}
</main></body></html>
"""


def write_html(client: Any, filters: Filters, path: Path) -> dict[str, Any]:
    data = collect(client, filters)
    Path(path).write_text(render_html(data, filters), encoding="utf-8")
    return data
