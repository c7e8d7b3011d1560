"""Report rows in a terminal: tables that fit its width, or every column as JSON or CSV.

A table shows the columns that fit, chosen by priority (``--wide``: all of them, wider than the
terminal if need be), dollars rounded for reading, short run ids that ``runmeter run`` resolves,
and whole lines (a run id stays copyable); piped or redirected, every column. JSON and CSV carry
every column, exact. The column sets of each report are here too.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runmeter import views
from runmeter.reports import plain, short_ids

__all__ = [
    "BAKEOFF_COLUMNS", "BUDGET_COLUMNS", "LIMIT_COLUMNS", "LOOP_COLUMNS", "NOTE_COST_PER_ACCEPTED_RUN", "NOTE_COST_PER_ACCEPTED_TASK",
    "PROJECTION_COLUMNS", "REPORT_COLUMNS", "RUNS_COLUMNS", "Col", "emit", "err", "out",
]

out = Console()
err = Console(stderr=True)


@dataclass(frozen=True)
class Col:
    """A terminal column: the row key, a short header, how to show it, and its priority (1: always
    shown; the highest numbers go first when the terminal is narrow)."""

    key: str
    header: str
    kind: str = "text"  # text | name | id | money | int | float | seconds | time
    priority: int = 1


def _cell(col: Col, v: Any, short: dict[str, str]) -> str:
    if v is None:
        return "—"
    if col.kind == "money":
        return views.usd(v)
    if col.kind == "id":
        return short.get(v, v)
    if col.kind == "int":
        return f"{int(v):,}"
    if col.kind == "float":
        return f"{float(v):,.2f}"
    if col.kind == "seconds":
        return views.duration(float(v))
    if col.kind == "time":
        return v.strftime("%m-%d %H:%M") if isinstance(v, datetime) else str(v)
    if isinstance(v, float):
        return views.exact(v)
    return str(v)


def _render(rows: list[dict[str, Any]], cols: tuple[Col, ...], title: str, short: dict[str, str]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for c in cols:
        right = c.kind in ("money", "int", "float", "seconds")
        table.add_column(c.header, justify="right" if right else "left", no_wrap=True,
                         overflow="ellipsis", max_width=28 if c.kind == "name" else None)
    for r in rows:
        table.add_row(*(escape(_cell(c, r.get(c.key), short)) for c in cols))
    return table


def emit(rows: list[dict[str, Any]], as_json: bool, as_csv: bool, title: str, empty: str,
          cols: tuple[Col, ...] = (), wide: bool = False, notes: tuple[str, ...] = ()) -> None:
    """JSON and CSV carry every column, exact. The terminal table shows the columns that fit the
    terminal's width, by priority (``--wide``: all of them), short run ids and readable dollars."""
    if as_json:
        sys.stdout.write(json.dumps(plain(rows), indent=2) + "\n")
        return
    if as_csv:
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow(plain(r))
        sys.stdout.write(buf.getvalue())
        return
    if not rows:
        out.print(f"[dim]{escape(empty)}[/]")
        return
    if not cols:
        cols = tuple(Col(k, k, "money" if k.endswith("Usd") else "text", i + 1) for i, k in enumerate(rows[0]))
    short = short_ids([r[c.key] for c in cols if c.kind == "id" for r in rows])
    shown = cols
    natural_width = out.width
    if out.is_terminal and not wide:
        while True:
            table = _render(rows, shown, title, short)
            need = out.measure(table, options=out.options.update_width(100_000)).maximum
            if need <= out.width or all(c.priority == 1 for c in shown):
                break
            worst = max(c.priority for c in shown)  # drop one column, the rightmost of the lowest priority
            drop = max(i for i, c in enumerate(shown) if c.priority == worst)
            shown = shown[:drop] + shown[drop + 1:]
    else:
        table = _render(rows, shown, title, short)
        natural_width = max(out.width, out.measure(table, options=out.options.update_width(100_000)).maximum)
    # Whole lines, never folded (a run id stays copyable): wider than the terminal only with --wide or a pipe.
    Console(file=out.file, width=natural_width, force_terminal=out.is_terminal, no_color=out.no_color).print(table)
    hidden = [c.header for c in cols if c not in shown]
    lines = list(notes)
    if hidden:
        lines.append(f"{len(hidden)} more column{'s' if len(hidden) > 1 else ''} ({', '.join(hidden)}): --wide shows them, --json gives every figure exact.")
    for line in lines:
        out.print(escape(line), style="dim", highlight=False)


NOTE_COST_PER_ACCEPTED_RUN = "Cost per accepted run: all spend (rejected, abandoned and failed runs included) ÷ accepted runs."
NOTE_COST_PER_ACCEPTED_TASK = "Cost per accepted task: all spend ÷ tasks with at least one accepted run (retries of a task count once)."
REPORT_COLUMNS = (
    Col("Group", "Group", "name", 1), Col("Runs", "Runs", "int", 1), Col("TotalCostUsd", "Spend", "money", 1),
    Col("Accepted", "Accepted", "int", 2), Col("CostPerAcceptedRun", "$/accepted run", "money", 1),
    Col("CostPerAcceptedTask", "$/accepted task", "money", 3), Col("Rejected", "Rejected", "int", 4),
    Col("Abandoned", "Abandoned", "int", 4), Col("Failed", "Failed", "int", 5), Col("Unknown", "No outcome", "int", 5),
    Col("MedianRunCostUsd", "Median run", "money", 6), Col("P90RunCostUsd", "p90 run", "money", 6),
    Col("MeanLlmCalls", "LLM calls/run", "float", 7), Col("MeanToolCalls", "Tools/run", "float", 7),
    Col("UnpricedCalls", "Unpriced calls", "int", 3),
)
RUNS_COLUMNS = (
    Col("RunId", "Run", "id", 1), Col("Name", "Name", "name", 1), Col("CostUsd", "Cost", "money", 1),
    Col("Outcome", "Outcome", "text", 1), Col("Pricing", "Priced", "text", 2), Col("Signals", "Signals", "text", 2),
    Col("Model", "Model", "name", 3), Col("LlmCalls", "LLM", "int", 3), Col("ToolCalls", "Tools", "int", 3),
    Col("WallClockS", "Wall", "seconds", 4), Col("Owner", "Owner", "name", 4), Col("Project", "Project", "name", 5),
    Col("StartTime", "Started", "time", 5),
)


LOOP_COLUMNS = (
    Col("RunId", "Run", "id", 1), Col("Name", "Name", "name", 1), Col("Kind", "Signal", "text", 1), Col("Key", "Repeated", "name", 2),
    Col("Count", "Times", "int", 1), Col("WastedUsd", "On repeats", "money", 1), Col("WasteIsEstimate", "Est.", "int", 3),
    Col("RunCostUsd", "Run cost", "money", 2), Col("Owner", "Owner", "name", 4),
)
BUDGET_COLUMNS = (
    Col("Limit", "Limit", "text", 1), Col("Action", "Action", "text", 1), Col("Breaches", "Breaches", "int", 1), Col("Runs", "Runs", "int", 2),
    Col("CostOfRunsUsd", "Cost of runs", "money", 1), Col("SavedUsdEstimate", "Saved (est.)", "money", 2),
)
LIMIT_COLUMNS = (
    Col("Limit", "Limit", "name", 1), Col("Value", "Value", "name", 1), Col("Per", "Per", "text", 1),
    Col("MaxUsd", "Max", "money", 1), Col("SpentUsd", "Spent", "money", 1), Col("HeadroomUsd", "Headroom", "money", 1),
    Col("UsedPct", "Used %", "float", 2), Col("Action", "Action", "text", 3),
)
BAKEOFF_COLUMNS = (
    Col("Model", "Model", "name", 1), Col("PromptSize", "Size", "text", 1), Col("Calls", "Calls", "int", 1),
    Col("MedianInputTokens", "Median in", "int", 2), Col("MedianOutputTokens", "Median out", "int", 2),
    Col("CostPerCallUsd", "$/call", "money", 1), Col("CostUsd", "Spend", "money", 3), Col("Runs", "Runs", "int", 4),
    Col("AcceptedRuns", "Accepted", "int", 4), Col("AcceptanceRate", "Accept rate", "float", 2),
)
PROJECTION_COLUMNS = (
    Col("PromptSize", "Size", "text", 1), Col("Calls", "Calls", "int", 1), Col("ActualUsd", "Today", "money", 1),
    Col("ProjectedUsd", "Projected", "money", 1), Col("ChangeUsd", "Change", "money", 1), Col("TargetSamples", "Samples", "int", 2),
)
