"""RunProcessor: an OpenTelemetry ``SpanProcessor`` stage that prices spans and assembles runs.

A span cannot change after it ends, so the processor wraps the downstream
processor(s) — typically a ``BatchSpanProcessor`` with the ClickHouse or OTLP
exporter — and hands them *enriched copies*::

    provider.add_span_processor(RunProcessor(BatchSpanProcessor(exporter), sink=sink))

``mode="local"`` (in an agent process): ``on_start`` stamps the current run's
id, name, owner, project and task on every span of the run; ``on_end`` prices
the span, feeds the run's live ledger (loop signals, budgets) and forwards the
copy at once. A trace is assembled into run records when all its spans have
ended plus ``grace_s`` for late children.

``mode="remote"`` (in the collector, spans from OTLP): spans are held per trace
until the trace's root has arrived and the trace has been quiet for
``quiet_s``; then they are stamped with their run id and forwarded. A trace whose
root never arrives (it went to another collector replica, or is not exported)
completes after ``rootless_quiet_s`` of quiet, flagged incomplete. Spans that come
after their trace's run was written (later than ``quiet_s``) wait only ``quiet_s``:
they are written as a partial run, flagged incomplete, which storage ranks below
the whole one (totals are summed from the calls).

Memory is bounded whatever the input: at most ``max_open_runs`` traces,
``max_spans_per_run`` spans each, ``max_run_age_s`` of age. A trace cut by a
limit is emitted with its runs flagged ``incomplete``; its later spans still
carry the run id (storage sums them from the calls table).

``on_start``/``on_end`` never raise and do no blocking work; run assembly runs on
a background thread (or on ``sweep()`` when ``background=False``, for tests).
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from runmeter.conventions import DialectMap, check_outcome, load_dialects
from runmeter.conventions import attributes as A
from runmeter.conventions import genai as G
from runmeter.processor._assembly import assemble, run_id_for
from runmeter.processor._facts import (
    KIND_LLM, KIND_TOOL, SpanFacts, mark_duplicate, read_span, remember,
)
from runmeter.processor._ledger import RunLedger
from runmeter.processor._live import INSTRUMENTATION_SCOPE, LiveRun, current_run
from runmeter.processor._loops import LoopSignal
from runmeter.processor._metrics import ProcessorMetrics
from runmeter.processor._records import OutcomeEvent, RunSink
from runmeter.processor._sdk import attributes_of as _attributes_of
from runmeter.processor._sdk import copy_with, stamp
from runmeter.core import internal_error
from runmeter.processor.pricing import PriceBook

__all__ = ["RunLimits", "RunProcessor"]

_log = logging.getLogger(__name__)
_MAX_TOMBSTONES = 10_000
_MAX_WRITTEN_TRACES = 100_000  # remote: traces whose runs were written, to tell late spans from rootless ones
_AGENT_OP = "invoke_agent"
_LLM_START_OPS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
_BOUNDARY_OPS = frozenset({"execute_tool", "invoke_agent"})


_processors: weakref.WeakSet[RunProcessor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for p in list(_processors):
        try:
            p._after_fork_in_child()
        except Exception as exc:
            internal_error("fork", exc)


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True)
class RunLimits:
    """Completion timing and memory bounds; the one place their defaults are written
    (``runmeter.config.RunSettings`` reads them from here and checks ``[runs]`` values)."""

    grace_s: float = 2.0
    quiet_s: float = 30.0
    rootless_quiet_s: float = 600.0
    max_open_runs: int = 10_000
    max_spans_per_run: int = 20_000
    max_run_age_s: float = 86_400.0
    loop_threshold: int = 3

    @classmethod
    def from_settings(cls, settings: Any) -> RunLimits:
        return cls(**{k: getattr(settings, k) for k in cls.__dataclass_fields__})


@dataclass(slots=True)
class _Entry:
    """What on_start learned about a live span (local mode)."""

    live: LiveRun | None
    parent: int | None
    top: int
    op: str | None
    run_root: bool = False  # made by runmeter.run(); its run is learned from its first child's context


@dataclass
class _Trace:
    first_seen: float
    last_seen: float
    facts: dict[int, SpanFacts] = field(default_factory=dict)
    held: list[tuple[ReadableSpan, dict[str, Any]]] = field(default_factory=list)
    open: set[int] = field(default_factory=set)  # spans started here and not ended yet (local mode)
    root_seen: bool = False
    due: float | None = None
    late: bool = False  # remote: the trace's run was already written here; these spans came after


class RunProcessor(SpanProcessor):
    """Prices spans, assembles runs, detects loops; forwards enriched copies downstream."""

    def __init__(
        self,
        *downstream: SpanProcessor,
        sink: RunSink | None = None,
        prices: PriceBook | None = None,
        limits: RunLimits | None = None,
        mode: Literal["local", "remote"] = "local",
        dialects: DialectMap | None = None,
        meter_provider: MeterProvider | None = None,
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
        metric_labels: Collection[str] = ("owner", "project", "name"),
    ) -> None:
        if mode not in ("local", "remote"):
            raise ValueError(f"mode must be 'local' or 'remote', not {mode!r}")
        self._downstream: tuple[SpanProcessor, ...] = tuple(downstream)
        self._sink = sink
        self._prices = prices if prices is not None else PriceBook()
        self.limits = limits if limits is not None else RunLimits()
        self._mode = mode
        self._dialects = dialects if dialects is not None else load_dialects()
        self._clock = clock
        self._lock = threading.Lock()
        self._traces: OrderedDict[int, _Trace] = OrderedDict()
        self._live: dict[int, _Entry] = {}
        self._cut: OrderedDict[int, str] = OrderedDict()  # trace id -> run id of a trace cut by a limit
        self._written: OrderedDict[int, None] = OrderedDict()  # remote: traces assembled whole, newest last
        self._pending: list[tuple[int, _Trace, bool]] = []  # traces evicted by a bound, awaiting assembly
        self._shutdown = False
        self._metrics = ProcessorMetrics(meter_provider, self._open_count, self._oldest_age, metric_labels)
        self._stop = threading.Event()
        self._wake = threading.Event()  # set when a bound evicted traces: assemble them now
        self._thread: threading.Thread | None = None
        self._background = background
        self._forked_child = False
        if background:
            self._start_thread()
        if mode == "local":
            _processors.add(self)
            # A multiprocessing child (a fork, a process pool) leaves through os._exit: nothing else
            # would flush the spans and runs it made. Finalizers registered after the fork run then.
            multiprocessing.util.register_after_fork(self, RunProcessor._flush_when_child_exits)

    def _start_thread(self) -> None:
        interval = min(max(min(self.limits.grace_s, self.limits.quiet_s) / 2, 0.05), 1.0)
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="runmeter-runs", daemon=True)
        self._thread.start()

    def _after_fork_in_child(self) -> None:
        """The child starts with no trace buffered: the parent assembles what it holds. Spans the child
        makes in an inherited run carry its run id and are written as that run's partial record."""
        self._lock = threading.Lock()
        self._traces = OrderedDict()
        self._pending = []
        self._live = {}
        self._forked_child = True
        if self._background and not self._shutdown:
            self._start_thread()

    def _flush_when_child_exits(self) -> None:
        multiprocessing.util.Finalize(self, self.shutdown, exitpriority=100)

    def add_downstream(self, processor: SpanProcessor) -> None:
        """Hand enriched spans to one more processor (as the SDK configurator adds exporters)."""
        self._downstream = (*self._downstream, processor)

    @property
    def sink(self) -> RunSink | None:
        return self._sink

    @sink.setter
    def sink(self, sink: RunSink | None) -> None:
        """Where run records go; set late when the store's exporter is configured after the first one."""
        self._sink = sink

    # --- SpanProcessor ----------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            if self._mode == "local":
                self._start_local(span, parent_context)
        except Exception as exc:  # never break the user's program
            internal_error("on_start", exc)
        for d in self._downstream:
            d.on_start(span, parent_context=parent_context)

    def _start_local(self, span: Span, parent_context: Context | None) -> None:
        ctx = span.get_span_context()
        parent = span.parent
        parent_id = parent.span_id if parent is not None and not parent.is_remote else None
        parent_entry = self._live.get(parent_id) if parent_id is not None else None
        attrs = _attributes_of(span)
        op = attrs.get(G.GEN_AI_OPERATION_NAME)
        op = op if isinstance(op, str) else None
        # The parent's run, else the one runmeter.run() put in the context (a nested run's
        # root has no run entry of its own, so its children look in the context).
        live = parent_entry.live if parent_entry is not None else None
        if live is None:
            live = current_run(parent_context)
            if live is not None and parent_entry is not None and parent_entry.run_root:
                root = live.root_span
                if root is not None and root.get_span_context().span_id == parent_id:
                    parent_entry.live = live  # the run's root: its other children find the run here
        run_root = attrs.get(A.RUNMETER_RUN_ROOT) is True
        if run_root:
            live = None  # the run's own root span; runmeter.run() stamps it and attaches the LiveRun
        else:
            if live is None and op == _AGENT_OP:
                # The outermost invoke_agent span of another instrumentation: a run of its own.
                run_id = run_id_for(ctx.trace_id, ctx.span_id)
                ledger = RunLedger(run_id, loop_threshold=self.limits.loop_threshold)
                live = LiveRun(run_id, ledger, {A.RUNMETER_RUN_ID: run_id}, span)
            if live is not None and live.stamp:
                stamp(span, live.stamp, typed=True)
        top = parent_entry.top if parent_entry is not None else ctx.span_id
        with self._lock:
            self._live[ctx.span_id] = _Entry(live, parent_id, top, op, run_root)
            if ctx.trace_id not in self._cut:
                trace = self._trace(ctx.trace_id)
                trace.open.add(ctx.span_id)
                trace.due = None
        if self._pending:
            self._assemble_soon()

    def on_end(self, span: ReadableSpan) -> None:
        out: ReadableSpan | None = span
        try:
            out = self._end(span)
        except Exception as exc:  # never break the user's program, never lose the span
            internal_error("on_end", exc)
            self._metrics.spans_dropped.add(1)
        if out is None:
            return  # held for assembly (remote mode)
        for d in self._downstream:
            d.on_end(out)
        if self._forked_child and self._ends_child_work(span):
            # A pool worker may be terminated (SIGTERM) as soon as its task returns: the task's spans
            # are exported (spooled) when its outermost span in this process ends.
            for d in self._downstream:
                d.force_flush(10_000)

    def _ends_child_work(self, span: ReadableSpan) -> bool:
        ctx = span.context
        entry = self._live.get(ctx.span_id) if ctx is not None else None
        return entry is not None and (entry.parent is None or entry.parent not in self._live)

    def _end(self, span: ReadableSpan) -> ReadableSpan | None:
        facts, added = read_span(span, self._dialects, self._prices)
        now = self._clock()
        if self._mode == "local":
            entry = self._live.get(facts.span_id)
            if facts.kind == KIND_LLM and entry is not None and self._inside_llm_call(entry):
                mark_duplicate(facts, added)  # an SDK's own span under an instrumentation's
            else:
                scope = span.instrumentation_scope
                if scope is None or scope.name != INSTRUMENTATION_SCOPE:  # runmeter's own spans feed it themselves
                    self._feed_ledger(facts, entry)
            if entry is not None and entry.live is None and facts.kind in (KIND_LLM, KIND_TOOL) and not facts.run_id:
                # GenAI span outside any explicit or agent run: the implicit run of its topmost span.
                added[A.RUNMETER_RUN_ID] = run_id_for(facts.trace_id, entry.top)
                added[A.RUNMETER_RUN_IMPLICIT] = True
                facts.implicit_run = True
        with self._lock:
            tombstone = self._cut.get(facts.trace_id)
            if tombstone is not None:
                # The trace was cut by a limit: count the span under the run it belongs to.
                if not facts.run_id and A.RUNMETER_RUN_ID not in added:
                    added[A.RUNMETER_RUN_ID] = tombstone
                if self._mode == "local":
                    self._live.pop(facts.span_id, None)
                return _copy(span, added) if added else span
            trace = self._trace(facts.trace_id)
            trace.facts[facts.span_id] = facts
            trace.last_seen = now
            if facts.parent_id is None or (span.parent is not None and span.parent.is_remote):
                trace.root_seen = True
            if self._mode == "local":
                trace.open.discard(facts.span_id)
                if not trace.open:
                    trace.due = now + self.limits.grace_s
            else:
                trace.held.append((span, added))
            if len(trace.facts) >= self.limits.max_spans_per_run:
                self._evict(facts.trace_id, incomplete=True)
        if self._pending:
            self._assemble_soon()  # a bound was hit
        if self._mode == "remote":
            return None
        out = _copy(span, added) if added else span
        if added:  # what the copy says now
            facts.run_id = added.get(A.RUNMETER_RUN_ID, facts.run_id)
        remember(out, facts)
        return out

    def _feed_ledger(self, facts: SpanFacts, entry: _Entry | None) -> None:
        if entry is None or entry.live is None:
            return
        live = entry.live
        signals: list[LoopSignal] = []
        if facts.kind == KIND_LLM:
            signals = live.ledger.record_llm_call(facts.usage, facts.cost, facts.input_hash)
        elif facts.kind == KIND_TOOL:
            signals = live.ledger.record_tool_call(facts.tool_name or facts.name, facts.args_hash, facts.resource)
        if signals:
            live.note_signals(signals)

    def _inside_llm_call(self, entry: _Entry) -> bool:
        """True when an ancestor in the same call chain is an LLM call (an SDK span under ours)."""
        parent = entry.parent
        for _ in range(8):
            if parent is None:
                return False
            up = self._live.get(parent)
            if up is None or up.op in _BOUNDARY_OPS:
                return False
            if up.op in _LLM_START_OPS:
                return True
            parent = up.parent
        return False

    def _trace(self, trace_id: int) -> _Trace:
        """The trace's buffer (lock held); evicts the oldest past max_open_runs."""
        trace = self._traces.get(trace_id)
        if trace is None:
            now = self._clock()
            trace = self._traces[trace_id] = _Trace(now, now, late=trace_id in self._written)
            while len(self._traces) > self.limits.max_open_runs:
                oldest = next(iter(self._traces))
                self._evict(oldest, incomplete=True)
        return trace

    def _evict(self, trace_id: int, incomplete: bool) -> None:
        """Move a trace to the pending list (lock held)."""
        trace = self._traces.pop(trace_id, None)
        if trace is None:
            return
        if self._mode == "remote" and trace.root_seen and not incomplete:
            self._written[trace_id] = None
            self._written.move_to_end(trace_id)
            if len(self._written) > _MAX_WRITTEN_TRACES:
                self._written.popitem(last=False)
        self._pending.append((trace_id, trace, incomplete))

    # --- completion ---------------------------------------------------------------------

    def sweep(self, force: bool = False, final: bool = False) -> int:
        """Assemble every trace that is due; returns how many run records were written.

        ``force`` completes traces whose spans have all ended (local) or that
        have any spans (remote) without waiting; ``final`` completes every
        trace, flagging those with spans still open as incomplete.
        """
        now = self._clock()
        lim = self.limits
        with self._lock:
            for trace_id, trace in list(self._traces.items()):
                if now - trace.first_seen >= lim.max_run_age_s:
                    self._evict(trace_id, incomplete=True)
                elif self._mode == "local":
                    if not trace.open and trace.facts and (force or final or (trace.due is not None and now >= trace.due)):
                        self._evict(trace_id, incomplete=False)
                    elif final:
                        self._evict(trace_id, incomplete=bool(trace.open))
                else:
                    idle = now - trace.last_seen
                    # Spans that came after their trace's run was written wait only quiet_s:
                    # their root is known not to be coming (it was in that run).
                    rootless = not trace.root_seen and idle >= (lim.quiet_s if trace.late else lim.rootless_quiet_s)
                    if force or final or rootless or (trace.root_seen and idle >= lim.quiet_s):
                        self._evict(trace_id, incomplete=(final or rootless) and not trace.root_seen)
        return self._drain()

    def _drain(self) -> int:
        """Assemble the evicted traces; their runs go to the sink in one call, then (remote) their spans downstream."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        done = [(trace, self._assemble(trace_id, trace, incomplete)) for trace_id, trace, incomplete in pending]
        records = [r for _, assembly in done if assembly is not None for r in assembly.records]
        for r in records:
            self._metrics.record_run(r)
        if records and self._sink is not None:
            try:
                self._sink.write_runs(records)
            except Exception as exc:
                internal_error("sink.write_runs", exc)
        if self._mode == "remote":  # after the runs: once a span is downstream, the collector may forget it
            for trace, assembly in done:
                self._forward_held(trace, assembly)
        return len(records)

    def _assemble(self, trace_id: int, trace: _Trace, incomplete: bool) -> Any:
        try:
            assembly = assemble(trace.facts.values(), loop_threshold=self.limits.loop_threshold, incomplete=incomplete)
        except Exception as exc:
            internal_error("assemble", exc)
            self._metrics.spans_dropped.add(len(trace.facts))
            assembly = None
        with self._lock:
            if self._mode == "local":
                for sid in trace.facts:
                    self._live.pop(sid, None)
                for sid in trace.open:  # spans that never ended (leaked by the program): forgotten too
                    self._live.pop(sid, None)
            if incomplete and assembly is not None and assembly.records:
                self._cut[trace_id] = assembly.records[0].run_id
                while len(self._cut) > _MAX_TOMBSTONES:
                    self._cut.popitem(last=False)
        return assembly

    def _forward_held(self, trace: _Trace, assembly: Any) -> None:
        run_of = assembly.run_of if assembly is not None else {}
        implicit = assembly.implicit_roots if assembly is not None else set()
        duplicates = assembly.duplicates if assembly is not None else set()
        roots = {r.run_id: r for r in assembly.records} if assembly is not None else {}
        implicit_runs = {run_of.get(r) for r in implicit}
        for span, added in trace.held:
            try:
                sid = span.context.span_id if span.context is not None else 0
                run_id = run_of.get(sid)
                facts = trace.facts.get(sid)
                if run_id is not None and run_id in roots and not (facts.run_id if facts is not None else None):
                    added[A.RUNMETER_RUN_ID] = run_id
                    if run_id in implicit_runs:
                        added[A.RUNMETER_RUN_IMPLICIT] = True
                if sid in duplicates and facts is not None:
                    mark_duplicate(facts, added)
                out = _copy(span, added) if added else span
                if facts is not None:  # the exporter reads them instead of reading the span again
                    facts.run_id = added.get(A.RUNMETER_RUN_ID, facts.run_id)
                    remember(out, facts)
            except Exception as exc:
                internal_error("forward", exc)
                out = span
            for d in self._downstream:
                d.on_end(out)

    # --- outcomes -------------------------------------------------------------------------

    def record_outcome(self, run_id: str, outcome: str, reason: str = "", source: str = "api") -> OutcomeEvent:
        """A late outcome for a run (the latest wins in storage)."""
        check_outcome(outcome)
        if not run_id:
            raise ValueError("run_id is empty")
        event = OutcomeEvent(run_id, outcome, reason, time.time_ns(), source)
        if self._sink is not None:
            self._sink.write_outcomes([event])
        return event

    # --- lifecycle -----------------------------------------------------------------------

    def _assemble_soon(self) -> None:
        """Traces were evicted by a bound: the background thread assembles them and writes their runs,
        never the caller's (an agent's call must not wait on an insert). Without one (tests), now."""
        if self._thread is not None:
            self._wake.set()
        else:
            self._drain()

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.sweep()
            except Exception as exc:
                internal_error("sweep", exc)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        if self._shutdown:
            return False
        deadline = time.monotonic() + timeout_millis / 1000
        try:
            self.sweep(force=True)
        except Exception as exc:
            internal_error("force_flush", exc)
        ok = True
        for d in self._downstream:
            left = max(0, int((deadline - time.monotonic()) * 1000))
            ok = d.force_flush(left) and ok
        return ok and time.monotonic() <= deadline

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.sweep(final=True)
        except Exception as exc:
            internal_error("shutdown", exc)
        for d in self._downstream:
            d.shutdown()

    # --- metrics callbacks ----------------------------------------------------------------

    def _open_count(self) -> int:
        return len(self._traces)

    def _oldest_age(self) -> float:
        with self._lock:
            first = next(iter(self._traces.values()), None)
            return 0.0 if first is None else max(0.0, self._clock() - first.first_seen)

    @property
    def open_traces(self) -> int:
        return len(self._traces)

    @property
    def live_spans(self) -> int:
        return len(self._live)


def _copy(span: ReadableSpan, added: dict[str, Any]) -> ReadableSpan:
    """The span with ``added`` attributes (an ended span cannot be changed); a None value removes one."""
    attrs = {**_attributes_of(span), **added}
    if None in added.values():
        attrs = {k: v for k, v in attrs.items() if v is not None}
    return copy_with(span, attrs)
