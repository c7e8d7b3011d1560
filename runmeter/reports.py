"""The SQL library: named queries over the store, the same numbers for the CLI, HTML and Grafana.

Each query is a file in ``runmeter/queries/`` with ClickHouse query parameters
(``{owner:String}``) — values are always bound by ClickHouse, never spliced
into SQL. ``{{include:_runs}}`` pulls in a shared fragment (the top-level runs
of the window with their final outcome).

    with store.session() as client:
        rows = run_query(client, "cost_per_accepted_run", Filters(since=...), group="model")
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["Filters", "QueryError", "load_query", "parse_since", "project_spend", "run_query"]

QUERY_DIR = Path(__file__).with_name("queries")
_INCLUDE = re.compile(r"\{\{include:([a-z_]+)\}\}")
_SINCE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
GROUPS = ("name", "owner", "project", "provider", "model", "none")


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

    def params(self) -> dict[str, Any]:
        return {
            "since": self.since.astimezone(timezone.utc).replace(tzinfo=None),
            "until": self.until.astimezone(timezone.utc).replace(tzinfo=None),
            "owner": self.owner,
            "project": self.project,
            "model": self.model,
            "run_name": self.run_name,
            "abandoned_after_s": int(self.abandoned_after_s),
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
    sql = load_query(name)
    used = set(re.findall(r"\{([a-z_]+):", sql))
    result = client.query(sql, parameters={k: v for k, v in params.items() if k in used})
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
