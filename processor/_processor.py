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

``on_start``/``on_end`` never raise and do no blocking work; run assembly and the sink's writes
run on a background thread, never the caller's (or on ``sweep()`` when ``background=False``,
for tests). This module is the shared core (buffers, bounds, assembly, sink, lifecycle, fork);
what differs between the two modes is in ``_modes.py`` (``LocalMode``, ``RemoteMode``).
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from decimal import localcontext
from typing import Any, Literal

from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from runmeter.conventions import DialectMap, check_outcome, load_dialects
from runmeter.conventions import attributes as A
from runmeter.core import Thread, internal_error
from runmeter.processor._assembly import assemble
from runmeter.processor._facts import KIND_OTHER, SpanFacts, read_span
from runmeter.processor._metrics import ProcessorMetrics
from runmeter.processor._modes import Entry, LocalMode, RemoteMode, Trace, copy_adding
from runmeter.processor._records import OutcomeEvent, RunSink
from runmeter.processor.pricing import MONEY_CONTEXT, PriceBook

__all__ = ["RunLimits", "RunProcessor"]

_log = logging.getLogger(__name__)
_MAX_TOMBSTONES = 10_000


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
        owns_spans: bool = False,
    ) -> None:
        """``owns_spans`` (remote mode): no one else holds the spans given to ``on_end`` (the
        collector made them from OTLP), so runmeter's attributes are added to them in place rather
        than to a copy of each."""
        if mode not in ("local", "remote"):
            raise ValueError(f"mode must be 'local' or 'remote', not {mode!r}")
        self._downstream: tuple[SpanProcessor, ...] = tuple(downstream)
        self._sink = sink
        self._prices = prices if prices is not None else PriceBook()
        self.limits = limits if limits is not None else RunLimits()
        self._dialects = dialects if dialects is not None else load_dialects()
        self._clock = clock
        self._lock = threading.Lock()
        # One assembly at a time: a sweep that finds nothing left to assemble returns only once the
        # background thread's assembly under way has handed its spans on (a drain then flushes them).
        self._drain_lock = threading.Lock()
        self._traces: OrderedDict[int, Trace] = OrderedDict()
        self._live: dict[int, Entry] = {}  # local mode: what on_start learned of each live span
        self._cut: OrderedDict[int, str] = OrderedDict()  # trace id -> run id of a trace cut by a limit
        self._pending: list[tuple[int, Trace, bool]] = []  # traces evicted by a bound, awaiting assembly
        self._said_open_runs = False  # the open-runs bound cut a run (said once)
        # Remote: open traces with no GenAI span yet, oldest first - evicted before any run is cut
        # (a collector also fed a service's other traces holds them too, and most never have one).
        self._plain: OrderedDict[int, None] = OrderedDict()
        # Remote: open traces by their last span's arrival, quietest first - a sweep looks at those
        # quiet long enough to be due, not at every open trace (a collector holds tens of thousands).
        self._quiet: OrderedDict[int, None] = OrderedDict()
        self._opened = 0  # traces opened so far
        self._modes: LocalMode | RemoteMode = LocalMode(self) if mode == "local" else RemoteMode(self, owns_spans)
        self._shutdown = False
        self._metrics = ProcessorMetrics(meter_provider, self._open_count, self._oldest_age, metric_labels)
        self._stop = threading.Event()
        self._wake = threading.Event()  # set when a bound evicted traces: assemble them now
        self._thread: threading.Thread | None = None
        self._background = background
        # A multiprocessing child (forked, or spawned: started afresh for a pool or a Process)
        # flushes as each piece of its work ends; None until the first span says which.
        self._forked_child: bool | None = None if isinstance(self._modes, LocalMode) else False
        if background:
            self._start_thread()
        if isinstance(self._modes, LocalMode):
            _processors.add(self)
            # A multiprocessing child (a fork, a process pool) leaves through os._exit: nothing else
            # would flush the spans and runs it made. Finalizers registered after the fork run then.
            multiprocessing.util.register_after_fork(self, RunProcessor._flush_when_child_exits)

    def _start_thread(self) -> None:
        interval = min(max(min(self.limits.grace_s, self.limits.quiet_s) / 2, 0.05), 1.0)
        self._thread = Thread(target=self._loop, args=(interval,), name="runmeter-runs", daemon=True)
        self._thread.start()

    def _after_fork_in_child(self) -> None:
        """The child starts with no trace buffered: the parent assembles what it holds. Spans the child
        makes in an inherited run carry its run id and are written as that run's partial record."""
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        # new events too: a parent thread may have been setting one (its lock held) at the fork
        self._stop, self._wake = threading.Event(), threading.Event()
        self._traces = OrderedDict()
        self._plain = OrderedDict()
        self._quiet = OrderedDict()
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
            self._modes.start(span, parent_context)
            if self._pending:
                self._assemble_soon()
        except Exception as exc:  # never break the user's program
            internal_error("on_start", exc)
        for d in self._downstream:
            d.on_start(span, parent_context=parent_context)

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
        if self._forked_child is None:  # known at the first span: a spawned child is bootstrapped by then
            self._forked_child = multiprocessing.parent_process() is not None
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
        mode = self._modes
        mode.read(span, facts, added)
        with self._lock:
            cut = self._hold(span, facts, added, now)
        if self._pending:
            self._assemble_soon()  # a bound was hit
        return cut if cut is not None else mode.forward(span, facts, added)

    def on_end_many(self, spans: Sequence[ReadableSpan]) -> None:
        """``on_end`` of each span (remote mode, where spans arrive ended, many at once: the
        collector's pipeline hands over a request's): each is read in turn, then all are held under
        one take of the lock, on one reading of the clock (the arrival time they share)."""
        mode = self._modes
        if not isinstance(mode, RemoteMode):
            for span in spans:
                self.on_end(span)
            return
        read = []
        now_out: list[ReadableSpan] = []  # not held: spans of a cut trace, and those runmeter failed on
        dialects, prices = self._dialects, self._prices
        for span in spans:
            try:
                facts, added = read_span(span, dialects, prices)  # (RemoteMode.read has nothing to do)
                read.append((span, facts, added))
            except Exception as exc:  # never lose the span
                internal_error("on_end", exc)
                self._metrics.spans_dropped.add(1)
                now_out.append(span)
        now = self._clock()
        with self._lock:
            for span, facts, added in read:
                try:
                    cut = self._hold(span, facts, added, now)
                except Exception as exc:
                    internal_error("on_end", exc)
                    self._metrics.spans_dropped.add(1)
                    cut = span
                if cut is not None:
                    now_out.append(cut)
        if self._pending:
            self._assemble_soon()
        for span in now_out:
            for d in self._downstream:
                d.on_end(span)

    def _hold(self, span: ReadableSpan, facts: SpanFacts, added: dict[str, Any], now: float) -> ReadableSpan | None:
        """Keep a read span in its trace (lock held). A span of a trace already cut by a limit is not
        kept: it is returned, with its run id, to be forwarded now."""
        mode = self._modes
        tombstone = self._cut.get(facts.trace_id)
        if tombstone is not None:
            # The trace was cut by a limit: count the span under the run it belongs to.
            if not facts.run_id and A.RUNMETER_RUN_ID not in added:
                added[A.RUNMETER_RUN_ID] = tombstone
            mode.cut(facts)
            return copy_adding(span, added, isinstance(mode, RemoteMode) and mode.owned) if added else span
        trace = self._traces.get(facts.trace_id) or self._trace(facts.trace_id)
        if trace.plain and (facts.kind != KIND_OTHER or facts.explicit_root or facts.run_id):
            trace.plain = False
            self._plain.pop(facts.trace_id, None)
        trace.facts[facts.span_id] = facts
        trace.last_seen = now
        if mode.name == "remote":
            self._quiet.move_to_end(facts.trace_id)
        if not trace.root_seen and (facts.parent_id is None or (span.parent is not None and span.parent.is_remote)):
            trace.root_seen = True
        mode.buffer(trace, span, facts, added, now)
        if len(trace.facts) >= self.limits.max_spans_per_run:
            self._evict(facts.trace_id, incomplete=True)
        return None

    def _trace(self, trace_id: int) -> Trace:
        """The trace's buffer (lock held); makes room under max_open_runs for a new one: in remote
        mode the oldest trace with no GenAI span yet goes first (it would make no run; should one
        come later, its run misses the spans before), else the oldest, its run cut."""
        trace = self._traces.get(trace_id)
        if trace is None:
            while len(self._traces) >= self.limits.max_open_runs:
                plain = next(iter(self._plain), None)
                self._evict(plain if plain is not None else next(iter(self._traces)), incomplete=True)
                if plain is None and not self._said_open_runs:
                    self._said_open_runs = True
                    self._say_open_runs()
            trace = self._traces[trace_id] = self._modes.new_trace(trace_id, self._clock())
            self._opened += 1
            trace.opened = self._opened
            if self._modes.name == "remote":
                self._plain[trace_id] = None
                self._quiet[trace_id] = None
        return trace

    def _say_open_runs(self) -> None:
        """Said once: the open-runs bound cut a run (a collector past the rate it can keep whole)."""
        lim = self.limits
        said = (
            f"more than runs.max_open_runs ({lim.max_open_runs} here) traces are open at once: the oldest are written "
            f"before they are done, flagged incomplete (counted in {A.RUNMETER_RUNS_INCOMPLETE_METRIC})"
        )
        if self._modes.name == "remote":
            said += (
                f". Runs stay whole up to max_open_runs / quiet_s new traces per second ({lim.max_open_runs / lim.quiet_s:,.0f}/s "
                "here): raise runs.max_open_runs (memory) or lower runs.quiet_s"
            )
        _log.warning(said)

    def _evict(self, trace_id: int, incomplete: bool) -> None:
        """Move a trace to the pending list (lock held)."""
        trace = self._traces.pop(trace_id, None)
        if trace is None:
            return
        self._plain.pop(trace_id, None)
        self._quiet.pop(trace_id, None)
        self._modes.evicted(trace_id, trace, incomplete)
        self._pending.append((trace_id, trace, incomplete))

    # --- completion ---------------------------------------------------------------------

    def sweep(self, force: bool = False, final: bool = False) -> int:
        """Assemble every trace that is due; returns how many run records were written.

        ``force`` completes traces whose spans have all ended (local) or that
        have any spans (remote) without waiting; ``final`` completes every
        trace, flagging those with spans still open as incomplete.
        """
        now = self._clock()
        with self._lock:
            due: list[tuple[int, int, bool]] = []
            for trace_id, trace in self._due_candidates(now, force or final):
                if now - trace.first_seen >= self.limits.max_run_age_s:
                    due.append((trace.opened, trace_id, True))
                    continue
                incomplete = self._modes.complete(trace, now, force, final)
                if incomplete is not None:
                    due.append((trace.opened, trace_id, incomplete))
            due.sort()  # in the order they were opened, however they were found
            for _, trace_id, incomplete in due:
                self._evict(trace_id, incomplete=incomplete)
        return self._drain()

    def _due_candidates(self, now: float, every: bool) -> Iterable[tuple[int, Trace]]:
        """The open traces a sweep must look at (lock held).

        Remote, neither forced nor final: only those past ``max_run_age_s`` (the oldest opened, at
        the front of ``_traces``) and those quiet for the shorter of ``quiet_s`` and
        ``rootless_quiet_s`` (the front of ``_quiet``): no other can be due (``RemoteMode.complete``),
        and each walk stops at the first trace that is not. Otherwise every open trace."""
        if every or self._modes.name != "remote":
            return list(self._traces.items())
        traces, lim = self._traces, self.limits
        found: dict[int, Trace] = {}
        for trace_id, trace in traces.items():
            if now - trace.first_seen < lim.max_run_age_s:
                break  # opened later, and the clock never goes back: younger still
            found[trace_id] = trace
        quiet_enough = min(lim.quiet_s, lim.rootless_quiet_s)
        for trace_id in self._quiet:
            trace = traces[trace_id]
            if now - trace.last_seen < quiet_enough:
                break  # a span arrived later for each trace after it
            found[trace_id] = trace
        return found.items()

    def _drain(self) -> int:
        """Assemble the evicted traces; their runs go to the sink in one call, then (remote) their spans downstream."""
        with self._drain_lock:
            return self._drain_locked()

    def _drain_locked(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        # Run totals in runmeter's decimal context: a force_flush or shutdown assembles on the
        # caller's thread, whose code may have lowered its precision (see pricing.MONEY_CONTEXT).
        with localcontext(MONEY_CONTEXT):
            done = [(trace, self._assemble(trace_id, trace, incomplete)) for trace_id, trace, incomplete in pending]
        records = [r for _, assembly in done if assembly is not None for r in assembly.records]
        for r in records:
            self._metrics.record_run(r)
        if records and self._sink is not None:
            try:
                self._sink.write_runs(records)
            except Exception as exc:
                internal_error("sink.write_runs", exc)
        self._modes.written(done)
        return len(records)

    def _assemble(self, trace_id: int, trace: Trace, incomplete: bool) -> Any:
        try:
            assembly = assemble(trace.facts.values(), loop_threshold=self.limits.loop_threshold, incomplete=incomplete)
        except Exception as exc:
            internal_error("assemble", exc)
            self._metrics.spans_dropped.add(len(trace.facts))
            assembly = None
        with self._lock:
            self._modes.assembled(trace)
            if incomplete and assembly is not None and assembly.records:
                self._cut[trace_id] = assembly.records[0].run_id
                while len(self._cut) > _MAX_TOMBSTONES:
                    self._cut.popitem(last=False)
        return assembly

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
        close = getattr(self._sink, "close", None)  # a sink with work of its own (live alerts) finishes it
        if close is not None:
            try:
                close()
            except Exception as exc:
                internal_error("sink.close", exc)
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

