"""The collector's path (OTLP bytes, worker processes, Native blocks) stores what the in-process
path stores (SDK span objects, the processor, the exporter's rows), row for row and byte for byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from runmeter.exporter import ClickHouseSpanExporter, open_writer
from runmeter.processor import PriceBook, RunLimits, RunProcessor
from tests.collector_rig import post, request_bytes, running
from tests.spans import LANGFUSE_OPENAI_GENERATION, MLFLOW_CHAT, OPENINFERENCE_LLM, OPENINFERENCE_TOOL, OPENLLMETRY_OPENAI_CHAT, llm, make_span, run_root, tool

OTHER = Resource.create({"service.name": "billing-svc", "deployment.environment": "prod", "host.cores": 8})


def _traces() -> list[ReadableSpan]:
    """Many shapes at once: nested sub-agents, tools with arguments, several dialects, an unpriced
    model, errors, events, links, trace state, arrays, unicode, two services; 24 traces, so both
    workers get some. Langfuse's and MLflow's usage arrive as JSON documents."""
    spans: list[ReadableSpan] = []
    for t in range(0xC100, 0xC100 + 24):
        spans += [
            run_root("triage", 1, trace_id=t, end_ms=900, attrs={"runmeter.run.owner": "ana", "runmeter.run.project": "checkout",
                                                                 "runmeter.task.id": f"task-{t % 5}"}),
            llm(2, 1, "gpt-4o-mini", 1000 + t % 7, 100, trace_id=t, cached=200, start_ms=10),
            tool(3, 1, "read_file", trace_id=t, start_ms=30, resource="src/a.py"),
            tool(4, 1, "read_file", trace_id=t, start_ms=40, resource="src/a.py"),
            make_span("execute_tool search", 5, 1, trace_id=t, start_ms=50, attrs={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search",
                "gen_ai.tool.call.arguments": '{"q": "naïve café ☕", "n": 3}', "tags": ("a", "b", "ç"), "scores": (1.5, 2.25),
            }),
            run_root("fix", 6, 1, trace_id=t, start_ms=100, end_ms=500),  # a sub-run
            llm(7, 6, "claude-3-5-haiku-latest", 3000, 250, provider="anthropic", trace_id=t, start_ms=110,
                extra={"gen_ai.usage.cache_creation.input_tokens": 500}),
            llm(8, 6, "no-such-model-xyz", 10, 5, trace_id=t, start_ms=200, error=True),
            make_span("chat gpt-4o-mini", 9, 1, trace_id=t, start_ms=600, attrs=dict(OPENLLMETRY_OPENAI_CHAT), kind=SpanKind.CLIENT),
            make_span("ChatOpenAI", 10, 1, trace_id=t, start_ms=650, attrs=dict(OPENINFERENCE_LLM)),
            make_span("read_file", 11, 1, trace_id=t, start_ms=700, attrs=dict(OPENINFERENCE_TOOL)),
            make_span("plain work", 12, 1, trace_id=t, start_ms=710, events=[("retry", {"attempt": 2, "why": "429"})]),
            make_span("OpenAI-generation", 13, 1, trace_id=t, start_ms=720, attrs=dict(LANGFUSE_OPENAI_GENERATION)),
            make_span("Completions", 14, 1, trace_id=t, start_ms=730, attrs=dict(MLFLOW_CHAT)),
        ]
    # One span of each trace with a link, a trace state, a status message and another resource and scope.
    odd = []
    for i, s in enumerate(spans):
        if s.context.span_id == 12 and i % 2:
            odd.append(ReadableSpan(
                name=s.name, context=SpanContext(s.context.trace_id, s.context.span_id, False, TraceFlags(1), TraceState([("vendor", "x1")])),
                parent=s.parent, resource=OTHER, attributes=dict(s.attributes or {}), events=list(s.events),
                links=[Link(SpanContext(0xFEED, 0xBEEF, False), {"link.kind": "follows"})], kind=SpanKind.SERVER,
                status=Status(StatusCode.ERROR, "upstream 503"), start_time=s.start_time, end_time=s.end_time,
                instrumentation_scope=InstrumentationScope("acme.tracing", "2.1.0"),
            ))
        else:
            odd.append(s)
    return odd


def _in_process(store: str, spool: Path, spans: list[ReadableSpan]) -> None:
    """The SDK path: span objects through the RunProcessor (as the collector configures it) and the exporter."""
    exporter = ClickHouseSpanExporter(writer=open_writer(store, spool), prices=PriceBook())
    processor = RunProcessor(exporter_processor(exporter), sink=exporter.run_sink, prices=PriceBook(), mode="remote",
                             limits=RunLimits(quiet_s=0.2))
    for s in spans:
        processor.on_end(s)
    processor.sweep(final=True)
    assert exporter.force_flush()
    processor.shutdown()  # and the exporter with it


def exporter_processor(exporter: ClickHouseSpanExporter) -> Any:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    return SimpleSpanProcessor(exporter)


# Columns that hold when a row was written, not what it says.
_WRITE_TIME = {"runmeter_runs": ["Version"]}


def _rows(writer: Any, table: str) -> list[tuple[Any, ...]]:
    cols = [c for (c,) in writer.query(f"SELECT name FROM system.columns WHERE database = currentDatabase() AND table = '{table}' ORDER BY position")
            if c not in _WRITE_TIME.get(table, [])]
    final = " FINAL" if table == "runmeter_runs" else ""
    order = "TraceId, RunId" if table == "runmeter_runs" else "TraceId, SpanId"
    # toString of each column: the stored value itself, compared byte for byte.
    return writer.query(f"SELECT {', '.join(f'toString({c})' for c in cols)} FROM {table}{final} ORDER BY {order}")


@pytest.mark.parametrize("workers", [2, 0])
def test_the_collector_stores_what_the_in_process_path_stores(tmp_path: Path, workers: int) -> None:
    spans = _traces()
    reference = f"chdb://{tmp_path / 'reference'}"
    _in_process(reference, tmp_path / "ref-spool", spans)
    with running(tmp_path, workers=workers) as c:
        # In several requests (a trace split across two of them, as a batch processor may send it).
        half = len(spans) // 2 + 5
        for part in (spans[:half], spans[half:]):
            assert post(c.http, request_bytes(part))[0] == 200
        assert c.server.collector.flush(60)
        got = {t: _rows(c.writer, t) for t in ("otel_traces", "runmeter_calls", "runmeter_runs")}
    ref_writer = open_writer(reference, tmp_path / "ref-spool")
    try:
        want = {t: _rows(ref_writer, t) for t in ("otel_traces", "runmeter_calls", "runmeter_runs")}
    finally:
        ref_writer.close()
    # Every span, and per trace 7 LLM calls (spans 2, 7, 8, 9, 10, Langfuse's 13, MLflow's 14) and 4 tool calls (3, 4, 5, 11),
    # a run and its sub-run: the reference itself is whole before it is compared.
    assert len(want["otel_traces"]) == len(spans) == 24 * 14
    assert len(want["runmeter_calls"]) == 24 * 11
    assert len(want["runmeter_runs"]) == 24 * 2
    for table in want:
        assert got[table] == want[table], table


class _TraceIdFront:
    """What the OpenTelemetry Collector's ``loadbalancing`` exporter does with ``routing_key:
    traceID`` (deploy/otelcol/): each request is split by trace id and every span of a trace goes
    to the same replica. (The Collector itself is not installable here; this is its routing.)"""

    def __init__(self, replicas: list[str]) -> None:
        import grpc

        self.channels = [grpc.insecure_channel(r) for r in replicas]
        self.exports = [ch.unary_unary(EXPORT) for ch in self.channels]
        self.traces: list[set[bytes]] = [set() for _ in replicas]

    def export(self, body: bytes) -> None:
        import zlib

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        req = ExportTraceServiceRequest.FromString(body)
        parts = [ExportTraceServiceRequest() for _ in self.exports]
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    i = zlib.crc32(span.trace_id) % len(parts)
                    self.traces[i].add(span.trace_id)
                    part = parts[i]
                    new_rs = part.resource_spans.add(schema_url=rs.schema_url)
                    new_rs.resource.CopyFrom(rs.resource)
                    new_ss = new_rs.scope_spans.add(schema_url=ss.schema_url)
                    new_ss.scope.CopyFrom(ss.scope)
                    new_ss.spans.add().CopyFrom(span)
        for export, part in zip(self.exports, parts):
            if part.resource_spans:
                export(part.SerializeToString(), timeout=30)

    def close(self) -> None:
        for ch in self.channels:
            ch.close()


EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _run_totals(writer: Any) -> list[tuple[Any, ...]]:
    return writer.query(
        "SELECT TraceId, RunId, Name, toString(CostUsd), LlmCalls, ToolCallsTotal, InputTokens, OutputTokens, Incomplete "
        "FROM runmeter_runs FINAL ORDER BY TraceId, RunId"
    )


def test_two_replicas_behind_a_trace_id_front_total_what_one_collector_totals(tmp_path: Path) -> None:
    """The scale-out recipe: replicas behind a load balancer routing by trace id, writing to one
    ClickHouse (a server: each replica's workers insert into it directly). Traces come split
    across requests, mixed with other traces; the run totals equal one collector's."""
    from tests.chhttp import ClickHouseHTTP

    spans = _traces()
    # Requests as a batch processor makes them: 7 spans each, so runs straddle requests and replicas.
    batches = [request_bytes(spans[i:i + 7]) for i in range(0, len(spans), 7)]
    ch = ClickHouseHTTP(str(tmp_path / "engine")).up()
    try:
        with running(tmp_path / "a", store_url=ch.url, workers=1) as a, running(tmp_path / "b", store_url=ch.url, workers=1) as b:
            front = _TraceIdFront([a.grpc, b.grpc])
            try:
                for body in batches:
                    front.export(body)
            finally:
                front.close()
            assert all(front.traces) and not front.traces[0] & front.traces[1]  # both replicas busy, no trace on both
            assert a.server.collector.flush(60) and b.server.collector.flush(60)
            replicated = _run_totals(a.writer)
            by_replica = a.writer.query("SELECT uniqExact(TraceId), uniqExact(ServiceName) FROM otel_traces")
        for table in ("otel_traces", "runmeter_calls", "runmeter_runs"):  # the same store, emptied, for one collector
            ch.query(f"TRUNCATE TABLE {table}")
        with running(tmp_path / "one", store_url=ch.url, workers=1) as one:
            for body in batches:
                assert post(one.http, body)[0] == 200
            assert one.server.collector.flush(60)
            single = _run_totals(one.writer)
    finally:
        ch.close()
    assert len(single) == 48 and all(not r[-1] for r in single)  # every run whole
    assert by_replica == [(24, 2)]
    assert replicated == single
