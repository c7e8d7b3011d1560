"""Run assembly on hand-built span trees, with totals worked out by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runmeter.processor import InMemoryRunSink, RunLimits, RunProcessor, RunRecord, run_id_for
from tests.spans import llm, make_span, run_root, tool

T = 0xABC

# gpt-4o-mini: $0.15/M input, $0.075/M cached input, $0.60/M output.
# 10,000 in + 1,000 out = 0.0015 + 0.0006 = 0.0021
MINI_10K_1K = Decimal("0.0021")
# claude-haiku-4-5: $1/M in, $5/M out. 2,000 in + 500 out = 0.002 + 0.0025 = 0.0045
HAIKU_2K_500 = Decimal("0.0045")


def feed(spans: list[ReadableSpan], *, many_too: bool = True, **limits: object) -> tuple[dict[str, RunRecord], list[ReadableSpan]]:
    """The spans through a remote-mode RunProcessor one by one (``on_end``), and again all at once
    (``on_end_many``, as the collector hands them over): both give the same runs and spans.
    ``many_too=False``: once only (a test that counts what reading the spans reports)."""
    out = []
    for many in (False, True) if many_too else (False,):
        exporter = InMemorySpanExporter()
        sink = InMemoryRunSink()
        proc = RunProcessor(SimpleSpanProcessor(exporter), sink=sink, mode="remote", background=False, limits=RunLimits(**limits))
        if many:
            proc.on_end_many(spans)
        else:
            for s in spans:
                proc.on_end(s)
        proc.sweep(force=True)
        proc.shutdown()
        out.append((sink.by_id(), list(exporter.get_finished_spans())))
    (records, forwarded), *again = out
    for records_many, forwarded_many in again:
        assert records_many == records
        assert [(s.name, dict(s.attributes or {})) for s in forwarded_many] == [(s.name, dict(s.attributes or {})) for s in forwarded]
    return records, forwarded


def by_name(records: dict[str, RunRecord]) -> dict[str, RunRecord]:
    return {r.name: r for r in records.values()}


def test_nested_sub_agents_roll_up() -> None:
    spans = [
        run_root("triage", 1, attrs={"runmeter.run.owner": "ana", "runmeter.run.project": "sales", "runmeter.run.outcome": "accepted"}, end_ms=100),
        llm(2, 1, "gpt-4o-mini", 10_000, 1_000, start_ms=1),
        run_root("research", 3, 1, start_ms=20, end_ms=60),
        llm(4, 3, "claude-haiku-4-5", 2_000, 500, provider="anthropic", start_ms=21),
        tool(5, 3, "search", args_hash="h1", start_ms=30),
        run_root("summarize", 6, 3, start_ms=40, end_ms=55),
        llm(7, 6, "gpt-4o-mini", 10_000, 1_000, start_ms=41),
    ]
    records, _ = feed(spans)
    runs = by_name(records)
    assert set(runs) == {"triage", "research", "summarize"}
    assert runs["summarize"].cost_usd == MINI_10K_1K
    assert runs["summarize"].parent_run_id == runs["research"].run_id
    assert runs["research"].cost_usd == HAIKU_2K_500 + MINI_10K_1K
    assert runs["research"].llm_calls == 2 and runs["research"].tool_calls == {"search": 1}
    assert runs["research"].parent_run_id == runs["triage"].run_id
    top = runs["triage"]
    assert top.cost_usd == 2 * MINI_10K_1K + HAIKU_2K_500  # 0.0087
    assert top.cost_usd == Decimal("0.0087")
    assert top.cost_by_model == {"claude-haiku-4-5": HAIKU_2K_500, "gpt-4o-mini": 2 * MINI_10K_1K}
    assert top.llm_calls == 3 and top.tool_calls == {"search": 1}
    assert top.tokens.input == 22_000 and top.tokens.output == 2_500
    assert (top.owner, top.project, top.outcome) == ("ana", "sales", "accepted")
    assert top.run_id == run_id_for(T, 1) and top.parent_run_id == ""
    assert top.pricing == "priced" and not top.incomplete
    assert top.spans == 7


def test_parallel_tool_calls_are_each_counted() -> None:
    spans = [run_root("fanout", 1, end_ms=50)] + [
        tool(10 + i, 1, name, args_hash=f"a{i}", start_ms=5, end_ms=20) for i, name in enumerate(["read_file", "read_file", "search", "grep"])
    ]
    records, _ = feed(spans)
    (r,) = records.values()
    assert r.tool_calls == {"grep": 1, "read_file": 2, "search": 1}
    assert r.tool_calls_total == 4 and r.loop_signals == ()


def test_retries_share_a_task_id() -> None:
    spans = [
        run_root("fix-bug", 1, attrs={"runmeter.task.id": "BUG-7", "runmeter.run.outcome": "rejected"}, end_ms=40),
        llm(2, 1, "gpt-4o-mini", 10_000, 1_000, start_ms=1),
        run_root("fix-bug", 3, attrs={"runmeter.task.id": "BUG-7", "runmeter.run.outcome": "accepted"}, start_ms=50, end_ms=90),
        llm(4, 3, "gpt-4o-mini", 10_000, 1_000, start_ms=51),
    ]
    records, _ = feed(spans)
    assert len(records) == 2
    assert {r.task_id for r in records.values()} == {"BUG-7"}
    assert sorted(r.outcome for r in records.values()) == ["accepted", "rejected"]
    assert sum(r.cost_usd for r in records.values()) == 2 * MINI_10K_1K


def test_identical_tool_call_four_times() -> None:
    spans = [run_root("loop", 1, end_ms=100)] + [tool(10 + i, 1, "search", args_hash="same", start_ms=i * 10) for i in range(4)]
    records, _ = feed(spans)
    (r,) = records.values()
    kinds = {(s.kind, s.key): s.count for s in r.loop_signals}
    assert kinds == {("identical_tool_call", "search#same"): 4}


def test_file_read_five_times_is_a_repeated_context_read() -> None:
    spans = [run_root("reader", 1, end_ms=100)] + [
        tool(10 + i, 1, "read_file", args_hash=f"x{i}", resource="src/app.py", start_ms=i * 10) for i in range(5)
    ] + [tool(20, 1, "read_file", args_hash="y", resource="README.md", start_ms=60)]
    records, _ = feed(spans)
    (r,) = records.values()
    assert r.repeated_context_reads == {"src/app.py": 5}
    assert [(s.kind, s.key, s.count) for s in r.loop_signals] == [("repeated_context_read", "src/app.py", 5)]


def test_tool_cycle_a_b_a_b_a_b() -> None:
    names = ["plan", "edit"] * 3
    spans = [run_root("cycler", 1, end_ms=100)] + [tool(10 + i, 1, n, args_hash=f"{n}{i}", start_ms=i * 10) for i, n in enumerate(names)]
    records, _ = feed(spans)
    (r,) = records.values()
    assert [(s.kind, s.key, s.count) for s in r.loop_signals] == [("tool_cycle", "edit>plan", 3)]


def test_identical_llm_input_repeated() -> None:
    spans = [run_root("chatty", 1, end_ms=100)] + [
        llm(10 + i, 1, "gpt-4o-mini", 100, 10, start_ms=i * 10, extra={"runmeter.llm.input_hash": "in1"}) for i in range(3)
    ]
    records, _ = feed(spans)
    (r,) = records.values()
    assert [(s.kind, s.count) for s in r.loop_signals] == [("identical_llm_input", 3)]


def test_trace_without_explicit_root_is_an_implicit_run() -> None:
    spans = [
        make_span("POST /tickets", 1, end_ms=100),
        make_span("db.query", 2, 1, start_ms=1),
        llm(3, 1, "gpt-4o-mini", 10_000, 1_000, start_ms=5),
    ]
    records, exported = feed(spans)
    (r,) = records.values()
    assert r.implicit and r.name == "POST /tickets" and r.run_id == run_id_for(T, 1)
    assert r.cost_usd == MINI_10K_1K
    stamped = {s.context.span_id: s.attributes.get("runmeter.run.id") for s in exported}
    assert stamped[3] == run_id_for(T, 1)


def test_a_trace_split_across_replicas_sums_into_one_run_id() -> None:
    # Replica A got the agent root and one call; replica B got the other two calls (their parent,
    # the root, is not there). B's calls must carry the run id A writes, so storage sums them.
    root = make_span("invoke_agent triage", 1, attrs={"gen_ai.operation.name": "invoke_agent"}, end_ms=500)
    on_a, spans_a = feed([root, llm(2, 1, "gpt-4o-mini", 10_000, 1_000)])
    on_b, spans_b = feed([llm(3, 1, "gpt-4o-mini", 10_000, 1_000, start_ms=100), llm(4, 1, "gpt-4o-mini", 10_000, 1_000, start_ms=200)])
    (run_a,), (run_b,) = on_a.values(), on_b.values()
    assert run_a.run_id == run_b.run_id == run_id_for(T, 1)
    assert run_a.cost_usd == MINI_10K_1K and run_b.cost_usd == 2 * MINI_10K_1K and run_b.llm_calls == 2
    assert {s.attributes["runmeter.run.id"] for s in spans_a + spans_b} == {run_id_for(T, 1)}


def test_trace_without_genai_spans_makes_no_run() -> None:
    records, exported = feed([make_span("GET /health", 1), make_span("db.query", 2, 1)])
    assert records == {} and len(exported) == 2


def test_unknown_model_makes_run_partially_priced_not_zero() -> None:
    spans = [run_root("mixed", 1, end_ms=50), llm(2, 1, "gpt-4o-mini", 10_000, 1_000), llm(3, 1, "in-house-llm-7", 5_000, 100)]
    records, exported = feed(spans)
    (r,) = records.values()
    assert r.pricing == "partially_priced" and r.unpriced_calls == 1 and r.llm_calls == 2
    assert r.cost_usd == MINI_10K_1K
    unpriced = next(s for s in exported if s.context.span_id == 3)
    assert unpriced.attributes["runmeter.cost.unpriced"] is True
    assert "runmeter.cost.usd" not in unpriced.attributes


def test_spans_are_priced_and_stamped_on_the_copy() -> None:
    records, exported = feed([run_root("one", 1, end_ms=50), llm(2, 1, "gpt-4o-mini", 10_000, 1_000)])
    span = next(s for s in exported if s.context.span_id == 2)
    assert span.attributes["runmeter.cost.usd"] == float(MINI_10K_1K)
    assert isinstance(span.attributes["runmeter.cost.usd"], float)
    assert span.attributes["gen_ai.usage.cost.amount"] == float(MINI_10K_1K)
    assert span.attributes["gen_ai.usage.cost.currency"] == "USD"
    assert span.attributes["runmeter.cost.source"] == "genai-prices@0.2.3"
    assert span.attributes["runmeter.run.id"] == run_id_for(T, 1)


def test_existing_runmeter_cost_is_kept_and_other_cost_kept_apart() -> None:
    spans = [
        run_root("costs", 1, end_ms=50),
        llm(2, 1, "gpt-4o-mini", 10_000, 1_000, extra={"runmeter.cost.usd": 0.5, "runmeter.cost.source": "override:runmeter.toml"}),
        llm(3, 1, "gpt-4o-mini", 10_000, 1_000, start_ms=20, extra={"gen_ai.usage.cost": 9.99}),
    ]
    records, exported = feed(spans)
    (r,) = records.values()
    assert r.cost_usd == Decimal("0.5") + MINI_10K_1K  # the OpenLIT figure is not trusted
    assert r.external_cost_usd == Decimal("9.99")
    third = next(s for s in exported if s.context.span_id == 3)
    assert third.attributes["runmeter.cost.external_usd"] == 9.99


def test_span_storm_is_bounded_and_flagged_incomplete() -> None:
    spans = [run_root("storm", 1, end_ms=10_000)] + [
        tool(100 + i, 1, "poll", args_hash=str(i), start_ms=i) for i in range(250)
    ]
    exporter = InMemorySpanExporter()
    sink = InMemoryRunSink()
    proc = RunProcessor(
        SimpleSpanProcessor(exporter), sink=sink, mode="remote", background=False,
        limits=RunLimits(max_spans_per_run=100, max_open_runs=5),
    )
    for s in spans:
        proc.on_end(s)
        assert proc.open_traces <= 5
    proc.sweep(force=True)
    assert len(exporter.get_finished_spans()) == 251  # nothing dropped
    first = sink.runs[0]
    assert first.incomplete and first.tool_calls_total == 99
    late = [s for s in exporter.get_finished_spans() if s.context.span_id >= 199]
    assert late and all(s.attributes["runmeter.run.id"] == first.run_id for s in late)
    proc.shutdown()


def test_open_trace_limit_evicts_oldest_as_incomplete_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    spans = [llm(1, None, "gpt-4o-mini", 100, 10, trace_id=t) for t in range(1, 21)]
    exporter = InMemorySpanExporter()
    sink = InMemoryRunSink()
    proc = RunProcessor(
        SimpleSpanProcessor(exporter), sink=sink, mode="remote", background=False, limits=RunLimits(max_open_runs=8, quiet_s=2.0)
    )
    for s in spans:
        proc.on_end(s)
        assert proc.open_traces <= 8
    proc.sweep()
    assert len(sink.runs) == 12 and all(r.incomplete for r in sink.runs)
    proc.shutdown()
    assert len(sink.runs) == 20 and len(exporter.get_finished_spans()) == 20
    # Twelve runs cut, one warning: the bound, the metric that counts them, the rate it keeps whole (8 / 2 s = 4/s).
    said = [r.getMessage() for r in caplog.records if "max_open_runs" in r.getMessage()]
    assert len(said) == 1 and "(8 here)" in said[0] and "runmeter.runs.incomplete" in said[0] and "(4/s here)" in said[0]


def test_the_open_runs_bound_takes_traces_with_no_genai_span_first(caplog: pytest.LogCaptureFixture) -> None:
    """A collector also fed a service's other traces (an OpenTelemetry Collector fanning out
    everything) holds them open too: at the bound, those go before any run is cut."""
    exporter = InMemorySpanExporter()
    sink = InMemoryRunSink()
    proc = RunProcessor(SimpleSpanProcessor(exporter), sink=sink, mode="remote", background=False, limits=RunLimits(max_open_runs=4))
    proc.on_end(llm(1, None, "gpt-4o-mini", 10_000, 1_000, trace_id=100))  # run A, the oldest open trace
    for t in (1, 2, 3):  # a web service's requests: no LLM call, no tool, no agent
        proc.on_end(make_span("GET /orders", 1, trace_id=t))
    proc.on_end(llm(1, None, "gpt-4o-mini", 10_000, 1_000, trace_id=101))  # run B: room made by a plain trace, not by A
    assert proc.open_traces == 4 and sink.runs == []
    proc.on_end(make_span("GET /orders", 1, trace_id=4))  # plain traces make room for one another too
    proc.on_end(llm(1, None, "gpt-4o-mini", 10_000, 1_000, trace_id=102))
    proc.on_end(llm(1, None, "gpt-4o-mini", 10_000, 1_000, trace_id=103))  # the last plain one goes
    assert sink.runs == [] and not [r for r in caplog.records if "max_open_runs" in r.getMessage()]
    proc.on_end(llm(1, None, "gpt-4o-mini", 10_000, 1_000, trace_id=104))  # only runs left: the oldest, A, is cut
    (cut,) = sink.runs
    assert cut.trace_id == f"{100:032x}" and cut.incomplete and cut.cost_usd == MINI_10K_1K
    assert len([r for r in caplog.records if "max_open_runs" in r.getMessage()]) == 1
    proc.sweep(force=True)
    whole = [r for r in sink.runs if not r.incomplete]
    assert sorted(r.trace_id for r in whole) == [f"{t:032x}" for t in (101, 102, 103, 104)]
    assert all(r.cost_usd == MINI_10K_1K for r in whole)
    proc.shutdown()
    assert len(exporter.get_finished_spans()) == 9  # every span written, plain or not


def test_spans_handed_over_at_once_are_kept_or_forwarded_as_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """``on_end_many``: spans of a trace already cut by a limit go downstream at once with the cut
    run's id, and a span runmeter fails to read is forwarded as it is and counted - never lost."""
    monkeypatch.setenv("RUNMETER_SUPPRESS_INTERNAL_ERRORS", "1")

    class Unreadable(ReadableSpan):
        @property
        def status(self):  # type: ignore[no-untyped-def, override]
            raise RuntimeError("a span runmeter cannot read")

    exporter = InMemorySpanExporter()
    sink = InMemoryRunSink()
    proc = RunProcessor(SimpleSpanProcessor(exporter), sink=sink, mode="remote", background=False,
                        limits=RunLimits(max_spans_per_run=10))
    proc.on_end_many([run_root("storm", 1, end_ms=10_000)] + [tool(100 + i, 1, "poll", start_ms=i) for i in range(9)])
    (cut,) = sink.runs  # ten spans: the bound, so the run is written, cut
    assert cut.incomplete and cut.tool_calls_total == 9
    bad = Unreadable(name="odd", context=make_span("odd", 500).context, attributes={"k": "v"})
    proc.on_end_many([tool(200 + i, 1, "poll", start_ms=50 + i) for i in range(3)] + [bad])
    late = [s for s in exporter.get_finished_spans() if 200 <= s.context.span_id < 300]
    assert len(late) == 3 and all(s.attributes["runmeter.run.id"] == cut.run_id for s in late)
    assert any(s is bad for s in exporter.get_finished_spans())  # forwarded untouched
    proc.sweep(force=True)
    assert len(exporter.get_finished_spans()) == 14  # nothing dropped
    proc.shutdown()


def test_run_totals_are_exact_when_the_caller_lowered_its_decimal_precision() -> None:
    """A flush or shutdown assembles runs on the caller's thread: its decimal context (a precision
    of 3 here) does not round a run's total. Two gpt-4o-mini calls: 123,457 in x $0.15/M + 9,876
    out x $0.60/M = $0.02444415, and 200,000 x $0.15/M + 1,234 x $0.60/M = $0.0307404."""
    import decimal

    spans = [run_root("exact", 1), llm(2, 1, "gpt-4o-mini", 123_457, 9_876, start_ms=1), llm(3, 1, "gpt-4o-mini", 200_000, 1_234, start_ms=20)]
    with decimal.localcontext(decimal.Context(prec=3)):
        records, _ = feed(spans)
    (record,) = records.values()
    assert record.cost_usd == Decimal("0.02444415") + Decimal("0.0307404") == Decimal("0.05518455")
    assert record.cost_by_model == {"gpt-4o-mini": Decimal("0.05518455")}
