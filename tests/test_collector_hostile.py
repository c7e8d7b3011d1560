"""A hostile client on 127.0.0.1: what the collector acknowledges it stores, and what it refuses it
says in partial_success or with a 4xx; nothing partial, no traceback, no secret kept."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from tests.collector_rig import mini_cost, post, request_bytes, running
from tests.spans import BASE_NS, llm, make_span, run_root
from tests.test_collector_faults import _tokens

ALPHA = {"Authorization": "Bearer alpha-secret"}


def _partial(raw: bytes) -> tuple[int, str]:
    p = ExportTraceServiceResponse.FromString(raw).partial_success
    return p.rejected_spans, p.error_message


def test_an_int_project_is_refused_up_front_not_acknowledged_and_lost(tmp_path: Path) -> None:
    with running(tmp_path, tokens_file=str(_tokens(tmp_path))) as c:
        spans = [run_root("r", 1, trace_id=0x61, end_ms=100, attrs={"runmeter.run.project": 5}),
                 llm(2, 1, "gpt-4o-mini", 1000, 100, trace_id=0x61, start_ms=10)]
        status, raw, _ = post(c.http, request_bytes(spans), ALPHA)
        assert status == 200 and _partial(raw)[0] == 1  # the root names project "5": not alpha's
        assert c.rows(f"SELECT count() FROM otel_traces WHERE TraceId = '{0x61:032x}'") == [(1,)]  # the call, stored


def test_figures_no_run_or_call_can_have_are_read_as_absent_and_the_run_stays_whole(tmp_path: Path) -> None:
    """NaN, infinity and absurd figures, as another language's SDK or a hostile client may send
    them: a budget of NaN tool calls and infinite dollars on the root, another tool's cost of
    infinity on one call, a claimed cost of $1e300 and another tool's $1e308 on the other. Each is
    read as absent: the run keeps its root (its name, its one real limit), its two calls are priced
    at list price (the claim is replaced on the stored span too), and no sum becomes infinite."""
    budget = {"runmeter.budget.max_tool_calls": float("nan"), "runmeter.budget.max_cost_usd": float("inf"),
              "runmeter.budget.max_llm_calls": 5}
    spans = [run_root("odd figures", 1, trace_id=0x64, end_ms=100, attrs=budget),
             llm(2, 1, "gpt-4o-mini", 1000, 100, trace_id=0x64, start_ms=10, extra={"gen_ai.usage.cost": float("inf")}),
             llm(3, 1, "gpt-4o-mini", 2000, 50, trace_id=0x64, start_ms=20, extra={"runmeter.cost.usd": 1e300, "llm.cost.total": "1e308"})]
    with running(tmp_path) as c:
        assert post(c.http, request_bytes(spans))[0] == 200
        [(name, calls, cost, external, limits, incomplete)] = c.rows(
            "SELECT Name, LlmCalls, CostUsd, ExternalCostUsd, Budget, Incomplete FROM runmeter_runs FINAL")
        stored = c.rows("SELECT SpanAttributes['runmeter.cost.usd'] FROM otel_traces WHERE SpanId = '0000000000000003'")
    assert (name, calls, external, incomplete) == ("odd figures", 2, 0.0, 0)
    assert cost == pytest.approx(mini_cost(1000, 100) + mini_cost(2000, 50), rel=1e-12)
    assert limits == {"max_llm_calls": "5", "action": "stop"}
    assert float(stored[0][0]) == pytest.approx(mini_cost(2000, 50), rel=1e-12)


def test_a_span_older_than_retention_is_refused_with_a_reason(tmp_path: Path) -> None:
    old_ms = -200 * 86_400_000  # 200 days before the other spans: past otel_traces' 180-day TTL
    with running(tmp_path) as c:
        spans = [llm(2, None, "gpt-4o-mini", 1000, 100, trace_id=0x62, start_ms=old_ms, end_ms=old_ms + 10),
                 llm(3, None, "gpt-4o-mini", 1000, 100, trace_id=0x63, start_ms=10)]
        status, raw, _ = post(c.http, request_bytes(spans))
        rejected, message = _partial(raw)
        assert status == 200 and rejected == 1 and "retention" in message
        assert c.rows("SELECT TraceId FROM otel_traces") == [(f"{0x63:032x}",)]


def test_a_truncated_gzip_body_is_refused_whole(tmp_path: Path) -> None:
    spans = [llm(i, None, "gpt-4o-mini", 10, 1, trace_id=0x70 + i, start_ms=i) for i in range(1, 40)]
    body = gzip.compress(request_bytes(spans))
    with running(tmp_path) as c:
        status, raw, _ = post(c.http, body[: len(body) * 2 // 3], {"Content-Encoding": "gzip"})
        assert status == 400 and b"cut short" in raw
        assert post(c.http, body, {"Content-Encoding": "gzip"})[0] == 200  # the whole body is taken
        assert c.rows("SELECT count() FROM otel_traces") == [(39,)]


def test_deeply_nested_json_is_a_400_not_a_500(tmp_path: Path) -> None:
    body = b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with running(tmp_path) as c:
        status, raw, _ = post(c.http, body, {"Content-Type": "application/json"})
        assert status == 400 and "nested too deeply" in json.loads(raw)["message"]
        assert post(c.http, request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=0x80)]))[0] == 200  # still serving


def test_an_array_attribute_is_bounded_like_a_string(tmp_path: Path) -> None:
    req = ExportTraceServiceRequest.FromString(request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=0x90)]))
    span = req.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.append(KeyValue(key="huge.ints", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=i) for i in range(1_000_000)]))))
    span.attributes.append(KeyValue(key="long.strings", value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="x" * 1000)] * 500))))
    with running(tmp_path, max_attribute_value_length=4096) as c:
        assert post(c.http, req.SerializeToString())[0] == 200
        ((ints, strings),) = c.rows("SELECT SpanAttributes['huge.ints'], SpanAttributes['long.strings'] FROM otel_traces")
    assert len(json.loads(ints)) == 512  # 8 characters counted per number: 4096 / 8
    assert json.loads(ints)[:3] == [0, 1, 2]
    assert len(json.loads(strings)) == 4  # 4 x 1000 characters fit in 4096, a fifth would not


def test_a_key_quoted_back_by_a_provider_is_not_stored(tmp_path: Path) -> None:
    key = "sk-proj-AbCdEf0123456789AbCdEf0123456789"
    message = f"Error code: 401 - Incorrect API key provided: {key}. Header was 'Authorization: Bearer {key}'"
    span = make_span("chat gpt-4o-mini", 1, trace_id=0xA0, error=True, attrs={"gen_ai.operation.name": "chat"},
                     events=[("exception", {"exception.type": "AuthenticationError", "exception.message": message,
                                            "exception.stacktrace": f"Traceback...\nAuthenticationError: {message}"})])
    span._status = type(span.status)(span.status.status_code, message)  # as the SDK records a failed call
    with running(tmp_path) as c:
        assert post(c.http, request_bytes([span]))[0] == 200
        rows = c.rows("SELECT StatusMessage, toString(Events.Attributes) FROM otel_traces")
    text = repr(rows)
    assert key not in text and "[REDACTED]" in text and "Incorrect API key provided" in text
    spool_text = b"".join(p.read_bytes() for p in (tmp_path / "spool").glob("*"))
    assert key.encode() not in spool_text


def test_open_addresses_need_tokens_or_an_explicit_opt_out(tmp_path: Path) -> None:


    from runmeter.collector import CollectorSettings

    defaults = CollectorSettings()
    assert [e.split(":")[0] for e in (defaults.grpc_endpoint, defaults.http_endpoint, defaults.admin_endpoint)] == ["127.0.0.1"] * 3
    with pytest.raises(ValueError, match="refusing to take OTLP on 0.0.0.0:0 without tokens"):
        with running(tmp_path / "a", http_endpoint="0.0.0.0:0"):
            pass
    with running(tmp_path / "b", http_endpoint="0.0.0.0:0", tokens_file=str(_tokens(tmp_path))) as c:
        assert post(c.http, request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=0xB0)]))[0] == 401
    with running(tmp_path / "c", http_endpoint="0.0.0.0:0", allow_unauthenticated=True) as c:
        assert post(c.http, request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=0xB1)]))[0] == 200


def _scrape(c) -> bytes:  # type: ignore[no-untyped-def]
    import urllib.request

    with urllib.request.urlopen(c.admin + "/metrics", timeout=30) as r:
        return r.read()


def test_metrics_stay_bounded_whatever_run_names_clients_send(tmp_path: Path) -> None:
    """/metrics has no series per run name, owner or project unless asked: 3,000 runs, each with its
    own name and owner, leave the scrape as it was after 10; owner labels are opt-in."""
    def runs(first: int, n: int) -> bytes:
        spans = []
        for t in range(first, first + n):
            spans += [run_root(f"run-{t}", 1, trace_id=t, end_ms=100, attrs={"runmeter.run.owner": f"owner-{t}"}),
                      llm(2, 1, "gpt-4o-mini", 10, 1, trace_id=t, start_ms=10)]
        return request_bytes(spans)

    with running(tmp_path / "a") as c:
        assert post(c.http, runs(1, 10))[0] == 200
        c.rows("SELECT 1")
        small = _scrape(c)
        assert post(c.http, runs(1000, 3000))[0] == 200
        assert c.rows("SELECT count() FROM runmeter_runs FINAL") == [(3010,)]
        big = _scrape(c)
    assert b"run-1001" not in big and b"owner-1001" not in big
    assert len(big) < len(small) * 1.2, (len(small), len(big))
    with running(tmp_path / "b", metrics_run_labels=["owner"]) as c:
        assert post(c.http, runs(1, 10))[0] == 200
        c.rows("SELECT 1")
        text = _scrape(c)
    assert b'owner-5' in text and b"run-5" not in text


# --- one project's token touches only its own runs ---------------------------------------------

BETA = {"Authorization": "Bearer beta-secret"}
# gpt-4o-mini: 1,000 in x $0.15/M + 100 out x $0.60/M = $0.00021 (beta's one call)
BETA_COST = 0.00021


def _two_projects(tmp: Path) -> Path:
    path = tmp / "tokens.toml"
    path.write_text('[[tokens]]\nname = "a"\ntoken = "alpha-secret"\nproject = "alpha"\n\n'
                    '[[tokens]]\nname = "b"\ntoken = "beta-secret"\nproject = "beta"\n')
    return path


def _attacks(beta_trace: int, beta_run: str) -> list[bytes]:
    join = llm(9, 1, "gpt-4o-mini", 50_000, 5_000, trace_id=beta_trace, start_ms=20)  # parented on beta's root
    name = run_root("hijack", 1, trace_id=0xE0 + beta_trace, end_ms=100, attrs={"runmeter.run.id": beta_run})
    named_call = llm(2, 1, "gpt-4o-mini", 50_000, 5_000, trace_id=0xE0 + beta_trace, start_ms=10, extra={"runmeter.run.id": beta_run})
    return [request_bytes([join]), request_bytes([name, named_call])]


def _beta_unchanged(c, beta_trace: int, beta_run: str) -> None:  # type: ignore[no-untyped-def]

    runs = c.rows(f"SELECT Name, Project, LlmCalls FROM runmeter_runs_current WHERE RunId = '{beta_run}'")
    assert runs == [("beta-run", "beta", 1)]
    calls = c.rows(f"SELECT Project, count(), sum(CostUsd) FROM runmeter_calls WHERE RunId = '{beta_run}' GROUP BY Project")
    assert [(p, n) for p, n, _ in calls] == [("beta", 1)] and calls[0][2] == pytest.approx(BETA_COST)
    assert c.rows(f"SELECT count() FROM otel_traces WHERE TraceId = '{beta_trace:032x}'") == [(2,)]


def test_a_token_cannot_join_or_name_another_projects_run(tmp_path: Path) -> None:
    from runmeter.processor import run_id_for

    beta_trace = 0xC0
    beta_run = run_id_for(beta_trace, 1)
    tokens = _two_projects(tmp_path)
    beta_spans = [run_root("beta-run", 1, trace_id=beta_trace, end_ms=100), llm(2, 1, "gpt-4o-mini", 1000, 100, trace_id=beta_trace, start_ms=10)]
    with running(tmp_path, tokens_file=str(tokens)) as c:
        assert post(c.http, request_bytes(beta_spans), BETA)[0] == 200
        for attack in _attacks(beta_trace, beta_run):  # beta's run still in flight: known from intake
            status, raw, _ = post(c.http, attack, ALPHA)
            rejected, message = _partial(raw)
            assert status == 200 and rejected >= 1 and "another project" in message
        _beta_unchanged(c, beta_trace, beta_run)
        # alpha's own work is untouched by the rule
        assert post(c.http, request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=0xD0)]), ALPHA)[0] == 200
        assert c.rows(f"SELECT Project FROM runmeter_calls WHERE TraceId = '{0xD0:032x}'") == [("alpha",)]
    # A new collector knows nothing in memory: it asks the store.
    with running(tmp_path, tokens_file=str(tokens)) as c:
        for attack in _attacks(beta_trace, beta_run):
            status, raw, _ = post(c.http, attack, ALPHA)
            assert status == 200 and _partial(raw)[0] >= 1
        _beta_unchanged(c, beta_trace, beta_run)
        assert c.server.collector.ownership.lookups >= 1


def test_traces_a_store_held_before_its_owners_table_are_owned_too(tmp_path: Path) -> None:
    """The collector asks runmeter_trace_owners (migration 007) who owns a trace it has not seen:
    what the store held before that table existed - a trace with calls, and one with only a run
    record (a run with no call yet) - is owned by the project that wrote it, so a token bound to
    another project cannot join either."""
    from runmeter.exporter import Store, apply_migrations

    store_url = f"chdb://{tmp_path / 'store'}"
    calls_trace, runs_trace = 0xF1, 0xF2
    store = Store(store_url)
    with store.session() as client:
        for table in [r[0] for r in client.query("SHOW TABLES").result_rows]:
            client.command(f"DROP TABLE {table}")
        assert apply_migrations(client, upto=6) == [1, 2, 3, 4, 5, 6]
        client.insert("runmeter_calls", [[BASE_NS, f"{calls_trace:032x}", f"{2:016x}", f"{calls_trace:032x}-{1:016x}", "beta"]],
                      column_names=["Timestamp", "TraceId", "SpanId", "RunId", "Project"])
        client.insert("runmeter_runs", [[f"{runs_trace:032x}-{1:016x}", f"{runs_trace:032x}", "beta", BASE_NS, BASE_NS, 1]],
                      column_names=["RunId", "TraceId", "Project", "StartTime", "EndTime", "Version"])
    store.close()
    with running(tmp_path, store_url=store_url, tokens_file=str(_two_projects(tmp_path))) as c:
        assert c.rows("SELECT TraceId, Project FROM runmeter_trace_owners FINAL ORDER BY TraceId") == [
            (f"{calls_trace:032x}", "beta"), (f"{runs_trace:032x}", "beta")]
        for trace in (calls_trace, runs_trace):
            status, raw, _ = post(c.http, request_bytes([llm(9, 1, "gpt-4o-mini", 50_000, 5_000, trace_id=trace)]), ALPHA)
            rejected, message = _partial(raw)
            assert status == 200 and rejected == 1 and "another project" in message
        # a trace nobody wrote is alpha's to write
        assert post(c.http, request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=0xF3)]), ALPHA)[0] == 200
        assert c.rows(f"SELECT Project FROM runmeter_calls WHERE TraceId = '{0xF3:032x}'") == [("alpha",)]
        assert c.rows(f"SELECT DISTINCT Project FROM runmeter_trace_owners WHERE TraceId = '{0xF3:032x}'") == [("alpha",)]
        assert c.server.collector.ownership.lookups >= 1


def _filled(c) -> None:  # type: ignore[no-untyped-def]
    ids = c.server.collector.ownership.store_ids
    assert ids is not None, "an embedded store with tokens bound to projects has a filter of the ids it holds"
    deadline = time.monotonic() + 30
    while not ids.filled:
        assert time.monotonic() < deadline, "the store's ids were not read within 30 s"
        time.sleep(0.02)


def _lookups_metric(c) -> float:  # type: ignore[no-untyped-def]
    lines = _scrape(c).decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("runmeter_collector_owner_lookups_total"))


def test_an_embedded_store_is_asked_only_about_ids_it_may_hold(tmp_path: Path) -> None:
    """chDB opens a store for one process at a time, so the collector knows every id it can hold:
    new traces need no lookup, and what the store held before the start still does - and is still
    refused to another project (a trace, a run named by the id runmeter made from it, and a run
    named by an id of beta's own)."""
    from runmeter.processor import run_id_for

    beta_trace, named_trace = 0xC5, 0xC6
    beta_run = run_id_for(beta_trace, 1)
    tokens = _two_projects(tmp_path)
    beta_spans = [run_root("beta-run", 1, trace_id=beta_trace, end_ms=100), llm(2, 1, "gpt-4o-mini", 1000, 100, trace_id=beta_trace, start_ms=10)]
    named = [run_root("named", 1, trace_id=named_trace, end_ms=100, attrs={"runmeter.run.id": "beta-nightly-7"})]  # a run id of beta's own
    with running(tmp_path, tokens_file=str(tokens)) as c:
        _filled(c)
        assert post(c.http, request_bytes(beta_spans), BETA)[0] == 200
        assert post(c.http, request_bytes(named), BETA)[0] == 200
        for t in range(0xA000, 0xA020):  # new traces, each its own request
            assert post(c.http, request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=t)]), ALPHA)[0] == 200
        assert c.server.collector.ownership.lookups == 0 and _lookups_metric(c) == 0
        assert c.rows("SELECT count() FROM runmeter_calls WHERE Project = 'alpha'") == [(32,)]
        assert c.rows("SELECT Project FROM runmeter_runs_current WHERE RunId = 'beta-nightly-7'") == [("beta",)]
    with running(tmp_path, tokens_file=str(tokens)) as c:  # nothing in memory: beta's ids come from the store
        _filled(c)
        name_it = run_root("mine", 1, trace_id=0xA0C6, end_ms=100, attrs={"runmeter.run.id": "beta-nightly-7"})
        for attack in [*_attacks(beta_trace, beta_run), request_bytes([name_it])]:
            status, raw, _ = post(c.http, attack, ALPHA)
            rejected, message = _partial(raw)
            assert status == 200 and rejected >= 1 and "another project" in message
        asked = c.server.collector.ownership.lookups
        assert asked >= 1 and _lookups_metric(c) == asked
        assert post(c.http, request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=0xA100)]), ALPHA)[0] == 200
        assert c.server.collector.ownership.lookups == asked  # a new trace: not asked
        _beta_unchanged(c, beta_trace, beta_run)


def test_a_trace_still_in_the_log_at_a_restart_belongs_to_its_writer(tmp_path: Path) -> None:
    """ClickHouse is down: beta's acknowledged run waits in the log across a restart. The store
    cannot say whose it is, the log can: another project's token is refused, before and after the
    run reaches the store."""
    from runmeter.collector import CollectorServer
    from runmeter.exporter import open_writer
    from runmeter.processor import RunLimits, run_id_for
    from tests.chhttp import ClickHouseHTTP
    from tests.collector_rig import settings

    beta_trace = 0xC9
    beta_run = run_id_for(beta_trace, 1)
    tokens = str(_two_projects(tmp_path))
    beta_spans = [run_root("beta-run", 1, trace_id=beta_trace, end_ms=100), llm(2, 1, "gpt-4o-mini", 1000, 100, trace_id=beta_trace, start_ms=10)]
    ch = ClickHouseHTTP(str(tmp_path / "engine")).up()
    try:
        with running(tmp_path, store_url=ch.url, tokens_file=tokens) as c:
            c.rows("SELECT 1")  # migrated while it is up
            ch.down()
            assert post(c.http, request_bytes(beta_spans), BETA)[0] == 200
            c.server.stop(1)  # ClickHouse still down: beta's record stays in the log
            assert c.server.collector.wal.pending >= 1
        server = CollectorServer(settings(tmp_path, tokens_file=tokens), open_writer(ch.url, tmp_path / "spool2"),
                                 run_limits=RunLimits(quiet_s=0.2, rootless_quiet_s=600))
        try:
            http = f"http://127.0.0.1:{server.ports['http']}/v1/traces"
            for attack in _attacks(beta_trace, beta_run):  # the store is down: only the log knows
                status, raw, _ = post(http, attack, ALPHA)
                assert status == 200 and _partial(raw)[0] >= 1
            ch.up()
            assert server.collector.replayed.wait(60)
            assert server.collector.flush(30)
            from tests.collector_rig import Running

            _beta_unchanged(Running(server, server.collector.writer), beta_trace, beta_run)
        finally:
            server.stop(20)
    finally:
        ch.close()


def test_the_filter_of_stored_ids_never_drops_one_it_was_given() -> None:
    """Whatever the store held and whatever was accepted since, an id among them is always one the
    store may hold; before its scan has ended, every id is; new ids mostly are not (1 % false)."""
    import random

    from runmeter.collector import StoreIds

    rng = random.Random(7)
    stored = [f"{rng.getrandbits(128):032x}" for _ in range(5_000)]
    gate = __import__("threading").Event()

    def pages():  # type: ignore[no-untyped-def]
        assert gate.wait(10)
        for i in range(0, len(stored), 1_000):
            yield stored[i:i + 1_000]

    ids = StoreIds(pages, size=20_000)
    ids.start()
    fresh = [f"{rng.getrandbits(128):032x}" for _ in range(2_000)]
    assert ids.may_hold(fresh) == fresh  # not filled yet: all may be held
    added = fresh[:500]
    ids.add(added)
    gate.set()
    deadline = time.monotonic() + 10
    while not ids.filled:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert ids.may_hold(stored) == stored and ids.may_hold(added) == added
    others = fresh[500:]
    assert len(ids.may_hold(others)) <= 45  # 1,500 new ids at 1 %: 15 expected; 45 is ~7 sigma
    ids.close()


def test_an_id_accepted_here_is_one_the_store_may_hold_once_memory_forgets_it() -> None:
    """Beta's trace is accepted, then pushed out of the bounded memory of owners before it reaches
    the store; once it is there, alpha's span on it must still be looked up (and refused): the
    filter learned the id when it was accepted, not from the scan made before."""
    from runmeter.collector import Ownership, StoreIds

    written: dict[str, str] = {}  # the store: what has been written, by trace id

    def store(traces: list[str], runs: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        return {t: written[t] for t in traces if t in written}, {}

    ids = StoreIds(lambda: iter([]), size=1_000)  # an empty store at the start
    ids.start()
    deadline = time.monotonic() + 10
    while not ids.filled:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ownership = Ownership(store, max_entries=1, store_ids=ids)
    assert ownership.admit(_one_call_request(0xB1), "beta") == 0
    assert ownership.admit(_one_call_request(0xB2), "beta") == 0  # 0xB1 leaves the memory of owners
    written[f"{0xB1:032x}"] = "beta"  # and reaches the store
    asked = ownership.lookups
    assert ownership.admit(_one_call_request(0xB1), "alpha") == 1
    assert ownership.lookups == asked + 1
    assert ownership.admit(_one_call_request(0xB3), "alpha") == 0 and ownership.lookups == asked + 1  # new: not asked


def test_long_run_ids_do_not_grow_the_memory_of_owners() -> None:
    """A client may name runs with ids of up to 65,536 characters, each a new one: what ownership
    keeps of them stays small (200,000 such ids kept whole would be 13 GB), and a long id is still
    its run's - another project cannot name it."""
    import tracemalloc

    from runmeter.collector import Ownership

    def request(i: int, run_id: str) -> ExportTraceServiceRequest:
        return ExportTraceServiceRequest.FromString(
            request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=0x7000 + i, extra={"runmeter.run.id": run_id})]))

    ownership = Ownership(None)
    ids = [f"{i:08d}" + "r" * 60_000 for i in range(200)]
    requests = [request(i, run_id) for i, run_id in enumerate(ids)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for req in requests:
            assert ownership.admit(req, "beta") == 0
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000, f"{grown:,} bytes kept for 200 run ids"  # whole, they would be 12 MB
    assert ownership.admit(request(999, ids[7]), "alpha") == 1  # beta's run, by its long id
    assert ownership.admit(request(998, ids[7][:-1] + "s"), "alpha") == 0  # another id: alpha's own


def _one_call_request(trace_id: int) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=trace_id)]))


def test_ownership_lookups_go_in_turns_each_for_every_request_waiting() -> None:
    """Requests that need the store while a lookup runs wait for the next one, made once for all of
    them; each still gets the owners of its own traces. A store that cannot answer leaves the
    traces to their first writer here, as before."""
    import threading

    from runmeter.collector import Ownership

    first_running, store_answers = threading.Event(), threading.Event()
    asked: list[list[str]] = []

    def store(traces: list[str], runs: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        """The store's answer: the traces whose ids end in b2 are beta's."""
        asked.append(traces)
        if len(asked) == 1:
            first_running.set()
            assert store_answers.wait(10)
        return {t: "beta" for t in traces if t.endswith("b2")}, {}

    request = _one_call_request
    ownership = Ownership(store)
    removed: dict[int, int] = {}

    def admit(trace_id: int) -> None:
        removed[trace_id] = ownership.admit(request(trace_id), "alpha")

    first = threading.Thread(target=admit, args=(0xA1,), daemon=True)
    first.start()
    assert first_running.wait(10)
    waiting = [threading.Thread(target=admit, args=(t,), daemon=True) for t in (0xA2, 0xB2, 0xC2)]
    for t in waiting:
        t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # all three have joined the next turn
        turn = getattr(ownership._lookup, "_open", None)
        if turn is not None and len(turn.traces) == 3:
            break
        time.sleep(0.01)
    store_answers.set()
    for t in (first, *waiting):
        t.join(10)
        assert not t.is_alive()
    assert asked == [[f"{0xA1:032x}"], sorted(f"{t:032x}" for t in (0xA2, 0xB2, 0xC2))]
    assert removed == {0xA1: 0, 0xA2: 0, 0xB2: 1, 0xC2: 0}  # beta's trace refused to alpha, alone
    assert ownership.lookups == 2

    def down(traces: list[str], runs: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        raise ConnectionError("the store is down")

    first_writer = Ownership(down)
    assert first_writer.admit(request(0xB2), "alpha") == 0  # unknown to the store: alpha's now
    assert first_writer.admit(request(0xB2), "beta") == 1


def test_a_turn_stays_open_a_moment_for_the_requests_right_behind_it() -> None:
    """With no lookup under way, the first request's turn waits ``gather_s`` before it runs: a
    request asking meanwhile joins it - one lookup for both, not two back to back."""
    import threading

    from runmeter.collector import Ownership

    asked: list[list[str]] = []

    def store(traces: list[str], runs: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        asked.append(traces)
        return {}, {}

    ownership = Ownership(store, gather_s=2.0)  # long: the second request surely asks within it
    requests = {t: _one_call_request(t) for t in (0xD1, 0xD2)}
    first = threading.Thread(target=ownership.admit, args=(requests[0xD1], "alpha"), daemon=True)
    first.start()
    deadline = time.monotonic() + 10
    while getattr(ownership._lookup, "_open", None) is None and time.monotonic() < deadline:
        time.sleep(0.001)  # the first request's turn is open
    started = time.monotonic()
    assert ownership.admit(requests[0xD2], "alpha") == 0
    first.join(10)
    assert asked == [[f"{0xD1:032x}", f"{0xD2:032x}"]] and ownership.lookups == 1
    assert time.monotonic() - started < 5.0  # the turn ran when its time was up, once


# --- slow, stalled and vanishing clients -------------------------------------------------------

def _connect(port: int, payload: bytes):  # type: ignore[no-untyped-def]
    import socket

    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(payload)
    s.settimeout(10)
    return s


def _closed_by_server(s) -> bool:  # type: ignore[no-untyped-def]
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return True  # EOF: the server closed it (perhaps after an answer)
    except OSError:
        return True
    return False


def test_stalled_clients_are_closed_and_the_collector_keeps_serving(tmp_path: Path) -> None:
    head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
    with running(tmp_path, http_idle_timeout_s=1.0, http_body_timeout_s=1.0) as c:
        port = c.server.ports["http"]
        half_heads = [_connect(port, head) for _ in range(100)]  # the head never ends
        no_bodies = [_connect(port, head + b"Content-Length: 5000\r\n\r\n" + b"\x0a" * 10) for _ in range(100)]
        silent = [_connect(port, b"") for _ in range(100)]  # connect and say nothing
        time.sleep(3)
        assert post(c.http, request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=0xF1)]))[0] == 200
        assert all(_closed_by_server(s) for s in half_heads + no_bodies + silent)
        for s in half_heads + no_bodies + silent:
            s.close()
        assert c.rows("SELECT count() FROM otel_traces") == [(1,)]


def test_connections_past_the_cap_are_turned_away(tmp_path: Path) -> None:
    with running(tmp_path, http_max_connections=20) as c:
        port = c.server.ports["http"]
        held = [_connect(port, b"") for _ in range(20)]
        time.sleep(0.3)
        extra = _connect(port, b"")
        assert extra.recv(200).startswith(b"HTTP/1.1 503")
        extra.close()
        for s in held:
            s.close()
        time.sleep(0.3)
        assert post(c.http, request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=0xF2)]))[0] == 200


def test_a_client_that_leaves_mid_body_is_one_line_not_a_traceback(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n"
    with caplog.at_level(logging.INFO), running(tmp_path) as c:
        for _ in range(3):
            s = _connect(c.server.ports["http"], head + b"\x0a" * 10)
            time.sleep(0.2)
            s.close()
        time.sleep(0.5)
        assert post(c.http, request_bytes([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=0xF3)]))[0] == 200
    said = [r for r in caplog.records if "disconnected before its request body" in r.getMessage()]
    assert len(said) == 3 and all(r.levelno == logging.INFO and r.exc_info is None for r in said)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_invalid_utf8_in_one_span_costs_that_span_alone(tmp_path: Path) -> None:
    import grpc

    from tests.test_collector import _grpc_call

    good = [llm(i, None, "gpt-4o-mini", 10, 1, trace_id=0x100 + i, start_ms=i) for i in range(1, 6)]
    data = request_bytes(good + [llm(9, None, "gpt-4o-mini", 10, 1, trace_id=0x1FF, extra={"note": "MARKER"})])
    bad = data.replace(b"MARKER", b"\xff\xfeRKER")  # same length: the protobuf framing still holds
    assert bad != data
    with running(tmp_path) as c:
        status, raw, _ = post(c.http, bad)
        rejected, message = _partial(raw)
        assert status == 200 and rejected == 1 and "UTF-8" in message
        code, raw_grpc, _ = _grpc_call(c.grpc, bad)  # the same request again, over gRPC (its spans are stored once)
        assert code is grpc.StatusCode.OK and ExportTraceServiceResponse.FromString(raw_grpc).partial_success.rejected_spans == 1
        stored = {t for (t,) in c.rows("SELECT TraceId FROM otel_traces")}
    assert stored == {f"{0x100 + i:032x}" for i in range(1, 6)}


# --- memory --------------------------------------------------------------------------------------

def test_a_backlog_waits_in_the_log_not_in_memory(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Past the bytes of parsed requests kept for processing, a request is read back from the log
    when its turn comes: with none kept, every run still comes out whole and priced."""

    from runmeter.collector import _service
    from tests.collector_rig import mini_cost

    monkeypatch.setattr(_service, "_HELD_BYTES", 0)
    with running(tmp_path) as c:
        for t in range(0x300, 0x310):
            spans = [run_root("r", 1, trace_id=t, end_ms=100), llm(2, 1, "gpt-4o-mini", 1000, 100, trace_id=t, start_ms=10)]
            assert post(c.http, request_bytes(spans))[0] == 200
        rows = c.rows("SELECT count(), sum(CostUsd), sum(LlmCalls) FROM runmeter_runs FINAL")
        assert c.server.collector._held_bytes == 0
    assert rows[0][0] == 16 and rows[0][2] == 16 and rows[0][1] == pytest.approx(16 * mini_cost(1000, 100))


def test_memory_stays_bounded_under_hostile_requests(tmp_path: Path) -> None:
    """Rounds of the largest requests the limits allow (gzip bombs, bodies at the size limit, deep
    JSON) 8 at once over HTTP, and requests near the size limit 8 at once over gRPC (4 read, 4
    waiting their turn): the collector's RSS grows by less than the stated bound and gives
    memory back when idle. Bound (docs/collector.md, "Memory"): intake, 2 protocols x
    max_concurrent_requests x (max_request_bytes + 4 x max_decompressed_bytes) = 2 x 4 x (1 + 16) MiB
    = 136 MiB here, and the requests kept for processing, 32 MiB: 168 MiB."""
    import threading

    import grpc

    from tests.collector_rig import Subprocess, free_ports

    ports = dict(zip(("grpc", "http", "admin"), free_ports(3)))
    proc = Subprocess(tmp_path, f"chdb://{tmp_path / 'store'}", ports)
    toml = tmp_path / "runmeter.toml"
    proc.start()
    assert proc.terminate() == 0
    toml.write_text(toml.read_text() + "max_request_bytes = 1048576\nmax_decompressed_bytes = 4194304\nmax_concurrent_requests = 4\n")
    proc.start()
    assert proc.proc is not None
    url = f"http://127.0.0.1:{ports['http']}/v1/traces"

    def rss_mib() -> int:
        with open(f"/proc/{proc.proc.pid}/status") as f:  # type: ignore[union-attr]
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))

    big = request_bytes([llm(i, None, "gpt-4o-mini", 10, 1, trace_id=0x400 + i, extra={"blob": "y" * 60_000}) for i in range(1, 15)])
    assert len(big) < 1 << 20
    bodies = [(gzip.compress(b"\x0a" * (8 << 20)), {"Content-Encoding": "gzip"}), (big, {}),
              (gzip.compress(big), {"Content-Encoding": "gzip"}),
              (b'{"resourceSpans": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", {"Content-Type": "application/json"})]
    try:
        base = rss_mib()
        peak = base
        grpc_big = request_bytes([llm(i, None, "gpt-4o-mini", 10, 1, trace_id=0x500 + i, extra={"blob": "z" * 60_000}) for i in range(1, 60)])
        assert 3 << 20 < len(grpc_big) < 4 << 20

        def grpc_send(body: bytes) -> None:
            with grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}", options=[("grpc.max_send_message_length", 8 << 20)]) as ch:
                try:
                    ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")(body, timeout=60)
                except grpc.RpcError as err:
                    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, err  # the log full: retryable

        for _ in range(15):
            threads = [threading.Thread(target=post, args=(url, *bodies[k % 4])) for k in range(8)]
            threads += [threading.Thread(target=grpc_send, args=(grpc_big,)) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            peak = max(peak, rss_mib())
        time.sleep(13)  # idle: freed memory goes back to the OS
        after = rss_mib()
    finally:
        assert proc.terminate() == 0
    assert peak - base < 168, (base, peak)
    assert after - base < 100, (base, peak, after)
