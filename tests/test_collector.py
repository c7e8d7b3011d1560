"""runmeter collector end to end: real OTLP clients in, runs with costs out of ClickHouse."""

from __future__ import annotations

import gzip
import http.client
import json
import random
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind

from tests.collector_rig import mini_cost, post, request_bytes, running
from tests.spans import (
    BASE_NS,
    MS,
    OPENINFERENCE_AGENT,
    OPENINFERENCE_LLM,
    OPENINFERENCE_TOOL,
    OPENLIT_CHAT,
    OPENLLMETRY_OPENAI_CHAT,
    OPENLLMETRY_TOOL,
    OPENLLMETRY_WORKFLOW,
    llm,
    make_span,
    run_root,
)

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _run(trace_id: int, name: str = "triage", project: str | None = None) -> list:  # type: ignore[type-arg]
    extra = {"runmeter.run.project": project} if project else {}
    return [
        run_root(name, 1, trace_id=trace_id, end_ms=100, attrs=extra),
        llm(2, 1, "gpt-4o-mini", 1000, 100, trace_id=trace_id, start_ms=10),
        llm(3, 1, "gpt-4o-mini", 2000, 50, trace_id=trace_id, start_ms=40),
    ]


def _runs(c, trace_ids: list[int]) -> dict[str, tuple]:  # type: ignore[no-untyped-def, type-arg]
    ids = ", ".join(f"'{t:032x}'" for t in trace_ids)
    rows = c.rows(f"SELECT TraceId, CostUsd, LlmCalls, Project FROM runmeter_runs FINAL WHERE TraceId IN ({ids})")
    return {r[0]: tuple(r[1:]) for r in rows}


def _grpc_call(target: str, body: bytes, metadata: tuple = ()) -> tuple[grpc.StatusCode, bytes | None, grpc.Call | None]:  # type: ignore[type-arg]
    with grpc.insecure_channel(target) as ch:
        fn = ch.unary_unary(EXPORT)
        try:
            resp, call = fn.with_call(body, metadata=metadata, timeout=30)
            return call.code(), resp, call
        except grpc.RpcError as err:
            return err.code(), None, err  # type: ignore[return-value]


def test_python_otlp_grpc_and_http_exporters_arrive_as_priced_runs(tmp_path: Path) -> None:
    with running(tmp_path) as c:
        grpc_exp = GrpcExporter(endpoint=c.grpc, insecure=True)
        http_exp = HttpExporter(endpoint=c.http)
        assert grpc_exp.export(_run(0xA1)) is SpanExportResult.SUCCESS
        assert http_exp.export(_run(0xA2)) is SpanExportResult.SUCCESS
        grpc_exp.shutdown()
        http_exp.shutdown()
        runs = _runs(c, [0xA1, 0xA2])
        expected = mini_cost(3000, 150)
        assert set(runs) == {f"{0xA1:032x}", f"{0xA2:032x}"}
        for cost, calls, _ in runs.values():
            assert cost == pytest.approx(expected, rel=1e-9) and calls == 2
        assert c.rows(f"SELECT count() FROM otel_traces WHERE TraceId IN ('{0xA1:032x}', '{0xA2:032x}')") == [(6,)]


def _other_instrumentations() -> list:  # type: ignore[type-arg]
    """One trace each from OpenLLMetry, OpenInference and OpenLIT: the dialect tests' attribute
    sets, with each library's span names and kinds."""
    openllmetry = [
        make_span("triage.workflow", 1, trace_id=0xD1, end_ms=100, attrs=OPENLLMETRY_WORKFLOW),
        make_span("openai.chat", 2, 1, trace_id=0xD1, start_ms=5, kind=SpanKind.CLIENT,
                  attrs={**OPENLLMETRY_OPENAI_CHAT, "traceloop.workflow.name": "triage"}),
        make_span("search.tool", 3, 1, trace_id=0xD1, start_ms=30, attrs=OPENLLMETRY_TOOL),
    ]
    openinference = [
        make_span("triager", 1, trace_id=0xD2, end_ms=100, attrs=OPENINFERENCE_AGENT),
        make_span("ChatCompletion", 2, 1, trace_id=0xD2, start_ms=5, attrs=OPENINFERENCE_LLM),
        make_span("read_file", 3, 1, trace_id=0xD2, start_ms=40, attrs=OPENINFERENCE_TOOL),
    ]
    openlit = [make_span("chat gpt-4o-mini", 1, trace_id=0xD3, end_ms=50, kind=SpanKind.CLIENT, attrs=OPENLIT_CHAT)]
    return openllmetry + openinference + openlit


def test_openllmetry_openinference_and_openlit_spans_are_normalized_and_priced(tmp_path: Path) -> None:
    with running(tmp_path) as c:
        exporter = GrpcExporter(endpoint=c.grpc, insecure=True)
        assert exporter.export(_other_instrumentations()) is SpanExportResult.SUCCESS
        exporter.shutdown()
        rows = c.rows(f"SELECT TraceId, CostUsd, ExternalCostUsd, LlmCalls, ToolCallsTotal, CacheReadTokens, Implicit "
                      f"FROM runmeter_runs FINAL WHERE TraceId IN ('{0xD1:032x}', '{0xD2:032x}', '{0xD3:032x}')")
        runs = {r[0]: r[1:] for r in rows}
    # OpenLLMetry: 900 in, 40 out; a workflow root (no agent span), so the run is the implicit trace run.
    assert runs[f"{0xD1:032x}"] == (pytest.approx(mini_cost(900, 40), rel=1e-9), 0.0, 1, 1, 0, 1)
    # OpenInference: 412 prompt tokens of which 256 cached ($0.075/M), 27 completion; its own cost kept apart.
    inference_cost = (156 * 0.15 + 256 * 0.075 + 27 * 0.60) / 1e6
    assert runs[f"{0xD2:032x}"] == (pytest.approx(inference_cost, rel=1e-9), pytest.approx(0.0001), 1, 1, 256, 0)
    # OpenLIT: a lone chat span is its own implicit run; gen_ai.usage.cost is OpenLIT's figure, not ours.
    assert runs[f"{0xD3:032x}"] == (pytest.approx(mini_cost(100, 10), rel=1e-9), pytest.approx(0.000021), 1, 0, 0, 1)


def test_otlp_json_gzip_and_chunked_bodies(tmp_path: Path) -> None:
    with running(tmp_path) as c:
        # OTLP/JSON as the spec writes it: hex ids, lowerCamelCase, enums as integers, unknown fields ignored.
        t0 = BASE_NS
        body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js-agent"}}]},
                                   "scopeSpans": [{"scope": {"name": "manual"}, "futureField": 1, "spans": [
            {"traceId": f"{0xB1:032x}", "spanId": f"{1:016x}", "name": "invoke_agent a", "kind": 1,
             "startTimeUnixNano": str(t0), "endTimeUnixNano": str(t0 + 90 * MS),
             "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "invoke_agent"}}]},
            {"traceId": f"{0xB1:032x}", "spanId": f"{2:016x}", "parentSpanId": f"{1:016x}", "name": "chat gpt-4o-mini", "kind": 3,
             "startTimeUnixNano": str(t0 + MS), "endTimeUnixNano": str(t0 + 50 * MS),
             "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "4000"}},
                            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 300}}]},
        ]}]}]}
        status, raw, headers = post(c.http, json.dumps(body).encode(), {"Content-Type": "application/json"})
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert json.loads(raw) == {}  # full success: no partial_success
        status, raw, _ = post(c.http, gzip.compress(request_bytes(_run(0xB2))), {"Content-Encoding": "gzip"})
        assert status == 200 and ExportTraceServiceResponse.FromString(raw) == ExportTraceServiceResponse()
        # Transfer-Encoding: chunked with no Content-Length (the JS SDK's HTTP exporter sends this).
        conn = http.client.HTTPConnection("127.0.0.1", c.server.ports["http"], timeout=30)
        data = request_bytes(_run(0xB3))
        conn.request("POST", "/v1/traces", body=iter([data[:50], data[50:]]), headers={"Content-Type": "application/x-protobuf"},
                     encode_chunked=True)
        assert conn.getresponse().status == 200
        conn.close()
        runs = _runs(c, [0xB1, 0xB2, 0xB3])
        assert runs[f"{0xB1:032x}"][:2] == (pytest.approx(mini_cost(4000, 300), rel=1e-9), 1)
        assert runs[f"{0xB2:032x}"][0] == pytest.approx(mini_cost(3000, 150), rel=1e-9)
        assert runs[f"{0xB3:032x}"][0] == pytest.approx(mini_cost(3000, 150), rel=1e-9)


def test_invalid_spans_are_rejected_alone_with_partial_success(tmp_path: Path) -> None:
    req = ExportTraceServiceRequest.FromString(request_bytes(_run(0xC1)))
    spans = req.resource_spans[0].scope_spans[0].spans
    bad = spans.add()
    bad.CopyFrom(spans[1])
    bad.trace_id = b"\x01" * 5
    nameless = spans.add()
    nameless.CopyFrom(spans[2])
    nameless.span_id = b"\x07" * 8
    nameless.name = ""
    body = req.SerializeToString()
    with running(tmp_path) as c:
        status, raw, _ = post(c.http, body)
        assert status == 200
        partial = ExportTraceServiceResponse.FromString(raw).partial_success
        assert partial.rejected_spans == 2
        assert "trace_id must be 16 bytes" in partial.error_message and "name is empty" in partial.error_message
        code, resp, _ = _grpc_call(c.grpc, _with_new_trace(body, 0xC2))
        assert code is grpc.StatusCode.OK and ExportTraceServiceResponse.FromString(resp).partial_success.rejected_spans == 2
        runs = _runs(c, [0xC1, 0xC2])
        assert [r[:2] for r in runs.values()] == [(pytest.approx(mini_cost(3000, 150)), 2)] * 2  # the valid spans all kept


def test_times_past_2262_are_refused_and_never_stall_the_store(tmp_path: Path) -> None:
    """OTLP times are unsigned 64-bit, ClickHouse's DateTime64(9) signed: a span past 2262 is
    refused in partial_success (it could never be inserted, and would hold up every span after
    it); an event past 2262 is dropped from its span, which is kept."""
    req = ExportTraceServiceRequest.FromString(request_bytes(_run(0xE1)))
    spans = req.resource_spans[0].scope_spans[0].spans
    future = spans.add()
    future.CopyFrom(spans[1])
    future.span_id = b"\x09" * 8
    future.end_time_unix_nano = 2**64 - 1
    event = spans[2].events.add()
    event.name, event.time_unix_nano = "late", 2**63
    with running(tmp_path) as c:
        status, raw, _ = post(c.http, req.SerializeToString())
        partial = ExportTraceServiceResponse.FromString(raw).partial_success
        assert status == 200 and partial.rejected_spans == 1 and "past 2262" in partial.error_message
        assert post(c.http, request_bytes(_run(0xE2)))[0] == 200  # and what comes after is written too
        runs = _runs(c, [0xE1, 0xE2])
        assert [r[:2] for r in runs.values()] == [(pytest.approx(mini_cost(3000, 150)), 2)] * 2
        events = c.rows(f"SELECT SpanId, length(Events.Name) FROM otel_traces WHERE TraceId = '{0xE1:032x}' ORDER BY SpanId")
        assert events == [(f"{n:016x}", 0) for n in (1, 2, 3)]


def _poll(c, sql: str, until, timeout_s: float = 30.0) -> list:  # type: ignore[no-untyped-def, type-arg]
    """The query's rows once ``until(rows)`` holds (no collector flush: that completes every trace)."""
    deadline = time.monotonic() + timeout_s
    while True:
        c.writer.flush(5)
        rows = c.writer.query(sql)
        if until(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_a_run_is_quiet_by_arrival_not_by_processing_time(tmp_path: Path) -> None:
    """One request holds a run's root first and its two calls last, with 20,000 spans of other runs
    between them: processing them takes the collector longer than the quiet period. The spans
    arrived together, so the run completes once, whole - not as a root-only run followed by a
    second, partial one holding its calls."""
    first, *calls = _run(0xD1)
    filler = []
    for t in range(5000):
        filler += [run_root("filler", 1, trace_id=0x100000 + t, end_ms=50), *(llm(s, 1, "gpt-4o-mini", 10, 1, trace_id=0x100000 + t) for s in (2, 3, 4))]
    body = request_bytes([first, *filler, *calls])
    trace = f"{0xD1:032x}"
    with running(tmp_path, quiet_s=0.5) as c:
        assert post(c.http, body)[0] == 200
        sql = f"SELECT CostUsd, LlmCalls, Incomplete FROM runmeter_runs WHERE TraceId = '{trace}'"
        assert _poll(c, sql, bool, 60)
        time.sleep(1.0)  # a second record, if any, would follow the first within the quiet period
        rows = _poll(c, sql, bool)
        assert rows == [(pytest.approx(mini_cost(3000, 150)), 2, False)]


def test_a_late_call_counts_in_its_run_which_keeps_its_name_and_outcome(tmp_path: Path) -> None:
    """A call that arrives after its run was written waits only ``quiet_s`` (not the 600 s of
    ``rootless_quiet_s``: its root is known to have come) and is written as a partial run under the
    same run id. The record made with the root outranks it, so the run keeps its name, outcome and
    completeness; its totals, recomputed from the calls, count all three calls."""
    trace = 0xD2
    root = run_root("triage", 1, trace_id=trace, end_ms=100, attrs={"runmeter.run.outcome": "accepted"})
    calls = [llm(2, 1, "gpt-4o-mini", 1000, 100, trace_id=trace, start_ms=10), llm(3, 1, "gpt-4o-mini", 2000, 50, trace_id=trace, start_ms=40)]
    late = llm(4, 1, "gpt-4o-mini", 4000, 200, trace_id=trace, start_ms=60)
    with running(tmp_path, quiet_s=0.3) as c:  # rootless_quiet_s: 600 s
        assert post(c.http, request_bytes([root, *calls]))[0] == 200
        first = _poll(c, f"SELECT RunId FROM runmeter_runs WHERE TraceId = '{trace:032x}'", bool)
        assert len(first) == 1
        run_id = first[0][0]
        assert post(c.http, request_bytes([late]))[0] == 200
        records = _poll(c, f"SELECT Incomplete, LlmCalls FROM runmeter_runs WHERE RunId = '{run_id}' ORDER BY Incomplete", lambda r: len(r) == 2, 20)
        assert records == [(0, 2), (1, 1)]  # the whole record, then the late call's partial one
        current = c.writer.query(f"SELECT Name, Outcome, Incomplete FROM runmeter_runs FINAL WHERE RunId = '{run_id}'")
        assert current == [("triage", "accepted", 0)]
        # the calls go in on their own path (the run records through the spool): wait for the third
        totals = _poll(c, f"SELECT CostUsd, LlmCalls FROM runmeter_run_totals WHERE RunId = '{run_id}'", lambda r: r and r[0][1] == 3)
        assert totals == [(pytest.approx(mini_cost(7000, 350), rel=1e-9), 3)]


def test_a_span_held_for_long_does_not_keep_the_log_on_disk(tmp_path: Path) -> None:
    """A call whose parent never comes waits ``rootless_quiet_s`` (600 s); 120 runs after it are
    written and released meanwhile. Its log record would keep every later segment on disk: the
    call is carried forward into a record of its own instead (the run it came with is not), so
    the log stays a few segments long, and the call is still written, once, when its trace ends."""
    orphan = llm(5, 99, "gpt-4o-mini", 500, 50, trace_id=0xC0)  # its parent, span 99, never comes
    first = request_bytes([orphan, *_run(0xC1)])
    with running(tmp_path, wal_segment_bytes=16_384) as c:
        wal = c.server.collector.wal
        assert post(c.http, first)[0] == 200
        for t in range(120):
            assert post(c.http, request_bytes(_run(0xC100 + t)))[0] == 200
        segments = _poll(c, "SELECT 1", lambda _: wal.pending == 1 and len(list((tmp_path / "wal").glob("*.wal"))) <= 4)
        assert segments and wal.pending == 1 and len(list((tmp_path / "wal").glob("*.wal"))) <= 4
        assert wal.pending_bytes < len(first) / 2  # the call alone, not the run it came with
        assert c.writer.query(f"SELECT count() FROM otel_traces WHERE TraceId = '{0xC0:032x}'") == [(0,)]
        assert c.rows(f"SELECT count() FROM otel_traces WHERE TraceId = '{0xC0:032x}'") == [(1,)]  # flushed: its trace ends
        assert c.rows("SELECT count() FROM otel_traces") == [(1 + 3 * 121,)]
        assert wal.pending == 0


@pytest.mark.parametrize("workers", [0, 2])
def test_a_retried_request_is_stored_once(tmp_path: Path, workers: int) -> None:
    """An OTLP client that never got its acknowledgement sends the request again: the spans are
    stored once and the run's calls counted once, whether the copy comes while the run is still
    open or after it was written; a span repeated inside one request is stored once too. Every
    log record is released (nothing waits for a copy that is never written). In the collector's
    process and in worker processes (each keeps the dedup window of its traces)."""
    body = request_bytes(_run(0xF1))
    req = ExportTraceServiceRequest.FromString(request_bytes(_run(0xF2)))
    spans = req.resource_spans[0].scope_spans[0].spans
    spans.add().CopyFrom(spans[1])  # the same call twice in one request
    with running(tmp_path, workers=workers) as c:
        assert post(c.http, body)[0] == 200
        assert post(c.http, body)[0] == 200  # a retry while the run is open
        assert post(c.http, req.SerializeToString())[0] == 200
        ids = f"'{0xF1:032x}', '{0xF2:032x}'"
        assert c.rows(f"SELECT TraceId, count() FROM otel_traces WHERE TraceId IN ({ids}) GROUP BY TraceId ORDER BY TraceId") == [
            (f"{0xF1:032x}", 3), (f"{0xF2:032x}", 3)]
        assert post(c.http, body)[0] == 200  # and once more after the run was written
        totals = c.rows(
            f"SELECT t.CostUsd, t.LlmCalls FROM runmeter_run_totals t JOIN runmeter_runs_current r USING RunId WHERE r.TraceId IN ({ids})"
        )
        assert totals == [(pytest.approx(mini_cost(3000, 150), rel=1e-9), 2)] * 2
        assert c.rows(f"SELECT count() FROM runmeter_calls WHERE TraceId IN ({ids})") == [(4,)]
        assert c.rows(f"SELECT count() FROM otel_traces WHERE TraceId IN ({ids})") == [(6,)]
        assert _metrics(c.admin)["runmeter_collector_spans_duplicate_total{otel_scope_name=\"runmeter.collector\""] == 3 + 1 + 3
        assert c.server.collector.wal.pending == 0


@pytest.mark.parametrize("workers", [0, 1])
def test_runs_wait_for_the_next_batch_while_requests_keep_coming_and_go_at_once_when_they_stop(tmp_path: Path, workers: int) -> None:
    """Spans and run records go to ClickHouse in batches of ``insert_interval_s`` (about one insert
    a second); a batch is not worth waiting for once the input has paused. With a minute's
    interval: while a request comes every 50 ms nothing is written, though each run is quiet
    (complete) 0.2 s after its request; once they stop, every run and span is written within
    seconds - no flush asked. In the collector's process and in a worker process."""
    ids = list(range(0xE100, 0xE100 + 30))
    with running(tmp_path, workers=workers, insert_interval_s=60.0) as c:  # the run records' linger too

        def stored() -> tuple[int, int]:
            where = f"TraceId IN ({', '.join(repr(f'{t:032x}') for t in ids)})"
            spans = c.writer.query(f"SELECT count() FROM otel_traces WHERE {where}")[0][0]
            return spans, c.writer.query(f"SELECT count() FROM runmeter_runs WHERE {where}")[0][0]

        for t in ids:
            assert post(c.http, request_bytes(_run(t)))[0] == 200
            time.sleep(0.05)
        assert stored() == (0, 0)  # the first runs completed 1.5 s ago: they wait for the batch
        deadline = time.monotonic() + 20
        while stored() != (3 * len(ids), len(ids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stored() == (3 * len(ids), len(ids))
        runs = _runs(c, ids)
        assert len(runs) == len(ids) and all(cost == pytest.approx(mini_cost(3000, 150), rel=1e-9) for cost, _, _ in runs.values())


def test_runmeters_threads_carry_their_names_where_top_and_perf_read_them(tmp_path: Path) -> None:
    """``top -H``, ``ps -L``, ``perf`` and ``py-spy`` read a thread's name from the kernel, which
    Python (before 3.14) leaves as the program's: runmeter's threads give theirs there too, in the
    collector's process and in its workers (15 bytes: a longer ``runmeter-x`` shows as ``rm-x``)."""
    import os

    def names(pid: int) -> set[str]:
        out = set()
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                out.add(Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip())
            except OSError:
                pass  # the thread ended
        return out

    with running(tmp_path, workers=1) as c:
        assert _grpc_call(c.grpc, request_bytes(_run(0xE9)))[0] == grpc.StatusCode.OK  # a gRPC thread starts for it
        assert c.rows(f"SELECT count() FROM otel_traces WHERE TraceId = '{0xE9:032x}'") == [(3,)]
        assert {"runmeter-wal", "runmeter-writer", "runmeter-http", "runmeter-grpc_0", "rm-collector-pr",
                "rm-worker-0-cal", "rm-worker-0-rec"} <= names(os.getpid())
        assert c.server.collector.pool is not None
        assert {"runmeter-runs", "rm-collector-ex"} <= names(c.server.collector.pool.workers[0].process.pid)


def test_threads_run_where_the_kernel_cannot_be_told_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where libc has no prctl (or cannot be loaded), a runmeter thread and a named pool still run
    their work: naming is best effort and never raises into the program."""
    import ctypes
    from concurrent.futures import ThreadPoolExecutor

    from runmeter.core import Thread, _threads, name_pool_thread, restore_thread_name

    def no_libc(*args: object, **kwargs: object) -> object:
        raise OSError("no libc here")

    monkeypatch.setattr(_threads, "_prctl", None)  # not looked up yet
    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    done: list[str] = []
    t = Thread(target=lambda: (restore_thread_name(), done.append("thread")), name="runmeter-test")
    t.start()
    t.join(10)
    with ThreadPoolExecutor(1, initializer=name_pool_thread) as pool:
        done.append(pool.submit(lambda: "pool").result(10))
    assert done == ["thread", "pool"]


def _with_new_trace(body: bytes, trace_id: int) -> bytes:
    req = ExportTraceServiceRequest.FromString(body)
    for s in req.resource_spans[0].scope_spans[0].spans:
        if len(s.trace_id) == 16:
            s.trace_id = trace_id.to_bytes(16, "big")
    return req.SerializeToString()


def test_malformed_requests_get_clear_errors_and_are_counted(tmp_path: Path) -> None:
    with running(tmp_path, max_request_bytes=64 * 1024, max_decompressed_bytes=256 * 1024) as c:
        status, raw, _ = post(c.http, b"\xff\xff\xff garbage")
        assert status == 400 and "not a valid OTLP" in status_pb2.Status.FromString(raw).message
        status, raw, _ = post(c.http, b"{not json", {"Content-Type": "application/json"})
        assert status == 400 and "not valid JSON" in json.loads(raw)["message"]
        status, _, _ = post(c.http, b"x", {"Content-Type": "text/plain"})
        assert status == 415
        # Invalid UTF-8 in one span's name costs that span alone (partial_success), over both protocols.
        req = ExportTraceServiceRequest.FromString(request_bytes(_run(0xD1)))
        good_name = req.resource_spans[0].scope_spans[0].spans[0].name.encode()
        broken = req.SerializeToString().replace(good_name, b"\xc3\x28" + good_name[2:])
        status, raw, _ = post(c.http, broken)
        assert status == 200 and ExportTraceServiceResponse.FromString(raw).partial_success.rejected_spans == 1
        code, raw, _ = _grpc_call(c.grpc, broken)
        assert code is grpc.StatusCode.OK and ExportTraceServiceResponse.FromString(raw).partial_success.rejected_spans == 1
        # A gzip bomb stops at the inflate limit; an oversized body at the wire limit.
        bomb = gzip.compress(b"\x00" * (8 << 20))
        assert len(bomb) < 64 * 1024
        status, raw, _ = post(c.http, bomb, {"Content-Encoding": "gzip"})
        assert status == 413 and "inflates past" in status_pb2.Status.FromString(raw).message
        assert post(c.http, b"\x00" * (65 * 1024))[0] == 413
        code, _, _ = _grpc_call(c.grpc, b"\x0a" * (300 * 1024))
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        metrics = _metrics(c.admin)
        assert metrics['runmeter_collector_requests_refused_total{error_type="malformed"'] == 2  # garbage, not JSON
        assert metrics['runmeter_collector_spans_rejected_total{error_type="invalid_utf8"'] == 2  # one span, twice
        assert metrics['runmeter_collector_requests_refused_total{error_type="too_large"'] == 2
        # And the server still takes good requests.
        assert post(c.http, request_bytes(_run(0xD2)))[0] == 200
        assert _runs(c, [0xD2])[f"{0xD2:032x}"][1] == 2


def _hold_checks(c, monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, list[int], list[int]]:  # type: ignore[no-untyped-def]
    """The receiver's check held until the returned gate opens (as slow a log or a busy core would
    make it); with the number of requests inside it now, and the most there were at once."""
    gate, lock = threading.Event(), threading.Lock()
    inside, peak = [0], [0]
    check = c.server.collector.check_wire

    def held_check(data: bytes, project: str | None):  # type: ignore[no-untyped-def]
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        gate.wait(30)
        with lock:
            inside[0] -= 1
        return check(data, project)

    monkeypatch.setattr(c.server.collector, "check_wire", held_check)
    return gate, inside, peak


def _send_each(c, trace_ids: tuple[int, ...], inside: list[int], reading: int) -> tuple[list[threading.Thread], dict[int, grpc.StatusCode]]:  # type: ignore[no-untyped-def]
    """A run per trace id, each sent over gRPC on a thread of its own (its status code once
    answered); returns once ``reading`` of them are in the held check and the rest have had a
    second to reach the server and wait in its queue."""
    codes: dict[int, grpc.StatusCode] = {}

    def send(trace_id: int) -> None:
        codes[trace_id] = _grpc_call(c.grpc, request_bytes(_run(trace_id)))[0]

    senders = [threading.Thread(target=send, args=(t,)) for t in trace_ids]
    for t in senders:
        t.start()
    deadline = time.monotonic() + 20
    while inside[0] < reading and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1.0)
    return senders, codes


def test_grpc_calls_past_the_intake_bound_wait_their_turn_unread_and_past_the_queue_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_concurrent_requests (2 here) requests are read and checked at once; the next
    max_queued_requests (2) wait for a turn instead of being refused (an OTLP client would wait a
    second or more before its retry), and the one after them is told RESOURCE_EXHAUSTED at once."""
    with running(tmp_path, max_concurrent_requests=2, max_queued_requests=2) as c:
        gate, inside, peak = _hold_checks(c, monkeypatch)
        senders, codes = _send_each(c, (0xE1, 0xE2, 0xE3, 0xE4), inside, reading=2)
        assert inside[0] == 2 and not codes, (inside, codes)
        t0 = time.monotonic()
        assert _grpc_call(c.grpc, request_bytes(_run(0xE5)))[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - t0 < 5 and not codes  # refused at once; the four still in
        gate.set()
        for t in senders:
            t.join(30)
        assert codes == {t: grpc.StatusCode.OK for t in (0xE1, 0xE2, 0xE3, 0xE4)}
        assert peak[0] == 2  # never more than max_concurrent_requests read at once
        runs = _runs(c, [0xE1, 0xE2, 0xE3, 0xE4, 0xE5])
        assert set(runs) == {f"{t:032x}" for t in (0xE1, 0xE2, 0xE3, 0xE4)}
        for cost, calls, _ in runs.values():
            assert calls == 2 and cost == pytest.approx(mini_cost(3000, 150), rel=1e-9)


def test_a_drain_answers_the_grpc_calls_still_waiting_their_turn_retryably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM (a graceful stop) with calls being read and calls waiting their turn: each is told
    UNAVAILABLE, which OTLP clients retry on another replica or later - none is cancelled, none
    acknowledged and lost."""
    with running(tmp_path, max_concurrent_requests=1, max_queued_requests=3) as c:
        gate, inside, _ = _hold_checks(c, monkeypatch)
        senders, codes = _send_each(c, (0xF1, 0xF2, 0xF3, 0xF4), inside, reading=1)
        assert inside[0] == 1 and not codes
        stopping = threading.Thread(target=c.server.stop, args=(20,))
        stopping.start()
        deadline = time.monotonic() + 10
        while not c.server.collector.draining and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        for t in senders:
            t.join(30)
        stopping.join(30)
        # (Refused before the log: nothing of them was logged, so nothing is left to write. The
        # store is not asked here: after the stop, a query would open it again in this process.)
        assert codes == {t: grpc.StatusCode.UNAVAILABLE for t in (0xF1, 0xF2, 0xF3, 0xF4)}
        assert c.server.collector.wal.pending == 0


def _metrics(admin: str) -> dict[str, float]:
    """Prometheus text as {'name{first_label="v"': value} (labels after the first dropped)."""
    import urllib.request

    out: dict[str, float] = {}
    with urllib.request.urlopen(admin + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            key = name.split(",")[0]
            out[key] = out.get(key, 0.0) + float(value)
    return out


def test_health_readiness_and_self_metrics(tmp_path: Path) -> None:
    import urllib.request

    with running(tmp_path) as c:
        with urllib.request.urlopen(c.admin + "/healthz") as r:
            assert r.status == 200
        with urllib.request.urlopen(c.admin + "/readyz") as r:
            assert json.loads(r.read())["ready"] is True
        post(c.http, request_bytes(_run(0xE1)))
        body = ExportTraceServiceRequest.FromString(request_bytes(_run(0xE2)))
        body.resource_spans[0].scope_spans[0].spans[0].span_id = b""
        post(c.http, body.SerializeToString())
        c.rows("SELECT 1")
        m = _metrics(c.admin)
        assert m["runmeter_collector_spans_received_total{otel_scope_name=\"runmeter.collector\""] == 6
        assert m["runmeter_collector_spans_accepted_total{otel_scope_name=\"runmeter.collector\""] == 5
        assert m["runmeter_collector_spans_written_total{otel_scope_name=\"runmeter.collector\""] == 5
        assert m['runmeter_collector_spans_rejected_total{error_type="bad_span_id"'] == 1
        assert m["runmeter_collector_store_lag_bytes{otel_scope_name=\"runmeter.collector\""] == 0


def test_run_metrics_made_in_workers_all_reach_the_collectors_metrics(tmp_path: Path) -> None:
    """Workers send their metrics in batches: every run's measurements arrive, whether in a full
    batch or in the remainder sent ahead of the answer to a flush. 400 runs of one call
    (1,000 in / 100 out of gpt-4o-mini each) make 1,200 run measurements, past four batches."""
    n = 400
    spans = []
    for t in range(1, n + 1):
        spans += [run_root(f"batch-{t}", 1, trace_id=0x7000 + t, end_ms=100), llm(2, 1, "gpt-4o-mini", 1000, 100, trace_id=0x7000 + t, start_ms=10)]
    with running(tmp_path, workers=2) as c:
        assert c.server.collector.pool is not None and len(c.server.collector.pool.workers) == 2
        assert post(c.http, request_bytes(spans))[0] == 200
        assert c.rows("SELECT count() FROM runmeter_runs FINAL") == [(n,)]
        m = _metrics(c.admin)
        with urllib.request.urlopen(c.admin + "/metrics", timeout=10) as r:
            text = r.read().decode()
    runs = sum(v for k, v in m.items() if k.startswith("runmeter_runs_total{"))
    cost = sum(v for k, v in m.items() if k.startswith("runmeter_run_cost") and "_sum{" in k)
    durations = sum(v for k, v in m.items() if k.startswith("runmeter_run_duration") and "_count{" in k)
    assert runs == n
    assert durations == n
    assert cost == pytest.approx(n * mini_cost(1000, 100), rel=1e-9)
    # The histogram keeps the bucket bounds the worker's instrument asked for: every run ($0.00021)
    # is counted by a bound within 3x of its cost, not only by the SDK's default first one (5).
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("runmeter_run_cost") and "_bucket{" in line:
            bound = line.partition('le="')[2].partition('"')[0]
            buckets[float(bound)] = buckets.get(float(bound), 0.0) + float(line.rpartition(" ")[2])
    first_full = min(b for b, count in buckets.items() if count == n)
    assert mini_cost(1000, 100) <= first_full <= 3 * mini_cost(1000, 100)


def test_a_workers_counts_of_one_series_go_as_their_sum_and_each_histogram_value_as_it_is() -> None:
    """The worker's side of the metric relay: 300 adds to one series of a counter reach the
    collector's process as one measurement of 300, another series and every histogram value on
    their own, in the order first made, ahead of the next call."""
    from multiprocessing import Pipe

    from runmeter.collector._worker import _Link

    here, there = Pipe()
    link = _Link(here)
    runs = ("m", "counter", "runs", "{run}", "")
    cost = ("m", "histogram", "cost", "USD", "")
    for i in range(300):
        link.measure(runs, 1, {"outcome": "accepted", "model": "gpt-4o-mini"})
        if i % 100 == 0:
            link.measure(cost, 0.5 + i, {"outcome": "accepted"})
    link.measure(runs, 2, {"outcome": "failed", "model": "gpt-4o-mini"})
    link.measure(runs, 1, {"outcome": "accepted", "labels": ["a", "list"]})  # unhashable: kept apart
    link.tell("release", 7)
    assert there.recv() == ("metrics", [
        (runs, 300, {"outcome": "accepted", "model": "gpt-4o-mini"}),
        (cost, 0.5, {"outcome": "accepted"}),
        (cost, 100.5, {"outcome": "accepted"}),
        (cost, 200.5, {"outcome": "accepted"}),
        (runs, 2, {"outcome": "failed", "model": "gpt-4o-mini"}),
        (runs, 1, {"outcome": "accepted", "labels": ["a", "list"]}),
    ])
    assert there.recv() == ("release", 7)
    link.measure(runs, 1, {"outcome": "accepted", "model": "gpt-4o-mini"})  # a new batch starts a new sum
    link.tell("release", 8)
    assert there.recv() == ("metrics", [(runs, 1, {"outcome": "accepted", "model": "gpt-4o-mini"})])


def test_a_worker_reads_each_request_whole_between_the_pipes_other_messages() -> None:
    """The worker's records pipe as the collector writes it (a record's header pickled, then its
    request with ``send_bytes``): every request read back whole, however large (past the reader's
    first buffer), with the small messages between them still read by ``Connection.recv``; a view
    kept past the next read is released, not silently overwritten, and one still read from keeps
    its memory; a pipe that closes mid-request is the end of the pipe."""
    import os
    from multiprocessing.connection import Connection

    from runmeter.collector._worker import _RecordReader
    from runmeter.collector._workers import _widen

    sizes = [0, 1, 1000, 70_000, (1 << 20) + 1, 3 << 20, 17, 500]
    r, w = os.pipe()
    _widen(w)  # as the collector makes a worker's records pipe
    if sys.platform == "linux":
        import fcntl

        assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) == 1 << 20
    reader, sender = Connection(r, writable=False), Connection(w, readable=False)
    payloads = [bytes([i + 1]) * n for i, n in enumerate(sizes)]

    def send() -> None:
        for seq, payload in enumerate(payloads):
            sender.send(("rec", seq, None, 1.0))
            sender.send_bytes(payload)
        sender.send(("stop", 5.0))
        sender.send(("rec", 99, None, 1.0))
        os.write(w, (1000).to_bytes(4, "big") + b"x" * 10)  # a request cut short: the collector died
        sender.close()

    threading.Thread(target=send, daemon=True).start()
    requests = _RecordReader(r)
    last = held = None
    for seq, payload in enumerate(payloads):
        assert reader.recv() == ("rec", seq, None, 1.0)
        view = requests.read()
        if seq == len(payloads) - 1:  # a buffer still taken from the one before: it was not written over
            assert held is not None and bytes(held) == payloads[-2]
        elif last is not None:
            with pytest.raises(ValueError):
                bytes(last)  # the previous request's view: released by this read
        assert view == payload
        last = view
        if seq == len(payloads) - 2:
            held = memoryview(view)  # read from past the next read
    assert reader.recv() == ("stop", 5.0)
    assert reader.recv()[0] == "rec"
    with pytest.raises(EOFError):
        requests.read()
    reader.close()


def test_fuzzed_requests_never_crash_and_valid_spans_are_kept(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    seed = request_bytes(_run(0xF0) + [make_span("tool x", 9, 1, trace_id=0xF0, attrs={"k": "v" * 40, "n": 3})])
    statuses: dict[int, int] = {}
    with running(tmp_path) as c:
        conn = http.client.HTTPConnection("127.0.0.1", c.server.ports["http"], timeout=30)
        with grpc.insecure_channel(c.grpc) as ch:
            export = ch.unary_unary(EXPORT)
            for i in range(1500):
                if i % 100 == 0:  # a clean request among the mutants, by the other transport too
                    clean = request_bytes(_run(0x1000 + i))
                    export(clean, timeout=10)
                data = bytearray(seed)
                for _ in range(rng.randint(1, 6)):
                    op = rng.random()
                    pos = rng.randrange(len(data))
                    if op < 0.5:
                        data[pos] = rng.randrange(256)
                    elif op < 0.75:
                        del data[pos:pos + rng.randint(1, 20)]
                    else:
                        data[pos:pos] = rng.randbytes(rng.randint(1, 20))
                if i % 2:
                    conn.request("POST", "/v1/traces", body=bytes(data), headers={"Content-Type": "application/x-protobuf"})
                    r = conn.getresponse()
                    r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                else:
                    try:
                        export(bytes(data), timeout=10)
                        statuses[200] = statuses.get(200, 0) + 1
                    except grpc.RpcError as err:
                        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, err.details()
                        statuses[400] = statuses.get(400, 0) + 1
        conn.close()
        assert set(statuses) <= {200, 400} and statuses.get(400, 0) > 100 and statuses.get(200, 0) > 20
        # After all that, a clean request is stored whole and priced, and so were those sent among the mutants.
        assert post(c.http, request_bytes(_run(0xF1)))[0] == 200
        clean_ids = [0xF1] + [0x1000 + i for i in range(0, 1500, 100)]
        runs = _runs(c, clean_ids)
        assert len(runs) == len(clean_ids)
        assert all(r[:2] == (pytest.approx(mini_cost(3000, 150)), 2) for r in runs.values())
        assert c.server.collector.healthy


def test_a_worker_collects_reference_cycles_once_a_period_not_on_every_allocation() -> None:
    """A worker turns automatic collection off (its held spans were examined again and again for next
    to no garbage) and collects everything each period instead: a reference cycle is still there
    before the period is up, gone at the loop's first turn after it, and the next period counts
    from the end of that collection."""
    import gc
    import weakref

    from runmeter.collector._worker import Collections

    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    now = [100.0]

    def slow(phase: str, info: dict[str, int]) -> None:  # each collection takes 10 s of the clock
        if phase == "stop":
            now[0] += 10.0

    was_enabled = gc.isenabled()
    gc.disable()  # as worker_gc() leaves a worker (here only for this test's cycles)
    gc.callbacks.append(slow)
    try:
        collections = Collections(every_s=60.0, clock=lambda: now[0])
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        now[0] = 159.9
        assert not collections.turn() and gone() is not None  # not due: the cycle waits
        now[0] = 160.0
        assert collections.turn() and gone() is None  # the collection ends at 170
        now[0] = 229.0
        assert not collections.turn()
        now[0] = 230.0
        assert collections.turn()
    finally:
        gc.callbacks.remove(slow)
        if was_enabled:
            gc.enable()


def test_a_call_that_fails_is_answered_and_the_worker_is_still_served(tmp_path: Path) -> None:
    """The collector's side of a worker's calls: a call that fails - with an OSError too, a log
    record whose segment is gone - is answered with the error, and the worker's next call is
    served (an OSError used to be taken for the connection closing: the worker was no longer
    served); a message the worker waits no answer for that fails is logged, never answered (the
    answer would be taken for the worker's next call's)."""
    import socket
    from multiprocessing.connection import Connection

    from runmeter.collector import WriteAheadLog
    from runmeter.collector._worker import WorkerSpec
    from runmeter.collector._workers import WorkerPool, _Worker

    wal = WriteAheadLog(tmp_path / "wal")
    seq = wal.append(b"a request").result()
    for segment in (tmp_path / "wal").glob("*.wal"):
        segment.unlink()  # the record cannot be read back
    pool = object.__new__(WorkerPool)  # the books and the call loop only: no worker processes
    pool.spec, pool.wal, pool.writer, pool.relay = WorkerSpec(count=1, store_url="chdb://x", embedded=True, limits=None), wal, None, None
    pool._lock, pool._owed, pool._stopping = threading.Lock(), {}, True
    here, there = socket.socketpair()
    w = _Worker(0)
    w.calls, w.generation = Connection(here.detach()), 1
    worker = Connection(there.detach())
    serving = threading.Thread(target=pool._serve, args=(w, 1), daemon=True)
    serving.start()

    worker.send(("read", seq))
    assert worker.poll(10)
    status, message = worker.recv()
    assert status == "err" and "No such file" in message
    worker.send(("observed", ("m", "gauge", "g", "", ""), 1.0))  # no relay here: it fails, unanswered
    worker.send(("pinning",))
    assert worker.poll(10)
    assert worker.recv() == ("ok", [])  # the answer to this call, not an error for the message before
    worker.close()
    serving.join(10)
    assert not serving.is_alive()
    wal.close()


def _worker_blocks(writer: object, traces: range) -> dict[str, tuple[list[str], bytes]]:
    """What a worker sends for an insert: the otel_traces and runmeter_calls rows of one LLM span
    a trace, as Native blocks."""
    from runmeter.conventions import load_dialects
    from runmeter.exporter import COLUMN_TYPES_SQL, NativeEncoder, column_types
    from runmeter.exporter._rows import CALL_COLUMNS, TRACE_COLUMNS, call_row, trace_row
    from runmeter.processor import PriceBook

    encoder = NativeEncoder(column_types(writer.query(COLUMN_TYPES_SQL)))  # type: ignore[attr-defined]
    spans = [llm(1, None, "gpt-4o-mini", 1000, 100, trace_id=t) for t in traces]
    calls = [call_row(s, load_dialects(), PriceBook()) for s in spans]
    return {
        "otel_traces": (list(TRACE_COLUMNS), encoder.encode("otel_traces", TRACE_COLUMNS, [trace_row(s) for s in spans])),
        "runmeter_calls": (list(CALL_COLUMNS), encoder.encode("runmeter_calls", CALL_COLUMNS, calls)),
    }


_PARTS = "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = {t:String} AND active"


def test_the_workers_inserts_that_come_together_go_in_as_one_part_a_table(tmp_path: Path) -> None:
    """Two workers' blocks flushed at one tick: one insert, so one part, of each table (the store
    would merge two); each worker's rows stored once. Taken one by one, the same inserts make two."""
    from runmeter.collector._workers import _GroupedInserts
    from runmeter.exporter import open_writer

    writer = open_writer(f"chdb://{tmp_path / 'store'}", tmp_path / "spool")
    try:
        a, b = _worker_blocks(writer, range(0x100, 0x140)), _worker_blocks(writer, range(0x200, 0x230))
        grouped = _GroupedInserts(writer, expected=lambda: 2, wait_s=5.0)
        threads = [threading.Thread(target=grouped.insert, args=(token, blocks)) for token, blocks in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        rows = writer.query("SELECT count(), uniqExact(TraceId) FROM otel_traces")
        calls = writer.query("SELECT count() FROM runmeter_calls")
        parts = [writer.query(_PARTS, {"t": t})[0][0] for t in ("otel_traces", "runmeter_calls")]
        assert rows == [(0x40 + 0x30, 0x40 + 0x30)] and calls == [(0x40 + 0x30,)]
        assert parts == [1, 1]
        for token, blocks in (("c", _worker_blocks(writer, range(0x300, 0x310))), ("d", _worker_blocks(writer, range(0x400, 0x410)))):
            writer.insert_encoded(token, blocks)  # one by one, as before
        assert [writer.query(_PARTS, {"t": t})[0][0] for t in ("otel_traces", "runmeter_calls")] == [3, 3]
    finally:
        writer.close()


def test_one_workers_bad_batch_fails_only_its_insert_and_a_retry_stores_nothing_twice(tmp_path: Path) -> None:
    """Worker B's runmeter_calls block is not a Native block. The group's otel_traces insert stores
    both workers' rows; its runmeter_calls insert fails, twice, then each worker's block goes alone:
    A's calls are stored and A's insert succeeds, B's alone fails. B's retry with good blocks
    (the same rows, its token) skips otel_traces - stored under the group's token, which its own
    would not match - and stores its calls; A's again stores nothing."""
    from runmeter.collector._workers import _GroupedInserts
    from runmeter.exporter import open_writer

    writer = open_writer(f"chdb://{tmp_path / 'store'}", tmp_path / "spool")
    try:
        a, b = _worker_blocks(writer, range(0x100, 0x140)), _worker_blocks(writer, range(0x200, 0x230))
        bad = {**b, "runmeter_calls": (b["runmeter_calls"][0], b"\x05not a native block")}
        grouped = _GroupedInserts(writer, expected=lambda: 2, wait_s=5.0)
        errors: dict[str, BaseException] = {}

        def insert(token: str, blocks: dict[str, tuple[list[str], bytes]]) -> None:
            try:
                grouped.insert(token, blocks)
            except Exception as exc:
                errors[token] = exc

        threads = [threading.Thread(target=insert, args=(token, blocks)) for token, blocks in (("a", a), ("b", bad))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert set(errors) == {"b"}
        assert writer.query("SELECT count() FROM otel_traces") == [(0x70,)]
        assert writer.query("SELECT count() FROM runmeter_calls") == [(0x40,)]
        grouped.insert("b", b)  # alone: nobody else is expected within the wait
        grouped.insert("a", a)
        assert writer.query("SELECT count(), uniqExact(TraceId) FROM otel_traces") == [(0x70, 0x70)]
        assert writer.query("SELECT count(), uniqExact(TraceId) FROM runmeter_calls") == [(0x70, 0x70)]
    finally:
        writer.close()


def test_every_workers_batches_are_due_at_the_same_ticks_of_the_wall_clock() -> None:
    """Workers started at any moment flush on one grid (whole seconds at a 1 s interval), each
    batch at least half an interval after the last, so their inserts arrive together."""
    from runmeter.collector._tracker import next_tick

    assert next_tick(1000.0, 1.0) == 1001.0
    assert next_tick(1000.3, 1.0) == 1001.0  # 0.7 s away
    assert next_tick(1000.6, 1.0) == 1002.0  # 1001 is 0.4 s away: the one after
    assert next_tick(1000.99, 1.0) == 1002.0
    assert next_tick(119.0, 60.0) == 180.0 and next_tick(151.0, 60.0) == 240.0
    for start in (5000.0, 5000.123, 5000.5, 5000.77):  # four workers' Trackers
        ticks, t = [], start
        for _ in range(5):
            t = next_tick(t, 1.0)
            ticks.append(t)
        assert ticks == [float(s) for s in range(int(start + 0.5) + 1, int(start + 0.5) + 6)]


def test_two_workers_under_a_steady_input_make_one_insert_a_tick_not_one_each(tmp_path: Path) -> None:
    """Requests every 0.1 s for 4 s, each with a trace of each worker's shard: both workers have
    spans to write at every tick of insert_interval_s (1 s), and their batches, due at the same
    ticks, go in as one otel_traces insert a tick. Batches due a second after each worker's last
    one (each on its own phase) made about two a tick."""
    inserts: list[float] = []
    with running(tmp_path, workers=2, insert_interval_s=1.0) as c:
        insert_encoded = c.writer.insert_encoded

        def counted(token: str, blocks: dict[str, tuple[list[str], bytes]]) -> None:
            if "otel_traces" in blocks:
                inserts.append(time.time())
            insert_encoded(token, blocks)

        c.writer.insert_encoded = counted  # type: ignore[method-assign]
        ids = list(range(0xF100, 0xF100 + 80))  # shard = trace id % 2: consecutive ids, one of each
        for k in range(0, len(ids), 2):
            assert post(c.http, request_bytes(_run(ids[k]) + _run(ids[k + 1])))[0] == 200
            time.sleep(0.1)
        last_post = time.time()
        deadline = time.monotonic() + 20
        while len(_runs(c, ids)) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_runs(c, ids)) == len(ids)
    steady = [t for t in inserts if t <= last_post]
    ticks = {int(t) for t in steady}  # the whole seconds they fell in
    assert len(steady) >= 3
    assert len(steady) <= len(ticks) + 1, f"{len(steady)} inserts over {len(ticks)} ticks"
