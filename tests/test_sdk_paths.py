"""The SDK fast paths (runmeter/processor/_sdk.py) and the public API give the same spans and runs.

The same spans go through a RunProcessor in two fresh processes, one with the fast paths and one
with RUNMETER_SDK_FAST_PATHS=0; what reaches the exporter and the run sink must be identical.
(`make test` also runs the processor tests with the fast paths off, and on the lowest SDK.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from runmeter.processor import InMemoryRunSink, RunProcessor, _sdk
import runmeter

exporter, sink = InMemorySpanExporter(), InMemoryRunSink()
processor = RunProcessor(SimpleSpanProcessor(exporter), sink=sink, background=False)
tp = TracerProvider()
tp.add_span_processor(processor)
tracer = tp.get_tracer("t")
with runmeter.run("r", owner="ana", tracer_provider=tp) as run:
    with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini"}) as outer:
        outer.set_attribute("gen_ai.usage.input_tokens", 1000)
        outer.set_attribute("gen_ai.usage.output_tokens", 100)
        with tracer.start_as_current_span("openai.chat", attributes={  # the same call, seen again
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100}):
            pass
    with tracer.start_as_current_span("execute_tool read_file", attributes={"gen_ai.tool.name": "read_file"}):
        pass
    run.accept()
processor.force_flush()
spans = sorted(({"name": s.name, "attributes": {k: v if not isinstance(v, tuple) else list(v) for k, v in s.attributes.items()
                                                if k not in ("runmeter.run.id",)}} for s in exporter.get_finished_spans()),
               key=lambda s: s["name"])
(r,) = sink.runs
print(json.dumps({"fast": _sdk.FAST, "spans": spans, "run": [r.name, r.owner, str(r.cost_usd.normalize()), r.llm_calls, r.tool_calls, r.outcome]}))
"""


def _run(fast: str) -> dict:  # type: ignore[type-arg]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNMETER_", "PYTEST_"))}
    env["RUNMETER_SDK_FAST_PATHS"] = fast
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_fast_paths_and_the_public_api_agree() -> None:
    fast, public = _run("1"), _run("0")
    assert fast["fast"] is True and public["fast"] is False
    assert fast["spans"] == public["spans"]
    assert fast["run"] == public["run"]
    # and the figures are right: gpt-4o-mini 1,000 in x $0.15/M + 100 out x $0.60/M, once
    assert fast["run"] == ["r", "ana", "0.00021", 1, {"read_file": 1}, "accepted"]
    duplicate = next(s for s in fast["spans"] if s["name"] == "openai.chat")["attributes"]
    assert duplicate["runmeter.cost.duplicate"] is True and "runmeter.cost.usd" not in duplicate


def test_spans_made_for_the_collector_equal_the_sdk_constructors() -> None:
    """``readable_span`` and ``span_context`` (the collector's OTLP path) make what the SDK's
    constructors make, field for field, on the fast path and on the public one."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

    from runmeter.processor import readable_span, span_context
    from runmeter.processor._sdk import FAST_NEW

    assert FAST_NEW or os.environ.get("RUNMETER_SDK_FAST_PATHS") == "0"
    state = TraceState([("k", "v")])
    ctx = span_context(0xABC, 0x12, True, TraceFlags(1), state)
    want_ctx = SpanContext(0xABC, 0x12, is_remote=True, trace_flags=TraceFlags(1), trace_state=state)
    assert ctx == want_ctx and ctx.is_valid and ctx.trace_state == state
    assert span_context(0xABC, 0x13, False, TraceFlags(1)).trace_state == SpanContext(0xABC, 0x13, False).trace_state
    args = dict(name="chat x", context=ctx, parent=span_context(0xABC, 0x11, False, TraceFlags(1)), resource=Resource({"a": 1}),
                attributes={"k": "v"}, events=[], links=[], kind=SpanKind.CLIENT, status=Status(StatusCode.ERROR, "boom"),
                start_time=5, end_time=9)
    scope = InstrumentationScope("s", "1")
    made = readable_span(*args.values(), scope)
    want = ReadableSpan(**args, instrumentation_scope=scope)
    assert made.__dict__ == want.__dict__
    assert (made.name, made.context, made.parent, dict(made.attributes or {}), made.kind, made.status.description, made.end_time) == (
        want.name, want.context, want.parent, dict(want.attributes or {}), want.kind, want.status.description, want.end_time)


def test_a_processor_that_owns_its_spans_adds_to_them_what_it_adds_to_copies() -> None:
    """The collector's spans are its own (made from OTLP, held by nobody else): ``owns_spans``
    adds runmeter's attributes to them in place, removals included (a duplicate call gives up its
    cost), with the attributes a copy gets; without it the spans given stay as they were."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags

    from runmeter.processor import InMemoryRunSink, RunLimits, RunProcessor, _sdk

    def spans() -> list[ReadableSpan]:
        def span(sid: int, parent: int | None, name: str, attrs: dict[str, object]) -> ReadableSpan:
            return ReadableSpan(
                name=name, context=SpanContext(7, sid, True, TraceFlags(1)),
                parent=SpanContext(7, parent, True, TraceFlags(1)) if parent else None,
                resource=Resource({"service.name": "s"}), attributes=attrs, start_time=sid * 10, end_time=sid * 10 + 100 - sid,
            )
        chat = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100}
        return [
            span(1, None, "invoke_agent a", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a"}),
            span(2, 1, "chat gpt-4o-mini", dict(chat)),
            # The same call seen again under it (a framework's span and the client's): priced here, then
            # found a duplicate at assembly, so its cost attributes are removed.
            span(3, 2, "openai.chat", dict(chat, **{"runmeter.cost.usd": 0.00021, "runmeter.cost.source": "genai-prices"})),
        ]

    def forward(owns: bool) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
        given, got = spans(), []

        class Keep:
            def on_start(self, span: object, parent_context: object = None) -> None: ...
            def on_end(self, span: ReadableSpan) -> None: got.append(span)
            def shutdown(self) -> None: ...
            def force_flush(self, timeout_millis: int = 30000) -> bool: return True

        proc = RunProcessor(Keep(), sink=InMemoryRunSink(), mode="remote", background=False, limits=RunLimits(quiet_s=0.1),
                            owns_spans=owns)
        for s in given:
            proc.on_end(s)
        proc.sweep(final=True)
        return given, got

    given, copies = forward(owns=False)
    owned, in_place = forward(owns=True)
    assert [dict(s.attributes or {}) for s in given] == [dict(s.attributes or {}) for s in spans()]  # untouched
    assert all(a is not b for a, b in zip(given, copies))
    # In place where the SDK's span layout is known (the fast paths); copies, as before, where not.
    assert all((a is b) == _sdk.FAST for a, b in zip(owned, in_place))
    assert [dict(s.attributes or {}) for s in in_place] == [dict(s.attributes or {}) for s in copies]
    run_id = in_place[0].attributes["runmeter.run.id"]  # type: ignore[index]
    assert all(s.attributes["runmeter.run.id"] == run_id for s in in_place)  # type: ignore[index]
    counted, duplicate = in_place[1].attributes or {}, in_place[2].attributes or {}
    # gpt-4o-mini: 1,000 input tokens x $0.15/M + 100 output x $0.60/M
    assert counted["runmeter.cost.usd"] == 0.00021 and "runmeter.cost.duplicate" not in counted
    assert duplicate["runmeter.cost.duplicate"] is True
    assert "runmeter.cost.usd" not in duplicate and "runmeter.cost.source" not in duplicate
