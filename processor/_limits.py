"""Spend limits: an owner, a project, a model or a task may spend so much per day, week, month or
in all, across every process that writes to the store.

A limit is checked in the agent's process before each model call, like a run's budget (a ``stop``
raises :class:`BudgetExceeded` naming the scope and the period; ``warn`` records the breach and
goes on). The figure it is checked against is

    spend stored in ClickHouse for the scope and period (every process, the collector's too)
  + this process's spend since shortly before that figure was read

The stored figure is read in the background every ``refresh_s`` (never on the call's path), so
it is at most ``refresh_s`` old; other processes' spend reaches it once their spans are written
(their exporter's delay, ``export_lag_s``). This process's own calls count at once, and the ones
made in the last ``export_lag_s`` before a refresh are counted locally even if the store already
has them: the figure errs high by at most that, never low by this process's own spend. What can
slip past a limit is what *other* processes spend within ``refresh_s + export_lag_s``.

When the store cannot be read, a limit follows ``if_store_down``: ``allow`` (the call goes on,
said once in the log and recorded as a warn breach) or ``stop``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from runmeter.core import Thread, renew_locks_after_fork
from runmeter.processor._budget import Breach, BudgetExceeded
from runmeter.processor._live import alert
from runmeter.processor.pricing import MONEY_CONTEXT

__all__ = ["PERIODS", "SCOPES", "SpendLimit", "SpendLimits", "Usage", "base_model", "current_limits", "period_start", "set_limits"]

_log = logging.getLogger(__name__)

SCOPES = ("owner", "project", "model", "task_id")
PERIODS = ("day", "week", "month", "total")
ANY = "*"  # a limit for each value of the scope on its own (every owner <= $50/day)

# runmeter_calls' column for each scope (what the stored figure is summed by).
COLUMNS = {"owner": "Owner", "project": "Project", "model": "Model", "task_id": "TaskId"}

_DATED = re.compile(r"-\d{4}-?\d{2}-?\d{2}$")
DATED_SQL = r"-\\d{4}-?\\d{2}-?\\d{2}$"  # the same, in a ClickHouse string literal


def base_model(model: str | None) -> str | None:
    """A model without its dated-snapshot suffix: a limit on ``gpt-4o-mini`` counts
    ``gpt-4o-mini-2024-07-18`` too (what a request names, and what the response and the store say)."""
    return _DATED.sub("", model) if model else model


def period_start(period: str, now: float) -> float:
    """The start (Unix seconds, UTC) of the period that holds ``now``; 0 for ``total``."""
    if period == "total":
        return 0.0
    t = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start = day
    elif period == "week":  # ISO weeks: from Monday
        start = day - dt.timedelta(days=day.weekday())
    elif period == "month":
        start = day.replace(day=1)
    else:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    return start.timestamp()


@dataclass(frozen=True)
class SpendLimit:
    """``scope`` (owner, project, model, task_id) equal to ``value`` (or ``*``: each value on its own)
    may spend at most ``max_usd`` per ``period``."""

    scope: str
    value: str
    max_usd: float
    period: str = "day"
    action: Literal["stop", "warn"] = "stop"

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"a spend limit's scope is one of {', '.join(SCOPES)}, not {self.scope!r}")
        if not isinstance(self.value, str) or not self.value:
            raise ValueError(f"a spend limit on {self.scope} needs a value (or '*' for each one)")
        if isinstance(self.max_usd, bool) or not isinstance(self.max_usd, (int, float)) or not math.isfinite(self.max_usd) or self.max_usd < 0:
            raise ValueError(f"max_usd must be a finite number >= 0, not {self.max_usd!r}")
        if self.period not in PERIODS:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {self.period!r}")
        if self.action not in ("stop", "warn"):
            raise ValueError(f"action must be 'stop' or 'warn', not {self.action!r}")

    @property
    def name(self) -> str:
        """How a breach names it: ``spend.owner=ana.day``."""
        return f"spend.{self.scope}={self.value}.{self.period}"

    def applies(self, value: str | None) -> bool:
        return bool(value) and (self.value == ANY or self.value == value)


@dataclass
class Usage:
    """A limit's figure for one value of its scope, as ``runmeter limits`` shows it."""

    limit: SpendLimit
    value: str
    spent: Decimal
    since: float
    stored_at: float | None  # when the stored part was read (None: never)

    @property
    def headroom(self) -> Decimal:
        return MONEY_CONTEXT.subtract(Decimal(repr(self.limit.max_usd)), self.spent)


Reader = Callable[[Sequence[tuple[SpendLimit, float]]], Mapping[tuple[int, str], Decimal]]


@dataclass
class _Local:
    at: float
    keys: dict[str, str]
    cost: Decimal


@dataclass
class _State:
    stored: dict[tuple[int, str], Decimal] = field(default_factory=dict)  # (limit index, value) -> stored spend
    read_at: float | None = None  # when the stored figure was read (the query's start)
    periods: dict[int, float] = field(default_factory=dict)  # limit index -> the period start it was read for
    down: bool = False


class SpendLimits:
    """The limits of this process: checked before each call, fed after it, refreshed in the background.

    ``reader(queries)`` answers, for ``(limit, period start)`` pairs, the stored spend by ``(index
    of the limit, scope value)``; it may raise (the store is down).
    """

    def __init__(
        self,
        limits: Iterable[SpendLimit],
        reader: Reader,
        *,
        refresh_s: float = 5.0,
        export_lag_s: float = 10.0,
        if_store_down: Literal["allow", "stop"] = "allow",
        clock: Callable[[], float] = time.time,
        background: bool = True,
    ) -> None:
        self.limits = list(limits)
        if refresh_s <= 0 or export_lag_s < 0:
            raise ValueError("refresh_s must be > 0 and export_lag_s >= 0")
        if if_store_down not in ("allow", "stop"):
            raise ValueError(f"if_store_down must be 'allow' or 'stop', not {if_store_down!r}")
        self._reader = reader
        self.refresh_s = refresh_s
        self.export_lag_s = export_lag_s
        self.if_store_down = if_store_down
        self._clock = clock
        self._lock = threading.Lock()
        renew_locks_after_fork(self, "_lock")
        self._state = _State()
        self._local: list[_Local] = []
        self._warned: set[tuple[str, str, float]] = set()
        self._bands: dict[tuple[str, str, float], int] = {}
        self._said_down = False
        self._stop = threading.Event()
        self._first = threading.Event()  # the first read was tried
        self._thread: threading.Thread | None = None
        if background and self.limits:
            self._thread = Thread(target=self._loop, name="runmeter-spend-limits", daemon=True)
            self._thread.start()

    # --- the stored figure -------------------------------------------------------------------

    def refresh(self) -> bool:
        """Read the stored figure now; False when the store could not be read."""
        try:
            return self._refresh()
        finally:
            self._first.set()

    def _refresh(self) -> bool:
        now = self._clock()
        queries = [(limit, period_start(limit.period, now)) for limit in self.limits]
        try:
            stored = dict(self._reader(queries))
        except Exception as exc:  # the store is down or refuses: the policy decides, the agent runs on
            with self._lock:
                self._state.down = True
            if not self._said_down:
                self._said_down = True
                _log.warning("runmeter: cannot read stored spend for the spend limits (%s); %s until it answers",
                             str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                             "calls go on" if self.if_store_down == "allow" else "calls under a limit are stopped")
            return False
        with self._lock:
            self._state = _State(stored, now, {i: q[1] for i, q in enumerate(queries)}, False)
            # Local spend older than the lag before this read is in the stored figure now.
            horizon = now - self.export_lag_s
            self._local = [e for e in self._local if e.at >= horizon]
        self._said_down = False
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.refresh_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- before and after a call ---------------------------------------------------------------

    def usage(self, keys: Mapping[str, str | None]) -> list[Usage]:
        """Each limit that applies to a call with these scope values, with its figure now."""
        now = self._clock()
        out = []
        with self._lock:
            state = self._state
            for i, limit in enumerate(self.limits):
                value = keys.get(limit.scope)
                if not limit.applies(value):
                    continue
                assert value is not None
                start = period_start(limit.period, now)
                stored = state.stored.get((i, value), Decimal(0)) if state.periods.get(i) == start else Decimal(0)
                # A period that began since the last read: its stored part is 0 until the next read.
                read_at = state.read_at if state.periods.get(i) == start else None
                horizon = max(start, (read_at - self.export_lag_s) if read_at is not None else start)
                spent = stored  # summed in runmeter's context, not the agent thread's (see pricing.MONEY_CONTEXT)
                for e in self._local:
                    if e.at >= horizon and e.keys.get(limit.scope) == value:
                        spent = MONEY_CONTEXT.add(spent, e.cost)
                out.append(Usage(limit, value, spent, start, read_at))
        return out

    def check(self, keys: Mapping[str, str | None], run_id: str = "") -> list[Breach]:
        """Before a call: raise BudgetExceeded for a ``stop`` limit that is reached; the new ``warn``
        breaches otherwise (each once per limit, value and period)."""
        if not self.limits:
            return []
        if not self._first.is_set():  # the process's first call waits for the first read (at most refresh_s)
            self._first.wait(self.refresh_s)
        found: list[Breach] = []
        down = self._state.down
        for u in self.usage(keys):
            limit = u.limit
            threshold = Decimal(repr(limit.max_usd))
            self._tell(u, threshold)
            if down and self.if_store_down == "stop":
                breach = Breach(f"{limit.name}.store_down", float(u.spent), limit.max_usd, "stop")
            elif u.spent >= threshold:
                breach = Breach(limit.name, float(u.spent), limit.max_usd, limit.action)
            else:
                continue
            if breach.action == "stop":
                raise BudgetExceeded(run_id or "-", breach)
            key = (limit.name, u.value, u.since)
            if key not in self._warned:
                self._warned.add(key)
                found.append(breach)
        return found

    def _tell(self, u: Usage, threshold: Decimal) -> None:
        """Live alerts (``[alerts]`` spend_limit rules): once per tenth of the limit from half of it on."""
        if threshold <= 0:
            return
        band = int(MONEY_CONTEXT.divide(MONEY_CONTEXT.multiply(u.spent, 10), threshold))
        if band < 5:
            return
        key = (u.limit.name, u.value, u.since)
        if self._bands.get(key, -1) >= band:
            return
        self._bands[key] = band
        alert("spend_limit_usage", None, u)

    def record(self, keys: Mapping[str, str | None], cost: Decimal | None) -> None:
        """After a priced call: its cost counts at once for every limit it falls under."""
        if not cost or not self.limits:
            return
        clean = {k: v for k, v in keys.items() if v}
        with self._lock:
            self._local.append(_Local(self._clock(), clean, cost))
        for u in self.usage(clean):  # a level crossed by this call is told now, not at the next call
            self._tell(u, Decimal(repr(u.limit.max_usd)))


_current: SpendLimits | None = None


def set_limits(limits: SpendLimits | None) -> SpendLimits | None:
    """Install the process's spend limits (the facade does, from ``[limits]``); returns the previous ones."""
    global _current
    previous, _current = _current, limits
    return previous


def current_limits() -> SpendLimits | None:
    return _current
