"""The SQL library: named queries over the store, the same numbers for the CLI, HTML and Grafana.

Each query is a file in ``runmeter/queries/`` with ClickHouse query parameters
(``{owner:String}``) — values are always bound by ClickHouse, never spliced
into SQL. ``{{include:_runs}}`` pulls in a shared fragment (the top-level runs
of the window with their final outcome).

    with store.session() as client:
        rows = run_query(client, "cost_per_accepted_run", Filters(since=...), group="model")
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError

from runmeter.exporter import StoreError

__all__ = [
    "BUCKETS", "RUN_SORTS", "Filters", "QueryError", "load_query", "parse_since", "pick_bucket", "plain", "project_spend", "resolve_run",
    "run_detail", "run_query", "short_ids", "spend_series",
]

QUERY_DIR = Path(__file__).with_name("queries")
_INCLUDE = re.compile(r"\{\{include:([a-z_]+)\}\}")
_SINCE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
GROUPS = ("name", "owner", "project", "provider", "model", "none")
OUTCOMES = ("accepted", "rejected", "abandoned", "failed", "unknown")
# The columns a run list can be sorted by (bound as a ClickHouse Identifier, checked here first).
RUN_SORTS = ("StartTime", "CostUsd", "Name", "Owner", "Project", "Model", "Outcome", "LlmCalls", "ToolCalls", "WallClockS")
BUCKETS = {"second": timedelta(seconds=1), "10s": timedelta(seconds=10), "minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


class QueryError(ValueError):
    """A bad filter or query name; the message says which and what is allowed."""


def parse_since(value: str | None, now: datetime | None = None) -> datetime:
    """``7d``, ``24h``, ``30m``, ``2w``, an ISO date or datetime; default 30 days."""
    now = now or datetime.now(timezone.utc)
    if not value:
        return now - timedelta(days=30)
    m = _SINCE.match(value.strip())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise QueryError(f"--since {value!r}: use a span like 7d, 24h, 30m, 2w, or a date like 2026-11-01") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


@dataclass
class Filters:
    since: datetime = field(default_factory=lambda: parse_since(None))
    until: datetime = field(default_factory=lambda: datetime.now(timezone.utc) + timedelta(days=1))
    owner: str = ""
    project: str = ""
    model: str = ""
    run_name: str = ""
    abandoned_after_s: int = 86_400
    # the run list's own filters (runs_page)
    outcome: str = ""
    min_cost: float = 0.0
    has_loop: bool = False
    unpriced: bool = False

    def __post_init__(self) -> None:
        if self.outcome and self.outcome not in OUTCOMES:
            raise QueryError(f"outcome {self.outcome!r}: use one of {', '.join(OUTCOMES)}")
        if not (0 <= self.min_cost < 1e12):  # NaN fails this too
            raise QueryError(f"minimum cost {self.min_cost!r}: use a number of dollars, 0 or more")

    def params(self) -> dict[str, Any]:
        return {
            "since": self.since.astimezone(timezone.utc).replace(tzinfo=None),
            "until": self.until.astimezone(timezone.utc).replace(tzinfo=None),
            "owner": self.owner,
            "project": self.project,
            "model": self.model,
            "run_name": self.run_name,
            "abandoned_after_s": int(self.abandoned_after_s),
            "outcome": self.outcome,
            "min_cost": float(self.min_cost),
            "has_loop": bool(self.has_loop),
            "unpriced": bool(self.unpriced),
        }


@lru_cache(maxsize=None)
def load_query(name: str) -> str:
    """The SQL of a named query, fragments included, comments removed."""
    if not re.fullmatch(r"[a-z_]+", name):
        raise QueryError(f"unknown query {name!r}")
    path = QUERY_DIR / f"{name}.sql"
    if not path.is_file():
        raise QueryError(f"unknown query {name!r}")
    text = path.read_text(encoding="utf-8")
    text = _INCLUDE.sub(lambda m: load_query(m.group(1)), text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip()


def run_query(client: Any, name: str, filters: Filters | None = None, **extra: Any) -> list[dict[str, Any]]:
    """Rows of a named query as dicts (column name -> value)."""
    params = (filters or Filters()).params()
    params.update(extra)
    if "group" in params and params["group"] not in GROUPS:
        raise QueryError(f"group by {params['group']!r}: use one of {', '.join(GROUPS)}")
    if "sort" in params and params["sort"] not in RUN_SORTS:
        raise QueryError(f"sort by {params['sort']!r}: use one of {', '.join(RUN_SORTS)}")
    if "bucket" in params and params["bucket"] not in BUCKETS:
        raise QueryError(f"time bucket {params['bucket']!r}: use one of {', '.join(BUCKETS)}")
    sql = load_query(name)
    used = set(re.findall(r"\{([a-z_]+):", sql))
    try:
        result = client.query(sql, parameters={k: v for k, v in params.items() if k in used})
    except OperationalError as exc:  # the server went away between the session and the query
        raise StoreError(f"cannot reach ClickHouse: {str(exc).strip().splitlines()[0]}") from None
    cols = list(result.column_names)
    return [dict(zip(cols, row)) for row in result.result_rows]


def project_spend(bakeoff: list[dict[str, Any]], source: str, target: str) -> list[dict[str, Any]]:
    """If ``source``'s traffic moved to ``target``: per prompt-size bucket, today's cost and the projection.

    The projection prices each of the source's calls at the target's measured cost per
    call in the same bucket (so longer or shorter answers on the target are in it).
    Buckets where the target has no calls cannot be projected and say so.
    """
    by = {(r["Model"], r["PromptSize"]): r for r in bakeoff}
    out = []
    for size in ("small", "medium", "large"):
        src = by.get((source, size))
        if src is None:
            continue
        tgt = by.get((target, size))
        actual = float(src["CostUsd"] or 0)
        projected = None if tgt is None or tgt["CostPerCallUsd"] is None else float(tgt["CostPerCallUsd"]) * src["Calls"]
        out.append({
            "PromptSize": size, "Calls": src["Calls"], "ActualUsd": round(actual, 6),
            "ProjectedUsd": None if projected is None else round(projected, 6),
            "ChangeUsd": None if projected is None else round(projected - actual, 6),
            "TargetSamples": 0 if tgt is None else tgt["Calls"],
        })
    return out


def pick_bucket(first: datetime | None, last: datetime | None, max_columns: int = 72) -> str:
    """The finest of second, 10 s, minute, hour, day, week that shows ``first``..``last`` in at most
    ``max_columns`` columns: a demo of a minute is not one block, a quarter is not 2,000 slivers."""
    if first is None or last is None:
        return "day"
    span = max(last - first, timedelta(0))
    for name, step in BUCKETS.items():
        if span / step < max_columns:
            return name
    return "week"


def spend_series(client: Any, filters: Filters, group: str = "model") -> tuple[str, list[dict[str, Any]]]:
    """Spend over time at the bucket that fits the calls in the window: (bucket, spend_over_time rows)."""
    (rng,) = run_query(client, "calls_range", filters)
    bucket = pick_bucket(rng["First"], rng["Last"]) if rng["Calls"] else "day"
    return bucket, run_query(client, "spend_over_time", filters, group=group, bucket=bucket)


def short_ids(ids: list[str], min_len: int = 10) -> dict[str, str]:
    """Each id's shortest prefix of at least ``min_len`` characters that no other id in ``ids``
    shares (as git shortens hashes); ids no longer than ``min_len + 2`` are kept whole.
    ``resolve_run`` turns a prefix back into the id."""
    out: dict[str, str] = {}
    for run_id in ids:
        n = min_len
        if len(run_id) <= min_len + 2:
            out[run_id] = run_id
            continue
        while n < len(run_id) and any(o != run_id and o.startswith(run_id[:n]) for o in ids):
            n += 2
        out[run_id] = run_id[:n]
    return out


def resolve_run(client: Any, prefix: str) -> str:
    """The full id of the run ``prefix`` names (a whole id, or a prefix of at least 4 characters
    that only one run has). Raises QueryError saying why not."""
    prefix = prefix.strip()
    if not prefix:
        raise QueryError("no run id given (see `runmeter runs` for ids)")
    matches = [r["RunId"] for r in run_query(client, "resolve_run", prefix=prefix)]
    if prefix in matches:
        return prefix
    if len(prefix) < 4 or not matches:
        raise QueryError(f"no run with id {prefix!r} (see `runmeter runs` for ids)")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise QueryError(f"run id {prefix!r} is ambiguous: it starts {len(matches)} runs ({shown}); give more of it")
    return matches[0]


def run_detail(client: Any, run_id: str, abandoned_after_s: int) -> dict[str, Any] | None:
    """One run as every view shows it: its summary (``run_summary``), its spans (``run_tree``),
    its loop signals and budget breaches by sub-run (``run_signals``) and its outcome history."""
    summary = run_query(client, "run_summary", run_id=run_id, abandoned_after_s=abandoned_after_s)
    if not summary:
        return None
    return {
        "run": summary[0],
        "spans": run_query(client, "run_tree", run_id=run_id),
        "signals": run_query(client, "run_signals", run_id=run_id),
        "outcomes": run_query(client, "run_outcomes", run_id=run_id),
    }


def plain(value: Any) -> Any:
    """Rows made JSON-ready: datetimes as ISO strings, Decimals as floats (exact figures, unrounded).

    A figure that is not finite (a store written before runmeter refused such costs, a sum in
    ClickHouse past Float64) is null: JSON has no NaN or Infinity, and a browser's parser refuses
    the whole document for one."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(x) for x in value]
    return value
