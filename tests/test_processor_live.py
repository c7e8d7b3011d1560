"""RunProcessor in an agent process: real TracerProvider, live runs, ledger, late children, metrics."""

from __future__ import annotations

from decimal import Decimal
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runmeter.processor import (
    RUN_CONTEXT_KEY,
    Budget,
    InMemoryRunSink,
    LiveRun,
    RunLedger,
    RunLimits,
    RunProcessor,
    assemble,
    read_span,
)
from runmeter.conventions import load_dialects
from runmeter.processor import PriceBook
from tests.spans import llm, make_span, run_root, tool


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rig() -> Any:
    clock = Clock()
    exporter = InMemorySpanExporter()
    sink = InMemoryRunSink()
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    proc = RunProcessor(
        SimpleSpanProcessor(exporter), sink=sink, background=False, clock=clock,
        limits=RunLimits(grace_s=2.0), meter_provider=meters,
    )
    provider = TracerProvider()
    provider.add_span_processor(proc)
    tracer = provider.get_tracer("test")

    class Rig:
        pass

    r = Rig()
    r.clock, r.exporter, r.sink, r.reader, r.proc, r.tracer, r.provider = clock, exporter, sink, reader, proc, tracer, provider
    yield r
    provider.shutdown()


def start_run(tracer: Any, name: str, run_id: str, budget: Budget | None = None, **stamp: str) -> tuple[Any, LiveRun, object]:
    """What runmeter.run() does: a root span, a LiveRun in the context."""
    attrs = {"gen_ai.operation.name": "invoke_agent", "runmeter.run.root": True, "runmeter.run.id": run_id, "runmeter.run.name": name, **stamp}
    if budget:
        attrs.update(budget.to_attributes())
    span = tracer.start_span(f"invoke_agent {name}", attributes=attrs)
    live = LiveRun(run_id, RunLedger(run_id, budget), {"runmeter.run.id": run_id, "runmeter.run.name": name, **stamp}, span)
    ctx = trace.set_span_in_context(span)
    token = otel_context.attach(otel_context.set_value(RUN_CONTEXT_KEY, live, ctx))
    return span, live, token


def chat(tracer: Any, inp: int, out: int, input_hash: str | None = None) -> None:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini"}
    if input_hash:
        attrs["runmeter.llm.input_hash"] = input_hash
    with tracer.start_as_current_span("chat gpt-4o-mini", attributes=attrs) as s:
        s.set_attribute("gen_ai.usage.input_tokens", inp)
        s.set_attribute("gen_ai.usage.output_tokens", out)


def test_run_attributes_are_stamped_on_every_span_and_ledger_is_fed(rig: Any) -> None:
    root, live, token = start_run(rig.tracer, "triage", "run-1", **{"runmeter.run.owner": "ana", "runmeter.run.project": "sales"})
    chat(rig.tracer, 10_000, 1_000)
    with rig.tracer.start_as_current_span("db.query"):
        chat(rig.tracer, 10_000, 1_000)
    otel_context.detach(token)
    root.end()
    spans = {s.name: s for s in rig.exporter.get_finished_spans()}
    assert spans["db.query"].attributes["runmeter.run.id"] == "run-1"
    assert spans["db.query"].attributes["runmeter.run.owner"] == "ana"
    assert live.ledger.llm_calls == 2
    assert live.ledger.cost_usd == Decimal("0.0042")  # 2 x (0.0015 + 0.0006)
    assert live.ledger.input_tokens == 20_000


def test_run_record_waits_for_grace_and_takes_late_children(rig: Any) -> None:
    root, live, token = start_run(rig.tracer, "late", "run-late")
    otel_context.detach(token)
    late_parent = trace.set_span_in_context(root)
    root.end()
    rig.clock.t += 1.0
    rig.proc.sweep()
    assert rig.sink.runs == []  # within the grace period
    child = rig.tracer.start_span("chat gpt-4o-mini", context=late_parent, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 10_000, "gen_ai.usage.output_tokens": 1_000})
    rig.clock.t += 5.0
    rig.proc.sweep()
    assert rig.sink.runs == []  # a span is still open
    child.end()
    rig.clock.t += 2.5
    rig.proc.sweep()
    (r,) = rig.sink.runs
    assert r.run_id == "run-late" and r.llm_calls == 1 and r.cost_usd == Decimal("0.0021")
    assert rig.proc.live_spans == 0 and rig.proc.open_traces == 0


def test_loop_signal_is_an_event_on_the_run_root_once(rig: Any) -> None:
    root, live, token = start_run(rig.tracer, "loopy", "run-loop")
    for _ in range(5):
        with rig.tracer.start_as_current_span("execute_tool search", attributes={
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search", "runmeter.tool.args_hash": "q1"}):
            pass
    otel_context.detach(token)
    root.end()
    finished = {s.name: s for s in rig.exporter.get_finished_spans()}
    events = [e for e in finished["invoke_agent loopy"].events if e.name == "runmeter.loop.detected"]
    assert len(events) == 1
    assert events[0].attributes["runmeter.loop.kind"] == "identical_tool_call"
    assert events[0].attributes["runmeter.loop.count"] == 3  # fired when it crossed the threshold
    rig.proc.force_flush()
    (r,) = rig.sink.runs
    assert [(s.kind, s.count) for s in r.loop_signals] == [("identical_tool_call", 5)]
    metrics = rig.reader.get_metrics_data()
    names = {m.name: m for rm in metrics.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    loop_points = list(names["runmeter.loop.signals"].data.data_points)
    assert loop_points[0].value == 1 and loop_points[0].attributes["runmeter.loop.kind"] == "identical_tool_call"
    runs_points = list(names["runmeter.runs"].data.data_points)
    assert runs_points[0].attributes["runmeter.run.outcome"] == "unknown"

def test_run_cost_buckets_tell_a_tenth_of_a_cent_from_a_cent_from_a_dime(rig: Any) -> None:
    """Runs of $0.00021, $0.0021, $0.021 and $0.21 (gpt-4o-mini at $0.15 / $0.60 per million)
    each land in a bucket of their own whose bound is within 3x of the cost, so a quantile of run
    cost from the histogram means something; run durations are bucketed from a second to a day."""
    for k, (inp, out) in enumerate([(1_000, 100), (10_000, 1_000), (100_000, 10_000), (1_000_000, 100_000)]):
        root, _, token = start_run(rig.tracer, "sized", f"run-{k}")
        chat(rig.tracer, inp, out)
        otel_context.detach(token)
        root.end()
    rig.proc.force_flush()
    assert sorted(float(r.cost_usd) for r in rig.sink.runs) == pytest.approx([0.00021, 0.0021, 0.021, 0.21])
    metrics = rig.reader.get_metrics_data()
    names = {m.name: m for rm in metrics.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    (cost,) = names["runmeter.run.cost"].data.data_points
    bounds = list(cost.explicit_bounds)
    filled = [i for i, n in enumerate(cost.bucket_counts) if n]
    assert [cost.bucket_counts[i] for i in filled] == [1, 1, 1, 1]  # four runs, four buckets
    for usd, i in zip([0.00021, 0.0021, 0.021, 0.21], filled):
        assert i < len(bounds) and usd <= bounds[i] <= 3 * usd
    (duration,) = names["runmeter.run.duration"].data.data_points
    seconds = list(duration.explicit_bounds)
    assert seconds[0] <= 1 and seconds[-1] >= 86_400
    assert all(b / a <= 3 for a, b in zip(seconds, seconds[1:]))


def test_sdk_span_under_instrumentation_span_is_flagged_duplicate_live(rig: Any) -> None:
    root, live, token = start_run(rig.tracer, "dup", "run-dup")
    with rig.tracer.start_as_current_span("chat claude-haiku-4-5", attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-haiku-4-5"}) as outer:
        with rig.tracer.start_as_current_span("anthropic.messages.create", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-haiku-4-5"}) as inner:
            inner.set_attributes({"gen_ai.usage.input_tokens": 2000, "gen_ai.usage.output_tokens": 500})
        outer.set_attributes({"gen_ai.usage.input_tokens": 2000, "gen_ai.usage.output_tokens": 500})
    otel_context.detach(token)
    root.end()
    assert live.ledger.llm_calls == 1 and live.ledger.cost_usd == Decimal("0.0045")
    sdk = next(s for s in rig.exporter.get_finished_spans() if s.name == "anthropic.messages.create")
    assert sdk.attributes["runmeter.cost.duplicate"] is True
    rig.proc.force_flush()
    assert rig.sink.runs[0].llm_calls == 1


def test_budget_stop_raises_before_the_next_call(rig: Any) -> None:
    from runmeter.processor import BudgetExceeded

    root, live, token = start_run(rig.tracer, "capped", "run-cap", Budget(max_cost_usd=0.004))
    live.ledger.check_llm_call()
    chat(rig.tracer, 10_000, 1_000)  # 0.0021
    live.ledger.check_llm_call()
    chat(rig.tracer, 10_000, 1_000)  # 0.0042 >= 0.004
    with pytest.raises(BudgetExceeded) as info:
        live.ledger.check_llm_call()
    assert info.value.limit == "max_cost_usd" and info.value.run_id == "run-cap"
    assert info.value.value == pytest.approx(0.0042) and info.value.threshold == 0.004
    otel_context.detach(token)
    root.end()


def test_agent_span_of_another_instrumentation_becomes_a_live_run(rig: Any) -> None:
    with rig.tracer.start_as_current_span("invoke_agent helper", attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper"}):
        chat(rig.tracer, 10_000, 1_000)
    rig.proc.force_flush()
    (r,) = rig.sink.runs
    assert r.name == "helper" and not r.implicit and r.cost_usd == Decimal("0.0021")
    chat_span = next(s for s in rig.exporter.get_finished_spans() if s.name.startswith("chat"))
    assert chat_span.attributes["runmeter.run.id"] == r.run_id


def test_implicit_run_in_process(rig: Any) -> None:
    with rig.tracer.start_as_current_span("handle-request"):
        chat(rig.tracer, 10_000, 1_000)
    rig.proc.force_flush()
    (r,) = rig.sink.runs
    chat_span = next(s for s in rig.exporter.get_finished_spans() if s.name.startswith("chat"))
    assert r.implicit and chat_span.attributes["runmeter.run.id"] == r.run_id
    assert chat_span.attributes["runmeter.run.implicit"] is True


def test_outcome_events_reach_the_sink(rig: Any) -> None:
    ev = rig.proc.record_outcome("run-1", "accepted", "looks right")
    assert rig.sink.outcomes == [ev] and ev.time_ns > 0
    with pytest.raises(ValueError, match="outcome must be one of"):
        rig.proc.record_outcome("run-1", "great")


def test_shutdown_is_idempotent_and_flush_after_shutdown_is_false(rig: Any) -> None:
    rig.proc.shutdown()
    rig.proc.shutdown()
    assert rig.proc.force_flush() is False


def test_internal_error_never_reaches_the_caller(rig: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNMETER_SUPPRESS_INTERNAL_ERRORS", "1")
    monkeypatch.setattr("runmeter.processor._processor.read_span", lambda *a: 1 / 0)
    with rig.tracer.start_as_current_span("chat x", attributes={"gen_ai.operation.name": "chat"}):
        pass
    assert [s.name for s in rig.exporter.get_finished_spans()] == ["chat x"]  # forwarded untouched


# --- any arrival order gives the same run records ------------------------------------------

TREE = [
    run_root("top", 1, end_ms=500, attrs={"runmeter.task.id": "T1", "runmeter.run.outcome": "accepted"}),
    llm(2, 1, "gpt-4o-mini", 10_000, 1_000, start_ms=1),
    run_root("sub", 3, 1, start_ms=10, end_ms=200),
    llm(4, 3, "claude-haiku-4-5", 2_000, 500, provider="anthropic", start_ms=11),
    make_span("anthropic.messages.create", 5, 4, start_ms=12, attrs={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.usage.input_tokens": 2000, "gen_ai.usage.output_tokens": 500}),
    tool(6, 3, "plan", args_hash="a", start_ms=20),
    tool(7, 3, "edit", args_hash="b", resource="x.py", start_ms=30),
    tool(8, 3, "plan", args_hash="a", start_ms=40),
    tool(9, 3, "edit", args_hash="b", resource="x.py", start_ms=50),
    tool(10, 3, "plan", args_hash="a", start_ms=60),
    tool(11, 3, "edit", args_hash="b", resource="x.py", start_ms=70),
    llm(12, 1, "unknown-model", 5, 5, start_ms=300),
    make_span("http", 13, 12, start_ms=301),
]


def _records(order: list[int]) -> list[Any]:
    d = load_dialects()
    prices = PriceBook()
    facts = [read_span(TREE[i], d, prices)[0] for i in order]
    return assemble(facts).records


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(len(TREE)))))
def test_any_arrival_order_gives_the_same_records(order: list[int]) -> None:
    assert _records(order) == _records(list(range(len(TREE))))


def test_reference_order_totals() -> None:
    top, sub = _records(list(range(len(TREE))))
    assert sub.cost_usd == Decimal("0.0045") and sub.llm_calls == 1 and sub.tool_calls_total == 6
    assert {(s.kind, s.key, s.count) for s in sub.loop_signals} == {
        ("identical_tool_call", "plan#a", 3), ("identical_tool_call", "edit#b", 3),
        ("repeated_context_read", "x.py", 3), ("tool_cycle", "edit>plan", 3),
    }
    assert top.cost_usd == Decimal("0.0066") and top.llm_calls == 3 and top.unpriced_calls == 1
    assert top.pricing == "partially_priced" and top.task_id == "T1"


def test_remote_order_through_the_processor_is_the_same() -> None:
    import random

    results = []
    for seed in range(5):
        spans = list(TREE)
        random.Random(seed).shuffle(spans)
        sink = InMemoryRunSink()
        proc = RunProcessor(sink=sink, mode="remote", background=False)
        for s in spans:
            proc.on_end(s)
        proc.sweep(force=True)
        proc.shutdown()
        results.append(sorted(sink.runs, key=lambda r: r.run_id))
    assert all(r == results[0] for r in results)


def test_remote_run_completes_after_quiet_period_and_only_with_its_root() -> None:
    clock = Clock()
    sink = InMemoryRunSink()
    proc = RunProcessor(sink=sink, mode="remote", background=False, clock=clock, limits=RunLimits(quiet_s=30, max_run_age_s=600))
    proc.on_end(llm(2, 1, "gpt-4o-mini", 10_000, 1_000))  # the child first: root not here yet
    clock.t += 100
    proc.sweep()
    assert sink.runs == []  # no root, no completion (until max age)
    proc.on_end(run_root("r", 1, end_ms=50))
    clock.t += 29
    proc.sweep()
    assert sink.runs == []
    clock.t += 2
    proc.sweep()
    (r,) = sink.runs
    assert r.cost_usd == Decimal("0.0021") and not r.incomplete
    proc.on_end(llm(2, None, "gpt-4o-mini", 1, 1, trace_id=0xDEF))  # root never arrives... it is its own root
    proc.on_end(llm(3, 99, "gpt-4o-mini", 1, 1, trace_id=0xFED))  # parent 99 never arrives
    clock.t += 601
    proc.sweep()
    lost = [x for x in sink.runs if x.trace_id == f"{0xFED:032x}"]
    assert len(lost) == 1 and lost[0].incomplete
    proc.shutdown()


def test_remote_trace_whose_root_never_arrives_completes_after_rootless_quiet() -> None:
    clock = Clock()
    sink = InMemoryRunSink()
    limits = RunLimits(quiet_s=30, rootless_quiet_s=120, max_run_age_s=86_400)
    proc = RunProcessor(sink=sink, mode="remote", background=False, clock=clock, limits=limits)
    proc.on_end(llm(3, 99, "gpt-4o-mini", 10_000, 1_000, trace_id=0xFED))  # its root went to another replica
    clock.t += 60
    proc.on_end(llm(4, 99, "gpt-4o-mini", 10_000, 1_000, trace_id=0xFED, start_ms=70_000))  # still coming: quiet restarts
    clock.t += 119
    proc.sweep()
    assert sink.runs == [] and proc.open_traces == 1
    clock.t += 2
    proc.sweep()
    (r,) = sink.runs
    assert r.incomplete and r.llm_calls == 2 and r.cost_usd == Decimal("0.0042") and proc.open_traces == 0
    proc.shutdown()


_QUIET, _ROOTLESS_QUIET, _MAX_AGE = 30.0, 120.0, 600.0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["span", "root", "sweep"]), st.integers(0, 5), st.sampled_from([0, 1, 5, 29, 31, 60, 119, 121, 700])),
                max_size=60))
def test_a_remote_sweep_completes_exactly_the_traces_due_in_the_order_they_opened(steps: list[tuple[str, int, int]]) -> None:
    """A sweep looks only at the traces that can be due (the quietest and the oldest, not every open
    one): what it completes, and in what order, is what the rule says of every open trace - checked
    against the rule written out here (quiet_s after the last span with the root in, rootless_quiet_s
    without it, quiet_s for spans after their run was written, max_run_age_s from the first span;
    a trace cut incomplete takes no more spans)."""
    clock = Clock()
    sink = InMemoryRunSink()
    proc = RunProcessor(sink=sink, mode="remote", background=False, clock=clock,
                        limits=RunLimits(quiet_s=_QUIET, rootless_quiet_s=_ROOTLESS_QUIET, max_run_age_s=_MAX_AGE))
    opened: dict[int, dict[str, Any]] = {}  # the rule's view: open traces in the order they opened
    written_whole: set[int] = set()
    cut: set[int] = set()
    roots_sent: set[int] = set()
    expected: list[tuple[str, bool]] = []
    span_ids = iter(range(10_000, 100_000))
    for kind, k, dt in steps:
        clock.t += dt
        now, trace_id = clock.t, 0x100 + k
        if kind == "sweep":
            for tid, t in list(opened.items()):
                if now - t["first"] >= _MAX_AGE:
                    incomplete = True
                else:
                    idle = now - t["last"]
                    rootless = not t["root"] and idle >= (_QUIET if t["late"] else _ROOTLESS_QUIET)
                    if not (rootless or (t["root"] and idle >= _QUIET)):
                        continue
                    incomplete = rootless
                del opened[tid]
                expected.append((f"{tid:032x}", incomplete))
                (cut if incomplete else written_whole).add(tid)
            proc.sweep()
            got = list(dict.fromkeys((r.trace_id, r.incomplete) for r in sink.runs))  # a trace's records, once
            assert got == expected
            assert proc.open_traces == len(opened)
            continue
        root_id = trace_id * 1000 + 1
        is_root = kind == "root" and trace_id not in roots_sent
        span = llm(root_id if is_root else next(span_ids), None if is_root else root_id, "gpt-4o-mini", 10, 1, trace_id=trace_id)
        proc.on_end(span)
        if trace_id in cut:
            continue  # forwarded at once under the cut run's id: held nowhere
        if is_root:
            roots_sent.add(trace_id)
        t = opened.setdefault(trace_id, {"first": now, "last": now, "root": False, "late": trace_id in written_whole})
        t["last"] = now
        t["root"] = t["root"] or is_root
    proc.shutdown()


def test_a_span_that_never_ends_does_not_leak(rig: Any) -> None:
    leaked = rig.tracer.start_span("never ended")  # a program bug: no end()
    chat(rig.tracer, 100, 10)  # another trace, which completes as usual
    rig.clock.t += 3
    rig.proc.sweep()
    assert [r.incomplete for r in rig.sink.runs] == [False]
    assert rig.proc.live_spans == 1 and rig.proc.open_traces == 1
    rig.clock.t += 86_400  # past max_run_age_s
    rig.proc.sweep()
    assert rig.proc.live_spans == 0 and rig.proc.open_traces == 0  # forgotten, memory bounded
    assert leaked.is_recording()


def test_runs_evicted_by_a_bound_are_written_on_runmeters_thread_not_the_agents() -> None:
    """An agent's call must never wait on an insert: a bound that evicts traces wakes the
    background thread, which assembles them and writes their runs."""
    import threading

    writers: list[str] = []

    class Sink(InMemoryRunSink):
        def write_runs(self, records: Any) -> None:
            writers.append(threading.current_thread().name)
            super().write_runs(records)

    sink = Sink()
    proc = RunProcessor(sink=sink, limits=RunLimits(max_open_runs=1, grace_s=60.0))
    provider = TracerProvider()
    provider.add_span_processor(proc)
    tracer = provider.get_tracer("test")
    for _ in range(5):  # each new trace evicts the one before (max_open_runs=1)
        chat(tracer, 100, 10)
    deadline = time.monotonic() + 10
    while len(sink.runs) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(sink.runs) >= 4 and set(writers) == {"runmeter-runs"}
    provider.shutdown()


def test_a_final_sweep_returns_only_once_the_background_assembly_under_way_has_handed_its_spans_on() -> None:
    """The collector's drain is ``sweep(final=True)`` and then a flush of what reached the
    exporter: a sweep that found nothing left to assemble while the background thread was still
    assembling returned at once, the flush wrote nothing, and the drain said "done" with the
    thread's spans (and their log records) not yet written."""
    import threading

    clock = Clock()
    in_write = threading.Event()
    let_go = threading.Event()

    class SlowSink(InMemoryRunSink):
        def write_runs(self, records: Any) -> None:
            in_write.set()
            let_go.wait(10)  # the background thread, between its trace's runs and its spans
            super().write_runs(records)

    exporter = InMemorySpanExporter()
    proc = RunProcessor(SimpleSpanProcessor(exporter), sink=SlowSink(), mode="remote", clock=clock,
                        limits=RunLimits(quiet_s=1.0, grace_s=1.0))
    for s in (run_root("r", 1, end_ms=50), llm(2, 1, "gpt-4o-mini", 1000, 100)):
        proc.on_end(s)
    clock.t += 5  # quiet: the background thread's next sweep takes the trace
    assert in_write.wait(10)
    handed_on: list[int] = []
    sweeper = threading.Thread(target=lambda: (proc.sweep(final=True), handed_on.append(len(exporter.get_finished_spans()))))
    sweeper.start()
    sweeper.join(0.5)  # without the fix the sweep is back by now, with nothing handed on
    let_go.set()
    sweeper.join(10)
    assert handed_on == [2]
    proc.shutdown()
