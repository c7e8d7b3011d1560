"""The run ledger: one run's live totals and its budget check.

The instrumentation asks the ledger *before* each LLM call and tool call
(``check_llm_call`` / ``check_tool_call``); the span processor tells it what
each call cost when its span ends (``record_llm_call`` / ``record_tool_call``).
A tool call no check saw before it ran (a framework's, or one told by its result)
that is past the budget's tool limits stops the next LLM call.
With a ``stop`` budget a check raises :class:`BudgetExceeded` before the
request is sent; with ``warn`` it returns the breach for the caller to record,
once per limit. Thread-safe; no I/O.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from runmeter.conventions.attributes import RunmeterBudgetLimitValues as Limit
from runmeter.core import renew_locks_after_fork
from runmeter.processor._budget import Breach, Budget, BudgetExceeded
from runmeter.processor._loops import LoopDetector, LoopSignal
from runmeter.processor.pricing import MONEY_CONTEXT, TokenUsage

__all__ = ["RunLedger"]


@functools.lru_cache(maxsize=256)
def _as_decimal(limit: float) -> Decimal:
    """A budget's float limit as the Decimal it reads as (checked before every call: made once)."""
    return Decimal(repr(limit))


class RunLedger:
    """Live totals of one run."""

    def __init__(
        self,
        run_id: str,
        budget: Budget | None = None,
        *,
        loop_threshold: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = run_id
        self.budget = budget
        self._clock = clock
        self.started = clock()
        self._lock = threading.Lock()
        renew_locks_after_fork(self, "_lock")  # a forked worker goes on updating an inherited run
        self.cost_usd = Decimal(0)
        self.input_tokens = 0
        self.output_tokens = 0
        self.llm_calls = 0
        self.unpriced_calls = 0
        self.tool_calls: Counter[str] = Counter()
        self.loops = LoopDetector(loop_threshold)
        self.breaches: list[Breach] = []
        self._warned: set[str] = set()

    # --- before a call -------------------------------------------------------------

    def check_llm_call(self, input_hash: str | None = None) -> list[Breach]:
        """Raise BudgetExceeded (stop) or return new breaches (warn) for the next LLM call."""
        b = self.budget
        if b is None:
            return []
        with self._lock:
            found = self._common(b)
            if b.max_llm_calls is not None and self.llm_calls >= b.max_llm_calls:
                found.append(Breach(Limit.LLM_CALLS.value, self.llm_calls + 1, b.max_llm_calls, b.action))
            if b.max_identical_repeats is not None:
                repeats = self.loops.repeats_of_input(input_hash)  # this call would be repeat number `repeats`
                if repeats > b.max_identical_repeats:
                    found.append(Breach(Limit.IDENTICAL_REPEATS.value, repeats, b.max_identical_repeats, b.action))
            if b.max_tool_calls is not None or b.allowed_tools is not None:
                found += self._tools_past(b)
            return self._settle(found)

    def _tools_past(self, b: Budget) -> list[Breach]:
        """Tool calls already made past the budget: ones no check stopped before they ran (the
        agent ran them itself, told by their results, or a framework did), so the next LLM call
        is where the run is stopped."""
        found: list[Breach] = []
        if b.max_tool_calls is not None:
            total = sum(self.tool_calls.values())
            if total > b.max_tool_calls:
                found.append(Breach(Limit.TOOL_CALLS.value, total, b.max_tool_calls, b.action))
        if b.allowed_tools is not None:
            others = sum(n for name, n in self.tool_calls.items() if name not in b.allowed_tools)
            if others:
                found.append(Breach(Limit.ALLOWED_TOOLS.value, others, 0, b.action))
        return found

    def check_tool_call(self, name: str, args_hash: str | None = None) -> list[Breach]:
        """Raise BudgetExceeded (stop) or return new breaches (warn) for the next tool call."""
        b = self.budget
        if b is None:
            return []
        with self._lock:
            found = self._common(b)
            if b.allowed_tools is not None and name not in b.allowed_tools:
                found.append(Breach(Limit.ALLOWED_TOOLS.value, 1, 0, b.action))
            total = sum(self.tool_calls.values())
            if b.max_tool_calls is not None and total >= b.max_tool_calls:
                found.append(Breach(Limit.TOOL_CALLS.value, total + 1, b.max_tool_calls, b.action))
            if b.max_identical_repeats is not None:
                repeats = self.loops.repeats_of_tool(name, args_hash)
                if repeats > b.max_identical_repeats:
                    found.append(Breach(Limit.IDENTICAL_REPEATS.value, repeats, b.max_identical_repeats, b.action))
            return self._settle(found)

    def _common(self, b: Budget) -> list[Breach]:
        found: list[Breach] = []
        if b.max_cost_usd is not None and self.cost_usd >= _as_decimal(b.max_cost_usd):
            found.append(Breach(Limit.COST.value, float(self.cost_usd), b.max_cost_usd, b.action))
        tokens = self.input_tokens + self.output_tokens
        if b.max_tokens is not None and tokens >= b.max_tokens:
            found.append(Breach(Limit.TOKENS.value, tokens, b.max_tokens, b.action))
        if b.max_wall_clock_s is not None:
            elapsed = self._clock() - self.started
            if elapsed >= b.max_wall_clock_s:
                found.append(Breach(Limit.WALL_CLOCK.value, round(elapsed, 3), b.max_wall_clock_s, b.action))
        return found

    def _settle(self, found: list[Breach]) -> list[Breach]:
        if not found:
            return []
        if found[0].action == "stop":
            first = found[0]
            if first.limit not in self._warned:
                self._warned.add(first.limit)
                self.breaches.append(first)
            raise BudgetExceeded(self.run_id, first)
        new = [br for br in found if br.limit not in self._warned]
        for br in new:
            self._warned.add(br.limit)
            self.breaches.append(br)
        return new

    # --- after a call --------------------------------------------------------------

    def record_llm_call(self, usage: TokenUsage | None, cost_usd: Decimal | None, input_hash: str | None = None) -> list[LoopSignal]:
        with self._lock:
            self.llm_calls += 1
            if usage is not None:
                self.input_tokens += usage.input_tokens
                self.output_tokens += usage.output_tokens
            if cost_usd is None:
                self.unpriced_calls += 1
            else:
                self.cost_usd = MONEY_CONTEXT.add(self.cost_usd, cost_usd)  # not in the agent thread's decimal context
            return self.loops.observe_llm(input_hash)

    def record_tool_call(self, name: str, args_hash: str | None = None, resource: str | None = None) -> list[LoopSignal]:
        with self._lock:
            self.tool_calls[name] += 1
            return self.loops.observe_tool(name, args_hash, resource)

    # --- across a process boundary ---------------------------------------------------

    def handover(self) -> tuple[Any, ...]:
        """What a process started for the run (spawn, a process pool) needs to go on checking its
        budget: the budget and the totals so far, as plain values (picklable, and JSON for an
        environment variable)."""
        with self._lock:
            budget = self.budget.to_attributes() if self.budget is not None else None
            return (self.run_id, budget, self.loops.threshold, self.started, str(self.cost_usd), self.input_tokens,
                    self.output_tokens, self.llm_calls, self.unpriced_calls, dict(self.tool_calls))

    @classmethod
    def taken_over(cls, state: tuple[Any, ...]) -> RunLedger:
        """The ledger :meth:`handover` described, in the process that took the work over: it goes on
        from the totals at the hand-over (the other process's later spend is not seen here)."""
        run_id, budget, threshold, started, cost, inp, out, llm, unpriced, tools = state
        ledger = cls(str(run_id), Budget.from_attributes(budget) if isinstance(budget, dict) else None, loop_threshold=int(threshold))
        ledger.started = float(started)  # CLOCK_MONOTONIC: one clock for every process of the host
        ledger.cost_usd = Decimal(cost)
        ledger.input_tokens, ledger.output_tokens, ledger.llm_calls, ledger.unpriced_calls = int(inp), int(out), int(llm), int(unpriced)
        ledger.tool_calls.update({str(k): int(v) for k, v in dict(tools).items()})
        return ledger

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self.started
