"""Budgets: a run's limits, as a value, and the exception a stop raises."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from runmeter.conventions import attributes as A

__all__ = ["Breach", "Budget", "BudgetExceeded"]

_LIMIT_ATTRS = {
    "max_cost_usd": A.RUNMETER_BUDGET_MAX_COST_USD,
    "max_tokens": A.RUNMETER_BUDGET_MAX_TOKENS,
    "max_llm_calls": A.RUNMETER_BUDGET_MAX_LLM_CALLS,
    "max_tool_calls": A.RUNMETER_BUDGET_MAX_TOOL_CALLS,
    "max_wall_clock_s": A.RUNMETER_BUDGET_MAX_WALL_CLOCK_S,
    "max_identical_repeats": A.RUNMETER_BUDGET_MAX_IDENTICAL_REPEATS,
}
_INT_LIMITS = frozenset({"max_tokens", "max_llm_calls", "max_tool_calls", "max_identical_repeats"})
_BUDGET_ATTRS = frozenset({*_LIMIT_ATTRS.values(), A.RUNMETER_BUDGET_ALLOWED_TOOLS})


@dataclass(frozen=True)
class Budget:
    """Per-run limits. ``None`` means no limit.

    ``max_identical_repeats`` counts repeats after the first call: with 2, the
    same tool call (same tool, same argument hash) or the same LLM input may run
    three times, and the fourth is the breach. ``action="stop"`` raises
    :class:`BudgetExceeded` before the call that would break a limit;
    ``"warn"`` records a ``runmeter.budget.exceeded`` event and goes on.
    """

    max_cost_usd: float | None = None
    max_tokens: int | None = None
    max_llm_calls: int | None = None
    max_tool_calls: int | None = None
    max_wall_clock_s: float | None = None
    max_identical_repeats: int | None = None
    allowed_tools: frozenset[str] | None = None
    action: Literal["stop", "warn"] = "stop"

    def __post_init__(self) -> None:
        for name in _LIMIT_ATTRS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"Budget.{name} must be a number, not {value!r}")
            if name in _INT_LIMITS and not isinstance(value, int):
                raise ValueError(f"Budget.{name} must be a whole number, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Budget.{name} must be a finite number >= 0, not {value!r}")
        if self.allowed_tools is not None:
            if isinstance(self.allowed_tools, str) or not all(isinstance(t, str) for t in self.allowed_tools):
                raise ValueError("Budget.allowed_tools must be a collection of tool names")
            object.__setattr__(self, "allowed_tools", frozenset(self.allowed_tools))
        if self.action not in ("stop", "warn"):
            raise ValueError(f"Budget.action must be 'stop' or 'warn', not {self.action!r}")

    def to_attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {A.RUNMETER_BUDGET_ACTION: self.action}
        for name, key in _LIMIT_ATTRS.items():
            value = getattr(self, name)
            if value is not None:
                attrs[key] = value
        if self.allowed_tools is not None:
            attrs[A.RUNMETER_BUDGET_ALLOWED_TOOLS] = sorted(self.allowed_tools)
        return attrs

    @classmethod
    def from_attributes(cls, attrs: Mapping[str, Any]) -> Budget | None:
        """The budget recorded on a run's root span, or None (bad values are ignored)."""
        if _BUDGET_ATTRS.isdisjoint(attrs):
            return None  # most runs have none: no lookup of each limit
        kwargs: dict[str, Any] = {}
        for name, key in _LIMIT_ATTRS.items():
            value = attrs.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            try:
                number = float(value)
            except OverflowError:  # an int past any float
                continue
            if not math.isfinite(number) or (name in _INT_LIMITS and not number.is_integer()):
                continue  # NaN, infinity, 2.5 tool calls (another SDK, a hostile client): no limit the run was held to
            kwargs[name] = int(value) if name in _INT_LIMITS else number
        tools = attrs.get(A.RUNMETER_BUDGET_ALLOWED_TOOLS)
        if isinstance(tools, Iterable) and not isinstance(tools, str):
            kwargs["allowed_tools"] = frozenset(str(t) for t in tools)
        if not kwargs:
            return None
        action = attrs.get(A.RUNMETER_BUDGET_ACTION)
        try:
            return cls(**kwargs, action=action if action in ("stop", "warn") else "stop")
        except ValueError:
            return None


@dataclass(frozen=True)
class Breach:
    """A limit that was hit: which, the run's value, the limit, and what was done."""

    limit: str
    value: float
    threshold: float
    action: str

    def to_attributes(self) -> dict[str, Any]:
        return {
            A.RUNMETER_BUDGET_LIMIT: self.limit,
            A.RUNMETER_BUDGET_VALUE: float(self.value),
            A.RUNMETER_BUDGET_THRESHOLD: float(self.threshold),
            A.RUNMETER_BUDGET_ACTION: self.action,
        }

    @classmethod
    def from_attributes(cls, attrs: Mapping[str, Any]) -> Breach | None:
        try:
            breach = cls(
                str(attrs[A.RUNMETER_BUDGET_LIMIT]),
                float(attrs[A.RUNMETER_BUDGET_VALUE]),
                float(attrs[A.RUNMETER_BUDGET_THRESHOLD]),
                str(attrs.get(A.RUNMETER_BUDGET_ACTION, "stop")),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        return breach if math.isfinite(breach.value) and math.isfinite(breach.threshold) else None


class BudgetExceeded(Exception):
    """Raised before a call that would break a run's budget (action ``stop``)."""

    def __init__(self, run_id: str, breach: Breach) -> None:
        self.run_id = run_id
        self.breach = breach
        self.limit = breach.limit
        self.value = breach.value
        self.threshold = breach.threshold
        super().__init__(
            f"run {run_id}: budget {breach.limit} exceeded ({_fmt(breach.value)} of {_fmt(breach.threshold)}); "
            "the call was not made"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled whole: a stop inside a process pool's task reaches the caller as itself.
        return (type(self), (self.run_id, self.breach))


def _fmt(x: float) -> str:
    return f"{x:g}"
