"""OTLP requests (made by the SDK's own OTLP encoder) back to spans; bad spans rejected one by one."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runmeter.collector import Limits, MalformedRequest, convert, parse_request
from runmeter.processor import InMemoryRunSink, RunProcessor
from tests.spans import llm, run_root


def _request(spans):  # type: ignore[no-untyped-def]
    return encode_spans(spans)


def test_round_trip_of_real_sdk_spans() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("agent", "1.2")
    with tracer.start_as_current_span("invoke_agent triage", attributes={"gen_ai.operation.name": "invoke_agent", "n": 3, "ok": True,
                                                                         "xs": ["a", "b"], "ratio": 0.5}) as root:
        root.add_event("runmeter.run.outcome", {"runmeter.run.outcome": "accepted"})
        with tracer.start_as_current_span("chat gpt-5.5"):
            pass
    original = exporter.get_finished_spans()
    data = _request(original).SerializeToString()
    got = convert(parse_request(data))
    assert got.rejected == 0 and len(got.spans) == 2
    by_name = {s.name: s for s in got.spans}
    a = by_name["invoke_agent triage"]
    assert dict(a.attributes) == {"gen_ai.operation.name": "invoke_agent", "n": 3, "ok": True, "xs": ("a", "b"), "ratio": 0.5}
    assert a.events[0].name == "runmeter.run.outcome" and a.events[0].attributes["runmeter.run.outcome"] == "accepted"
    child = by_name["chat gpt-5.5"]
    orig_child = next(s for s in original if s.name == "chat gpt-5.5")
    assert child.context.trace_id == orig_child.context.trace_id and child.parent.span_id == orig_child.parent.span_id
    assert (child.start_time, child.end_time) == (orig_child.start_time, orig_child.end_time)
    assert child.instrumentation_scope.name == "agent" and child.instrumentation_scope.version == "1.2"


def test_bad_spans_are_rejected_alone() -> None:
    req = _request([run_root("r", 1, end_ms=50), llm(2, 1, "gpt-4o-mini", 10_000, 1_000)])
    spans = req.resource_spans[0].scope_spans[0].spans
    good = len(spans)
    bad_trace = spans.add()
    bad_trace.CopyFrom(spans[0])
    bad_trace.trace_id = b"\x01" * 8
    bad_span = spans.add()
    bad_span.CopyFrom(spans[1])
    bad_span.span_id = b""
    unknown_kind = spans.add()
    unknown_kind.CopyFrom(spans[1])
    unknown_kind.span_id = b"\x09" * 8
    unknown_kind.kind = 42  # an enum value this version does not know
    got = convert(parse_request(req.SerializeToString()))
    assert len(got.spans) == good + 1 and got.rejected == 2
    assert "trace_id must be 16 bytes" in got.error_message and "span_id must be 8 bytes" in got.error_message
    # the valid spans still make the run, priced
    sink = InMemoryRunSink()
    proc = RunProcessor(sink=sink, mode="remote", background=False)
    for s in got.spans:
        proc.on_end(s)
    proc.sweep(force=True)
    (run,) = sink.runs
    assert run.llm_calls == 2 and run.cost_usd == Decimal("0.0042")  # the unknown-kind copy is a second, valid call


def test_limits_on_attributes() -> None:
    req = _request([llm(2, None, "gpt-4o-mini", 10, 1, extra={f"k{i}": "v" * 100 for i in range(20)})])
    got = convert(parse_request(req.SerializeToString()), Limits(max_attributes_per_span=10, max_attribute_value_length=8))
    (s,) = got.spans
    assert len(s.attributes) == 10 and got.dropped_attributes > 0
    assert all(len(v) <= 8 for v in s.attributes.values() if isinstance(v, str))


def test_malformed_requests_raise_a_clear_error() -> None:
    with pytest.raises(MalformedRequest, match="not a valid OTLP"):
        parse_request(b"\xff\xfe garbage \x00")
    good = _request([run_root("r", 1, end_ms=50)]).SerializeToString()
    assert b"invoke_agent r" in good
    bad_utf8 = good.replace(b"invoke_agent r", b"invoke_agent \xff")  # a string field that is not UTF-8
    with pytest.raises(MalformedRequest):
        parse_request(bad_utf8)


def test_fuzzed_requests_never_crash() -> None:
    base = _request([run_root("r", 1, end_ms=50), llm(2, 1, "gpt-4o-mini", 10_000, 1_000)]).SerializeToString()
    rng = random.Random(7)
    valid_total = 0
    for _ in range(2_000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            got = convert(parse_request(bytes(data)))
        except MalformedRequest:
            continue
        valid_total += len(got.spans)
        assert len(got.spans) + got.rejected <= 2
    assert valid_total > 0
