"""Run records, outcome events, and the sink they go to.

The ClickHouse exporter implements :class:`RunSink`; :class:`InMemoryRunSink`
keeps records in memory for tests and embedding.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, runtime_checkable

from runmeter.core import quick_init
from runmeter.processor._budget import Breach, Budget
from runmeter.processor._loops import LoopSignal

__all__ = ["InMemoryRunSink", "OutcomeEvent", "RunRecord", "RunSink", "Tokens"]


@quick_init
@dataclass(frozen=True, slots=True)
class Tokens:
    """Token totals by kind (OpenTelemetry GenAI semantics: input includes cache, output includes reasoning)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
            self.reasoning + other.reasoning,
        )

    @property
    def total(self) -> int:
        return self.input + self.output


@quick_init
@dataclass(frozen=True)
class RunRecord:
    """One run: who, what, how it ended, and what it cost (sub-runs included)."""

    run_id: str
    trace_id: str
    root_span_id: str
    name: str
    owner: str
    project: str
    task_id: str
    parent_run_id: str
    service_name: str
    start_ns: int
    end_ns: int
    outcome: str  # accepted | rejected | abandoned | failed | "" (unknown)
    outcome_reason: str
    cost_usd: Decimal  # priced calls only; see `pricing`
    cost_by_model: dict[str, Decimal]
    external_cost_usd: Decimal  # what other tools put on the spans, kept apart
    tokens: Tokens
    llm_calls: int
    unpriced_calls: int
    estimated_calls: int
    tool_calls: dict[str, int]
    repeated_context_reads: dict[str, int]  # resource -> reads, for resources read more than once
    loop_signals: tuple[LoopSignal, ...]
    budget: Budget | None
    breaches: tuple[Breach, ...]
    pricing: str  # priced | partially_priced | unpriced
    incomplete: bool = False
    implicit: bool = False
    spans: int = 0

    @property
    def wall_clock_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def tool_calls_total(self) -> int:
        return sum(self.tool_calls.values())


@dataclass(frozen=True)
class OutcomeEvent:
    """An outcome that arrives after the run (a human review, the CLI). The latest wins."""

    run_id: str
    outcome: str
    reason: str = ""
    time_ns: int = 0
    source: str = "api"


@runtime_checkable
class RunSink(Protocol):
    """Where run records and outcome events go. Must not raise. A sink may also have ``close()``,
    which the RunProcessor calls at shutdown after the last records."""

    def write_runs(self, records: list[RunRecord]) -> None: ...

    def write_outcomes(self, events: list[OutcomeEvent]) -> None: ...


@dataclass
class InMemoryRunSink:
    """Keeps everything in lists; thread-safe."""

    runs: list[RunRecord] = field(default_factory=list)
    outcomes: list[OutcomeEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def write_runs(self, records: list[RunRecord]) -> None:
        with self._lock:
            self.runs.extend(records)

    def write_outcomes(self, events: list[OutcomeEvent]) -> None:
        with self._lock:
            self.outcomes.extend(events)

    def by_id(self) -> dict[str, RunRecord]:
        with self._lock:
            return {r.run_id: r for r in self.runs}
