"""``[limits]``: spend limits by owner, project, model or task, per day, week, month or in all.

::

    [limits]
    refresh_s = 5            # the stored figure is at most this old
    export_lag_s = 10        # how long a call takes to reach the store (see processor/_limits.py)
    if_store_down = "allow"  # or "stop"

    [[limits.spend]]
    owner = "ana"            # or project = / model = / task_id = ; "*" = each one on its own
    max_usd = 50
    per = "day"              # day | week | month | total
    action = "stop"          # or "warn"

The enforcement is the processor's (:class:`~runmeter.processor.SpendLimits`); this module reads
the settings, sums the stored spend in ClickHouse, and installs the limits in an agent process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runmeter.processor import ANY_VALUE as ANY
from runmeter.processor import DATED_MODEL_SQL as DATED_SQL
from runmeter.processor import SPEND_COLUMNS as COLUMNS
from runmeter.processor import SpendLimit, SpendLimits, base_model
from runmeter.processor import SpendReader as Reader
from runmeter.processor import SpendUsage as Usage
from runmeter.processor import spend_period_start as period_start

__all__ = [
    "LimitRule", "LimitSettings", "base_model", "install", "limit_rows", "limits_from_settings", "query_of", "stored_reader", "usage_now",
]

_SCOPES = ("owner", "project", "model", "task_id")


class LimitRule(BaseModel):
    """One ``[[limits.spend]]`` entry: exactly one scope, a maximum, a period."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    owner: str | None = None
    project: str | None = None
    model: str | None = None
    task_id: str | None = None
    max_usd: float = Field(ge=0, allow_inf_nan=False)
    per: Literal["day", "week", "month", "total"] = "day"
    action: Literal["stop", "warn"] = "stop"

    @model_validator(mode="after")
    def _one_scope(self) -> LimitRule:
        if len(self._scopes()) != 1:
            raise ValueError("a spend limit names exactly one of owner, project, model, task_id (\"*\": each one)")
        return self

    def _scopes(self) -> list[str]:
        return [s for s in _SCOPES if getattr(self, s) is not None]

    def limit(self) -> SpendLimit:
        (scope,) = self._scopes()
        value = str(getattr(self, scope))
        if scope == "model" and value != ANY:
            value = base_model(value) or value
        return SpendLimit(scope, value, float(self.max_usd), self.per, self.action)


class LimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    refresh_s: float = Field(default=5.0, gt=0, le=3600)
    export_lag_s: float = Field(default=10.0, ge=0, le=3600)
    if_store_down: Literal["allow", "stop"] = "allow"
    spend: list[LimitRule] = Field(default_factory=list)

    def limits(self) -> list[SpendLimit]:
        return [r.limit() for r in self.spend]


Query = Callable[[str, dict[str, Any]], Sequence[Sequence[Any]]]


def query_of(client: Any) -> Query:
    """A clickhouse-connect client (or session) as the ``query`` these functions read the store with."""
    return lambda sql, params: client.query(sql, parameters=params).result_rows


def stored_reader(query: Query) -> Reader:
    """Stored spend for each ``(limit, period start)``, by ``(limit index, value)``: LLM calls in
    ``runmeter_calls`` (every process's, the collector's too), duplicates left out."""

    def read(queries: Sequence[tuple[SpendLimit, float]]) -> Mapping[tuple[int, str], Decimal]:
        out: dict[tuple[int, str], Decimal] = {}
        for i, (limit, since) in enumerate(queries):
            column = COLUMNS[limit.scope]
            if limit.scope == "model":
                key = f"replaceRegexpOne(c.{column}, '{DATED_SQL}', '')"
            else:  # the call's own, else its run's (spans from OTLP may name the owner on the run's root only)
                key = f"if(c.{column} != '', c.{column}, r.{column})"
            source = (
                "runmeter_calls AS c LEFT JOIN (SELECT RunId, Owner, Project, TaskId FROM runmeter_runs_current) AS r ON r.RunId = c.RunId"
                if limit.scope != "model" else "runmeter_calls AS c"
            )
            where = "c.Kind = 'llm' AND c.Duplicate = 0 AND c.Timestamp >= fromUnixTimestamp64Nano({since:Int64})"
            params: dict[str, Any] = {"since": int(since * 1e9)}
            if limit.value == ANY:
                rows = query(f"SELECT {key} AS v, sum(c.CostUsd) FROM {source} WHERE {where} AND v != '' GROUP BY v", params)
            else:
                params["v"] = limit.value
                rows = query(f"SELECT {{v:String}}, sum(c.CostUsd) FROM {source} WHERE {where} AND {key} = {{v:String}}", params)
            for value, spent in rows:
                out[(i, str(value))] = Decimal(repr(float(spent or 0.0)))
        return out

    return read


def limits_from_settings(settings: LimitSettings, query: Query, *, background: bool = True) -> SpendLimits | None:
    """The process's limits, reading the store through ``query``; None when there are none."""
    limits = settings.limits()
    if not limits:
        return None
    return SpendLimits(
        limits, stored_reader(query), refresh_s=settings.refresh_s, export_lag_s=settings.export_lag_s,
        if_store_down=settings.if_store_down, background=background,
    )


def usage_now(settings: LimitSettings, query: Query) -> list[Usage]:
    """Each limit, each value it has spent on this period, from the store (``runmeter limits``)."""
    limits = settings.limits()
    now = time.time()
    queries = [(limit, period_start(limit.period, now)) for limit in limits]
    stored = stored_reader(query)(queries)
    out: list[Usage] = []
    for i, limit in enumerate(limits):
        values = sorted(v for (j, v) in stored if j == i)
        if limit.value != ANY and limit.value not in values:
            values = [limit.value]
        for v in values:
            out.append(Usage(limit, v, stored.get((i, v), Decimal(0)), queries[i][1], now))
    return out


def install(settings: Any = None, writer: Any = None) -> SpendLimits | None:
    """Enforce ``[limits]`` in this process (``opentelemetry-instrument`` does it for you; call it
    when you set the SDK up in code). Stored spend is read through ``writer`` (your ClickHouse
    exporter's: ``exporter.writer``, which shares an embedded store's session) or the configured
    store. Returns the limits (None without any)."""
    from runmeter.processor import set_limits

    if settings is None:
        from runmeter.config import load_settings

        settings = load_settings()
    if writer is None and settings.limits.spend:
        from runmeter.exporter import open_writer

        writer = open_writer(settings.storage.clickhouse_url, settings.storage.spool_dir, settings.storage.spool_max_bytes)
    limits = limits_from_settings(settings.limits, lambda sql, params: writer.query(sql, params)) if writer is not None else None
    previous = set_limits(limits)
    if previous is not None:
        previous.close()
    return limits


def limit_rows(settings: LimitSettings, query: Query) -> list[dict[str, Any]]:
    """``usage_now`` as report rows (``runmeter limits``, ``runmeter ui``)."""
    return [
        {"Limit": f"{u.limit.scope}={u.limit.value}", "Value": u.value, "Per": u.limit.period, "MaxUsd": u.limit.max_usd,
         "SpentUsd": float(u.spent), "HeadroomUsd": float(u.headroom),
         "UsedPct": round(100 * float(u.spent) / u.limit.max_usd, 1) if u.limit.max_usd else None, "Action": u.limit.action}
        for u in usage_now(settings, query)
    ]
