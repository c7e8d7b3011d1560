"""ClickHouse storage: schema, idempotent inserts, the spool, odd values, migrations, cluster DDL."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from runmeter.exporter import (
    Batch,
    ClickHouseSpanExporter,
    SchemaOptions,
    Spool,
    Store,
    StoreError,
    StoreURL,
    Writer,
    apply_migrations,
    load_migrations,
    render,
)
from runmeter.exporter import NativeEncoder, column_types
from runmeter.exporter._migrations import applied_versions
from runmeter.exporter._rows import TRACE_COLUMNS
from runmeter.exporter._spool import SEGMENT_SUFFIX
from runmeter.processor import PriceBook, RunProcessor
from tests.spans import llm, make_span, run_root
from tests.chhttp import ClickHouseHTTP
from tests.stores import StoreRig

# The Collector's ClickHouse exporter's otel_traces columns (shared/reference/clickhouse-otel-traces.md).
COLLECTOR_COLUMNS = [
    ("Timestamp", "DateTime64(9)"), ("TraceId", "String"), ("SpanId", "String"), ("ParentSpanId", "String"),
    ("TraceState", "String"), ("SpanName", "LowCardinality(String)"), ("SpanKind", "LowCardinality(String)"),
    ("ServiceName", "LowCardinality(String)"), ("ResourceAttributes", "Map(LowCardinality(String), String)"),
    ("ScopeName", "String"), ("ScopeVersion", "String"), ("SpanAttributes", "Map(LowCardinality(String), String)"),
    ("Duration", "UInt64"), ("StatusCode", "LowCardinality(String)"), ("StatusMessage", "String"),
    ("Events.Timestamp", "Array(DateTime64(9))"), ("Events.Name", "Array(LowCardinality(String))"),
    ("Events.Attributes", "Array(Map(LowCardinality(String), String))"),
    ("Links.TraceId", "Array(String)"), ("Links.SpanId", "Array(String)"), ("Links.TraceState", "Array(String)"),
    ("Links.Attributes", "Array(Map(LowCardinality(String), String))"),
]


def writer_for(rig: StoreRig, **kw: object) -> Writer:
    return Writer(Store(rig.url), Spool(rig.spool, int(kw.pop("max_bytes", 1 << 30))), background=False, **kw)  # type: ignore[arg-type]


def exporter_for(rig: StoreRig, writer: Writer | None = None) -> ClickHouseSpanExporter:
    return ClickHouseSpanExporter(writer=writer or writer_for(rig), prices=PriceBook())


def count(rig: StoreRig, sql: str) -> int:
    with Store(rig.url).session() as c:
        return int(c.query(sql).result_rows[0][0])


def test_schema_matches_the_collector(store_rig: StoreRig) -> None:
    with Store(store_rig.url).session() as c:
        cols = [(r[0], r[1]) for r in c.query("DESCRIBE TABLE otel_traces").result_rows]
        assert cols == COLLECTOR_COLUMNS
        ts = {r[0]: r[1] for r in c.query("DESCRIBE TABLE otel_traces_trace_id_ts").result_rows}
        assert ts == {"TraceId": "String", "Start": "SimpleAggregateFunction(min, DateTime)", "End": "SimpleAggregateFunction(max, DateTime)"}
        assert sorted(applied_versions(c)) == [m.version for m in load_migrations()]


def test_spans_calls_and_runs_arrive(store_rig: StoreRig) -> None:
    exp = exporter_for(store_rig)
    proc = RunProcessor(SimpleSpanProcessor(exp), sink=exp.run_sink, mode="remote", background=False)
    for s in [run_root("stored", 1, end_ms=100, attrs={"runmeter.run.outcome": "accepted"}),
              llm(2, 1, "gpt-4o-mini", 10_000, 1_000, start_ms=1), make_span("http", 3, 2, start_ms=2)]:
        proc.on_end(s)
    proc.sweep(force=True)
    exp.force_flush()
    with Store(store_rig.url).session() as c:
        spans = c.query("SELECT SpanName, SpanKind, ParentSpanId, toUnixTimestamp64Nano(Timestamp), Duration, "
                        "SpanAttributes['runmeter.cost.usd'] FROM otel_traces ORDER BY Timestamp").result_rows
        assert [r[0] for r in spans] == ["invoke_agent stored", "chat gpt-4o-mini", "http"]
        assert spans[0][2] == "" and spans[1][3] - spans[0][3] == 1_000_000 and spans[1][4] == 10_000_000
        assert spans[1][5] == "0.0021" and spans[1][1] == "Client"
        calls = c.query("SELECT Kind, Model, InputTokens, OutputTokens, CostUsd, Priced FROM runmeter_calls").result_rows
        assert calls == [("llm", "gpt-4o-mini", 10_000, 1_000, 0.0021, 1)]
        run = c.query("SELECT Name, Outcome, CostUsd, LlmCalls, Spans FROM runmeter_runs_current").result_rows
        assert run == [("stored", "accepted", 0.0021, 1, 3)]
        trace = c.query("SELECT count() FROM otel_traces_trace_id_ts").result_rows
        assert trace[0][0] >= 1


def test_a_retried_batch_counts_once(store_rig: StoreRig) -> None:
    writer = writer_for(store_rig)
    rows = [["r1", "accepted", "", 1_700_000_000_000_000_000, "test"]]
    tables = {"runmeter_outcomes": {"columns": ["RunId", "Outcome", "Reason", "Time", "Source"], "rows": rows}}
    batch = Batch.of(tables)
    assert writer.submit(batch) and writer.submit(batch)  # e.g. a retry after a lost acknowledgement
    writer.flush()
    assert count(store_rig, "SELECT count() FROM runmeter_outcomes") == 1


def test_exporting_the_same_spans_twice_counts_once(store_rig: StoreRig) -> None:
    exp = exporter_for(store_rig)
    spans = [llm(2, 1, "gpt-4o-mini", 10, 1)]
    assert exp.export(spans) is SpanExportResult.SUCCESS
    assert exp.export(spans) is SpanExportResult.SUCCESS
    exp.force_flush()
    assert count(store_rig, "SELECT count() FROM otel_traces") == 1
    assert count(store_rig, "SELECT count() FROM runmeter_calls") == 1


def test_server_down_for_several_batches_then_back(tmp_path: Path) -> None:
    from tests.chhttp import ClickHouseHTTP

    srv = ClickHouseHTTP(str(tmp_path / "engine")).up()
    try:
        rig = StoreRig("http", srv.url, tmp_path / "spool", srv)
        exp = exporter_for(rig)
        exp.export([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=1)])
        exp.force_flush()
        srv.down()
        for t in range(2, 7):  # acknowledged while the server is down: they wait in the spool
            assert exp.export([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=t)]) is SpanExportResult.SUCCESS
        waiting = [Spool.read(p) for p in exp.writer.spool.pending()]
        assert sum(b.rows for b in waiting) == 10  # 5 spans and their 5 calls, in batches or a merged segment
        assert exp.force_flush(timeout_millis=300) is False
        srv.up()
        srv.fail_next = 2  # the first answers are "too many queries": retried
        assert exp.force_flush(timeout_millis=20_000) is True
        assert count(rig, "SELECT count() FROM otel_traces") == 6
        assert count(rig, "SELECT uniqExact(TraceId) FROM runmeter_calls") == 6
        exp.shutdown()
    finally:
        srv.close()


def test_spool_full_refuses_and_counts(tmp_path: Path) -> None:
    rig = StoreRig("http", "http://default:@127.0.0.1:9/default", tmp_path / "spool")  # nothing listens on port 9
    writer = writer_for(rig, max_bytes=4_000)
    exp = exporter_for(rig, writer)
    results = [exp.export([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=t)]) for t in range(1, 20)]
    assert SpanExportResult.FAILURE in results and results[0] is SpanExportResult.SUCCESS
    assert writer.dropped_rows > 0
    assert writer.spool.size() <= 4_000


ODD = {
    "quotes": "it's \"quoted\" `back` \\slash",
    "newlines": "line1\nline2\r\nline3\t",
    "nul": "a\x00b\x00",
    "unicode": "naïve — 日本語 🚀",
    "huge": "x" * 1_000_000,
}


def test_odd_values_round_trip_and_do_not_cost_the_batch(store_rig: StoreRig) -> None:
    exp = exporter_for(store_rig)
    attrs = {f"test.{k}": v for k, v in ODD.items()}
    attrs["test.surrogate"] = "bad\udcff"
    attrs["test.reasons"] = ("stop", "length")
    attrs["test.big_ints"] = [1, 2**70]  # past 64 bits
    attrs["test.bad_items"] = ["ok", "bad\udcff"]
    spans = [make_span("odd", 1, attrs=attrs), make_span("fine", 2, attrs={"test.plain": "ok"})]
    assert exp.export(spans) is SpanExportResult.SUCCESS
    exp.force_flush()
    with Store(store_rig.url).session() as c:
        rows = dict(c.query("SELECT SpanName, SpanAttributes FROM otel_traces").result_rows)
    assert set(rows) == {"odd", "fine"}
    for k, v in ODD.items():
        assert rows["odd"][f"test.{k}"] == v
    assert rows["odd"]["test.surrogate"] == "bad\ufffd"  # not encodable as UTF-8: replaced, the rest intact
    # Sequences as compact JSON, the way the Collector's ClickHouse exporter writes a slice.
    assert rows["odd"]["test.reasons"] == '["stop","length"]'
    assert rows["odd"]["test.big_ints"] == "[1,1180591620717411303424]"
    assert rows["odd"]["test.bad_items"] == '["ok","bad\ufffd"]'
    assert rows["fine"]["test.plain"] == "ok"


def test_times_past_2262_cost_only_their_own_span_or_run(store_rig: StoreRig) -> None:
    """DateTime64(9) is signed 64-bit nanoseconds: a row past 2262 would fail every insert it is in,
    on every retry. It is skipped alone, with a logged reason, and the rest are stored."""
    from dataclasses import replace

    from runmeter.exporter import _exporter
    from runmeter.processor import assemble, read_span
    from runmeter.conventions import load_dialects

    exp = exporter_for(store_rig)
    future = make_span("future", 1, trace_id=0xF1, attrs={"test.n": 1})
    future._start_time = future._end_time = 2**64 - 1  # what an OTLP uint64 or a bad clock can hold
    before = dict(_exporter.skipped)
    assert exp.export([future, make_span("now", 2, trace_id=0xF2)]) is SpanExportResult.SUCCESS
    facts = [read_span(s, load_dialects(), PriceBook())[0] for s in [run_root("r", 1, end_ms=10), llm(2, 1, "gpt-4o-mini", 10_000, 1_000)]]
    good = assemble(facts).records[0]
    bad = replace(good, run_id="run-from-the-future", end_ns=2**63)
    exp.run_sink.write_runs([bad, good])
    exp.force_flush()
    with Store(store_rig.url).session() as c:
        assert c.query("SELECT SpanName FROM otel_traces").result_rows == [("now",)]
        assert c.query("SELECT RunId, CostUsd FROM runmeter_runs_current").result_rows == [(good.run_id, 0.0021)]
    assert _exporter.skipped["span"] == before.get("span", 0) + 1
    assert _exporter.skipped["run record"] == before.get("run record", 0) + 1


def test_migration_from_the_previous_schema_version(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'old'}"
    previous = max(m.version for m in load_migrations()) - 1
    store = Store(url)
    store._migrated = True  # an old runmeter: only the schema it knew
    with store.session() as c:
        assert apply_migrations(c, upto=previous) == list(range(1, previous + 1))
        c.insert("runmeter_runs", [["old-run", "t", "s", "n", "", "", "", "", "svc", 1, 2, "accepted", "", 0.5, {}, 0.0,
                                    1, 1, 0, 0, 0, 1, 0, 0, {}, 0, {}, [], [], [], {}, [], [], [], [], "priced", 0, 0, 1, 1]],
                 column_names=["RunId", "TraceId", "RootSpanId", "Name", "Owner", "Project", "TaskId", "ParentRunId", "ServiceName",
                               "StartTime", "EndTime", "Outcome", "OutcomeReason", "CostUsd", "CostByModel", "ExternalCostUsd",
                               "InputTokens", "OutputTokens", "CacheReadTokens", "CacheWriteTokens", "ReasoningTokens",
                               "LlmCalls", "UnpricedCalls", "EstimatedCalls", "ToolCalls", "ToolCallsTotal", "RepeatedContextReads",
                               "LoopSignals.Kind", "LoopSignals.Key", "LoopSignals.Count", "Budget",
                               "Breaches.Limit", "Breaches.Value", "Breaches.Threshold", "Breaches.Action",
                               "Pricing", "Incomplete", "Implicit", "Spans", "Version"])
    upgraded = Store(url)  # a new runmeter opens the old store: it upgrades in place
    with upgraded.session() as c:
        assert sorted(applied_versions(c)) == [m.version for m in load_migrations()]
        assert c.query("SELECT RunId, Outcome, CostUsd FROM runmeter_runs_current").result_rows == [("old-run", "accepted", 0.5)]
        assert c.query("SELECT Outcome FROM runmeter_run_outcome WHERE RunId = 'old-run'").result_rows == [("accepted",)]


def test_the_embedded_store_writes_compact_parts_and_a_server_keeps_its_tables(store_rig: StoreRig) -> None:
    """A part past ClickHouse's 10 MiB default (uncompressed) is Wide - a file or two per column.
    The embedded store's tables keep parts up to 256 MiB Compact (one data file); a server's
    tables, which other writers may share, are left as they are."""
    rows = 150_000  # ~24 MB uncompressed: past the default, under 256 MiB
    inserts = {
        "otel_traces": "(Timestamp, TraceId, SpanId, StatusMessage) SELECT now64(9), hex(number), hex(number), repeat('x', 100)",
        "runmeter_calls": "(Timestamp, TraceId, SpanId, RunId, ArgsHash) SELECT now64(9), hex(number), hex(number), 'r', repeat('x', 100)",
        "runmeter_runs": "(RunId, TraceId, OutcomeReason, Version) SELECT hex(number), hex(number), repeat('x', 100), 1",
    }
    with Store(store_rig.url).session() as c:
        for table, select in inserts.items():
            c.command(f"INSERT INTO {table} {select} FROM numbers({rows})")
        parts = c.query(
            "SELECT table, part_type, sum(rows), sum(data_uncompressed_bytes) FROM system.parts "
            "WHERE database = currentDatabase() AND active AND table IN {t:Array(String)} GROUP BY table, part_type ORDER BY table",
            {"t": list(inserts)},
        ).result_rows
    assert [(table, n) for table, _, n, _ in parts] == [(table, rows) for table in sorted(inserts)]
    assert all(10 * 2**20 < size < 256 * 2**20 for *_, size in parts), parts
    expected = "Compact" if store_rig.kind == "chdb" else "Wide"
    assert [part_type for _, part_type, _, _ in parts] == [expected] * 3


def test_cluster_ddl_parses_and_is_replicated_and_distributed(tmp_path: Path) -> None:
    import chdb

    opts = SchemaOptions(cluster="prod_cluster")
    statements = [s for m in load_migrations() for s in render(m.text, opts)]
    conn = chdb.connect(str(tmp_path / "parse"))
    for stmt in statements:
        conn.query(f"EXPLAIN AST {stmt}")  # raises on a syntax error
        if stmt.startswith("INSERT"):  # a backfill: through the Distributed tables, so each row reaches its shard
            assert "_local" not in stmt, stmt
        else:
            assert "ON CLUSTER prod_cluster" in stmt
    text = "\n".join(statements)
    assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')" in text
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', Version)" in text
    assert "ENGINE = Distributed(prod_cluster, currentDatabase(), otel_traces_local, cityHash64(TraceId))" in text
    conn.close()
    with pytest.raises(ValueError, match="identifier"):
        SchemaOptions(cluster="prod; DROP TABLE x")


def test_store_urls_and_errors(tmp_path: Path) -> None:
    assert StoreURL.parse("chdb:///var/lib/rm").path == Path("/var/lib/rm")
    u = StoreURL.parse("https://ana:s%40cret@ch.example:8443/runs")
    assert (u.host, u.port, u.username, u.password, u.database, u.secure) == ("ch.example", 8443, "ana", "s@cret", "runs", True)
    assert "s@cret" not in u.redacted()
    with pytest.raises(StoreError, match="use chdb"):
        StoreURL.parse("mysql://x")
    with pytest.raises(StoreError, match="cannot reach ClickHouse"):
        with Store("http://default:@127.0.0.1:9/default").session():
            pass


def test_run_records_replace_on_update(store_rig: StoreRig) -> None:
    """A complete record after an incomplete one (or a re-send): the latest wins."""
    exp = exporter_for(store_rig)
    from runmeter.processor import assemble, read_span
    from runmeter.conventions import load_dialects

    facts = [read_span(s, load_dialects(), PriceBook())[0] for s in [run_root("r", 1, end_ms=10), llm(2, 1, "gpt-4o-mini", 10_000, 1_000)]]
    cut = assemble(facts[:1], incomplete=True).records
    full = assemble(facts).records
    exp.run_sink.write_runs(cut)
    exp.run_sink.write_runs(full)
    exp.force_flush()
    with Store(store_rig.url).session() as c:
        assert c.query("SELECT Incomplete, CostUsd FROM runmeter_runs_current").result_rows == [(0, 0.0021)]


def _outcome_batch(run_id: str) -> Batch:
    from runmeter.exporter._rows import OUTCOME_COLUMNS, outcome_row
    from runmeter.processor import OutcomeEvent

    row = outcome_row(OutcomeEvent(run_id, "accepted", "", 1_700_000_000_000_000_000, "api"))
    return Batch.of({"runmeter_outcomes": {"columns": OUTCOME_COLUMNS, "rows": [row]}})


def test_a_hurried_batch_goes_without_the_linger_and_takes_the_lingering_ones_along(tmp_path: Path) -> None:
    """The writer waits ``linger_s`` after a batch for more to join its insert; a batch submitted
    with ``hurry`` (or while ``lull`` says the input has paused: a collector after a burst) cuts
    that wait short, and what was waiting goes in with it. ``hurry()`` (a worker's input paused)
    ends the linger under way; with none under way it is not kept for the next batch."""
    writer = Writer(Store(f"chdb://{tmp_path / 'store'}"), Spool(tmp_path / "spool"), linger_s=60.0)

    def inserted(rows: int) -> bool:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if not writer.spool.pending() and writer.query("SELECT count() FROM runmeter_outcomes") == [(rows,)]:
                return True
            time.sleep(0.1)
        return False

    try:
        writer.submit(_outcome_batch("r1"))
        time.sleep(1.5)
        assert len(writer.spool.pending()) == 1  # lingering: a minute, unless something hurries it
        writer.submit(_outcome_batch("r2"), hurry=True)
        assert inserted(2)
        writer.lull = lambda: True  # the input has paused: every batch hurries
        writer.submit(_outcome_batch("r3"))
        assert inserted(3)
        writer.lull = lambda: False
        writer.submit(_outcome_batch("r4"))
        time.sleep(1.5)
        assert len(writer.spool.pending()) == 1  # busy input: the linger again
        writer.hurry()  # a worker's input paused: the linger under way ends
        assert inserted(4)
        writer.hurry()  # and again, with nothing lingering: not kept for the next batch
        time.sleep(0.5)
        writer.submit(_outcome_batch("r5"))
        time.sleep(1.5)
        assert len(writer.spool.pending()) == 1  # lingering, as any batch of a busy input
    finally:
        writer.close(timeout_s=5)


def test_a_backlog_goes_in_one_insert_and_a_crash_mid_segment_counts_once(tmp_path: Path) -> None:
    rig = StoreRig("chdb", f"chdb://{tmp_path / 'store'}", tmp_path / "spool")
    spool = Spool(rig.spool)
    paths = [spool.write(_outcome_batch(f"r{i}")) for i in range(3)]
    batches = [Spool.read(p) for p in paths]
    merged = Batch.merge(batches, [p.name for p in paths])
    assert merged.rows == 3 and merged.token == Batch.merge(batches, []).token  # the same group, the same token
    # A crash after the merged insert, before its sources were removed: the manifest and sources remain.
    spool.write_segment(merged.token, merged.sources)
    writer = writer_for(rig)
    from runmeter.exporter import insert_batch

    with writer.store.session() as c:
        insert_batch(c, merged)
    writer.store.close()
    writer.flush()
    assert count(rig, "SELECT count() FROM runmeter_outcomes") == 3  # re-inserted with its token: deduplicated
    assert spool.pending() == []
    # A crash after the sources' removal began: the insert had succeeded, only the clean-up is left.
    p = spool.write(_outcome_batch("r9"))
    spool.write_segment("0" * 32, [p.name, "gone.batch"])
    writer.flush()
    assert count(rig, "SELECT count() FROM runmeter_outcomes") == 3 and spool.pending() == []
    # A segment holding its rows, as runmeter 0.1.0 wrote them, is still inserted.
    legacy = Batch.merge([_outcome_batch("r7"), _outcome_batch("r8")], ["old-1.batch", "old-2.batch"])
    spool._write(legacy.to_json(), "00000000000000000001-1-000001-legacy", SEGMENT_SUFFIX)
    writer.flush()
    assert count(rig, "SELECT count() FROM runmeter_outcomes") == 5 and spool.pending() == []


def test_batches_go_in_as_native_blocks_asking_the_column_types_once_per_client(tmp_path: Path) -> None:
    """insert_batch encodes rows itself (one question about the column types per client, not
    clickhouse-connect's DESCRIBE before every insert) and inserts Native blocks; a column added
    since it asked is asked again; a table the store does not have goes to clickhouse-connect's
    insert, whose error names it, and so does every table when the column types cannot be read."""
    from runmeter.exporter import OUTCOME_COLUMNS
    from runmeter.exporter import insert_batch

    store = Store(f"chdb://{tmp_path / 'store'}")

    class Counting:  # the store's client, its calls counted
        def __init__(self, client: object) -> None:
            self.client, self.calls = client, []  # type: ignore[var-annotated]

        def __getattr__(self, name: str) -> object:
            self.calls.append(name)
            return getattr(self.client, name)

    with store.session() as raw:
        c = Counting(raw)
        for i in range(3):
            insert_batch(c, _outcome_batch(f"r{i}"))
        # one question about the column types, one about the server's settings (insert_blocks)
        assert c.calls.count("query") == 2 and c.calls.count("raw_insert") == 3 and "insert" not in c.calls
        raw.command("ALTER TABLE runmeter_outcomes ADD COLUMN Note String DEFAULT ''")
        noted = Batch.of({"runmeter_outcomes": {"columns": [*OUTCOME_COLUMNS, "Note"], "rows": [["r9", "rejected", "", 2, "api", "by hand"]]}})
        insert_batch(c, noted)
        assert c.calls.count("query") == 3 and "insert" not in c.calls
        assert raw.query("SELECT RunId, Note FROM runmeter_outcomes WHERE Note != ''").result_rows == [("r9", "by hand")]
        assert raw.query("SELECT count() FROM runmeter_outcomes").result_rows[0][0] == 4
        with pytest.raises(Exception, match="no_such_table"):
            insert_batch(c, Batch.of({"no_such_table": {"columns": ["x"], "rows": [[1]]}}))
        assert "insert" in c.calls

        class Refusing(Counting):  # a server that keeps system.columns from this user
            def __getattr__(self, name: str) -> object:
                if name == "query":
                    def query(sql: str, *a: object, **k: object) -> object:
                        if "system.columns" in sql:
                            raise PermissionError("Not enough privileges")
                        return raw.query(sql, *a, **k)
                    return query
                return super().__getattr__(name)

        refusing = Refusing(raw)
        insert_batch(refusing, _outcome_batch("r10"))  # clickhouse-connect's insert, as before
        assert "insert" in refusing.calls and "raw_insert" not in refusing.calls
        assert raw.query("SELECT count() FROM runmeter_outcomes WHERE RunId = 'r10'").result_rows[0][0] == 1
    store.close()


_INDEX_BYTES = ("SELECT name, data_compressed_bytes FROM system.data_skipping_indices "
                "WHERE database = currentDatabase() AND table = 'otel_traces'")
_ATTRIBUTE_INDEXES = {"idx_res_attr_key", "idx_res_attr_value", "idx_span_attr_key", "idx_span_attr_value"}


def _search(c: object) -> list[str]:
    """Spans found by the attribute maps, as Grafana's search asks (the bloom filters serve both conditions)."""
    sql = ("SELECT SpanName FROM otel_traces WHERE has(mapKeys(SpanAttributes), 'gen_ai.request.model') "
           "AND SpanAttributes['gen_ai.request.model'] = 'gpt-4o' AND ResourceAttributes['service.name'] != '' ORDER BY SpanName")
    return [r[0] for r in c.query(sql).result_rows]  # type: ignore[attr-defined]


def test_attribute_indexes_are_built_by_merges_and_searches_find_the_same_spans(
    store_rig: StoreRig, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """otel_traces' bloom filters over its attribute maps are left to the merges (an insert built them
    again and again); idx_trace_id is still built at insert; a search by attribute finds the same
    spans in a part without them as after the merge that builds them.
    RUNMETER_ATTRIBUTE_INDEXES_ON_INSERT=1 builds them at insert, as a server without the setting does."""
    spans = [llm(2, 1, "gpt-4o-mini", 10, 1), llm(3, 1, "gpt-4o", 10, 1), llm(4, 1, "gpt-4o", 20, 2)]
    exp = exporter_for(store_rig)
    assert exp.export(spans) is SpanExportResult.SUCCESS
    exp.force_flush()
    exp.shutdown()
    with Store(store_rig.url).session() as c:
        built = {name: size > 0 for name, size in c.query(_INDEX_BYTES).result_rows}
        assert built == {"idx_trace_id": True, "idx_duration": True, **dict.fromkeys(_ATTRIBUTE_INDEXES, False)}
        assert _search(c) == ["chat gpt-4o", "chat gpt-4o"]
        c.command("OPTIMIZE TABLE otel_traces FINAL")
        assert all(size > 0 for _, size in c.query(_INDEX_BYTES).result_rows)
        assert _search(c) == ["chat gpt-4o", "chat gpt-4o"]

        c.command("TRUNCATE TABLE otel_traces")
    monkeypatch.setenv("RUNMETER_ATTRIBUTE_INDEXES_ON_INSERT", "1")
    exp = exporter_for(store_rig)  # a new client: the question is asked again
    assert exp.export([llm(5, 1, "gpt-4o", 10, 1)]) is SpanExportResult.SUCCESS
    exp.force_flush()
    exp.shutdown()
    with Store(store_rig.url).session() as c:
        assert c.query("SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'otel_traces' AND active").result_rows[0][0] == 1
        assert all(size > 0 for _, size in c.query(_INDEX_BYTES).result_rows)


def test_an_insert_asks_the_server_once_whether_it_can_leave_indexes_to_merges(tmp_path: Path) -> None:
    """The setting that leaves indexes to the merges is ClickHouse 25.10's: sent only to a server that
    has it and lets the user change it (asked once per client), never to one that has not, whose
    settings profile holds it fixed (its inserts would fail) or that refuses the question (asked
    once); a store that cannot be reached is asked again next time, the insert going on without it. The question is the real
    one, answered by chDB over each server's system.settings as given here."""
    from runmeter.exporter import COLUMN_TYPES_SQL
    from runmeter.exporter._rows import trace_row
    from runmeter.exporter import insert_blocks

    setting = "exclude_materialize_skip_indexes_on_insert"
    store = Store(f"chdb://{tmp_path / 'store'}")
    with store.session() as raw:
        encoder = NativeEncoder(column_types(raw.query(COLUMN_TYPES_SQL).result_rows))

        class Server:  # the client, with the server's system.settings as given
            def __init__(self, settings: list[tuple[str, int]] | str | None) -> None:
                self.settings, self.asked, self.sent = settings, 0, []  # type: ignore[var-annotated]

            def query(self, sql: str, parameters: object = None) -> object:
                self.asked += 1
                if self.settings is None:
                    raise ConnectionError("the store is down")
                if self.settings == "refused":
                    raise DatabaseError("Not enough privileges. To execute this query, it's necessary to have the grant SELECT ON system.settings")
                assert isinstance(self.settings, list)
                rows = ", ".join(f"('{name}', {readonly})" for name, readonly in [("max_threads", 0), *self.settings])
                return raw.query(sql.replace("system.settings", f"values('name String, readonly UInt8', {rows})"), parameters)

            def raw_insert(self, table: str, columns: object, data: bytes, fmt: str, settings: dict[str, object]) -> None:
                self.sent.append(settings)
                raw.raw_insert(table, columns, data, fmt=fmt, settings=settings)

        def block(i: int) -> dict[str, tuple[list[str], bytes]]:
            return {"otel_traces": (list(TRACE_COLUMNS), encoder.encode("otel_traces", TRACE_COLUMNS, [trace_row(llm(i, 1, "gpt-4o", 1, 1))]))}

        new, fixed, old, down, refused = Server([(setting, 0)]), Server([(setting, 1)]), Server([]), Server(None), Server("refused")
        for i in range(2):
            for n, server in enumerate((new, fixed, old, down, refused)):
                insert_blocks(server, f"s{n}-{i}", block(10 * n + i))
        assert (new.asked, fixed.asked, old.asked, down.asked, refused.asked) == (1, 1, 1, 2, 1)
        names = "idx_res_attr_key, idx_res_attr_value, idx_span_attr_key, idx_span_attr_value"
        assert [s.get(setting) for s in new.sent] == [names, names]
        assert all(setting not in s for s in fixed.sent + old.sent + down.sent + refused.sent)
        assert raw.query("SELECT count() FROM otel_traces").result_rows[0][0] == 10
    store.close()


def test_a_dead_store_is_said_once_and_does_not_hold_up_exit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every retry fails with a new query id: still one warning for the outage, and close() makes one
    more attempt instead of waiting out its deadline; nothing is lost (the batches wait in the spool)."""
    import logging

    rig = StoreRig("http", "http://default:@127.0.0.1:9/default", tmp_path / "spool")  # nothing listens on port 9
    writer = writer_for(rig)
    exp = exporter_for(rig, writer)
    with caplog.at_level(logging.WARNING, logger="runmeter"):
        for t in range(1, 30):
            assert exp.export([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=t)]) is SpanExportResult.SUCCESS
            writer.drain()
        attempts = writer.failures
        exp.shutdown()
    assert attempts >= 29
    assert writer.failures == attempts + 1  # close(): one more try, not a wait until its deadline
    said = [r.getMessage() for r in caplog.records if "cannot write to" in r.getMessage()]
    assert len(said) == 1, said
    assert sum(Spool.read(p).rows for p in Spool(tmp_path / "spool").pending()) == 58  # 29 spans, 29 calls


def test_a_full_disk_is_a_clear_refusal_and_leaves_no_partial_file(tmp_path: Path) -> None:
    """A write the file system refuses (here a file size limit, EFBIG, as a full disk gives ENOSPC) is
    refused with a clear message, its half-written file removed; a partial file a crash left is
    removed by the next drain."""
    import subprocess
    import sys
    import textwrap

    spool = tmp_path / "spool"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from runmeter.exporter import Spool, Writer, Store
        from runmeter.exporter._spool import Batch
        from tests.spans import llm
        from runmeter.exporter import ClickHouseSpanExporter
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        writer = Writer(Store("http://default:@127.0.0.1:9/default"), Spool({str(spool)!r}), background=False)
        exp = ClickHouseSpanExporter(writer=writer)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
        big = llm(1, None, "gpt-4o-mini", 10, 1, trace_id=1, extra={{"blob": "x" * 50_000}})
        print("result", exp.export([big]).name, writer.dropped_rows)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "OTEL_", "RUNMETER_"))})
    assert proc.returncode == 0, proc.stderr
    assert "result FAILURE 2" in proc.stdout  # the span and its call, refused and counted
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("runmeter: ")]
    assert "cannot write to the spool" in line and "File too large" in line
    assert not list(spool.glob("*.tmp")) and not Spool(spool).pending()

    # A partial file a crash left behind (old enough not to be another process's write in progress).
    stale = spool / "00000000000000000001-1-000001-deadbeef.tmp"
    stale.write_bytes(b"{half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    srv = ClickHouseHTTP(str(tmp_path / "engine")).up()
    try:
        writer = Writer(Store(srv.url), Spool(spool), background=False)
        exp = ClickHouseSpanExporter(writer=writer)
        assert exp.export([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=2)]) is SpanExportResult.SUCCESS
        assert writer.flush(timeout_s=30)
        assert not stale.exists()
        exp.shutdown()
    finally:
        srv.close()


def test_the_embedded_engine_is_imported_where_the_store_is_set_up(tmp_path: Path) -> None:
    """chDB's import moves the process's working directory to its package while it runs (~0.6 s):
    it happens as the store is set up (an agent's configuring thread, before its code runs), so an
    export thread never does it later while the agent opens a relative path on another thread."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from runmeter.exporter import ClickHouseSpanExporter\n"
        "assert 'chdb' not in sys.modules\n"
        "cwd = os.getcwd()\n"
        "ClickHouseSpanExporter(url='chdb://' + sys.argv[1], spool_dir=sys.argv[1] + '-spool', spool_max_bytes=1 << 20)\n"
        "print('chdb' in sys.modules, os.getcwd() == cwd)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "store")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.parametrize("renewed", [False, True], ids=["held session", "session renewed by the insert"])
def test_a_query_does_not_wait_for_an_insert_under_way(tmp_path: Path, renewed: bool) -> None:
    """A collector asks the store who owns a trace while its workers' blocks are inserted: the
    query runs beside the insert (a client of its own in the writer's session), not after it -
    also when that insert found the session past its age and opened a new one (every 30 s in a
    collector): the new session opens its reader at once."""
    # As the collector holds the session (cli.py: 10 s idle, 30 s at most), or renewed at once.
    hold = 0.01 if renewed else 10.0
    writer = Writer(Store(f"chdb://{tmp_path / 'store'}"), Spool(tmp_path / "spool"), background=False, hold_s=hold, max_hold_s=hold * 3)
    assert writer.query("SELECT count() FROM otel_traces") == [(0,)]  # opens the session
    types = column_types(writer.query(
        "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() AND table = 'otel_traces'"))
    start = time.time_ns() - 10**9
    rows = [
        [start, f"{i:032x}", f"{i:016x}", "", "", "step", "Internal", "svc", {}, "", "", {"note": "x" * 40, "n": str(i)}, 1,
         "Unset", "", [], [], [], [], [], [], []]
        for i in range(1, 400_001)
    ]
    block = NativeEncoder(types).encode("otel_traces", TRACE_COLUMNS, rows)  # seconds: the session is past its age now
    finished: list[str] = []

    def insert() -> None:
        writer.insert_encoded("big", {"otel_traces": (TRACE_COLUMNS, block)})
        finished.append("insert")

    inserting = threading.Thread(target=insert)
    inserting.start()
    deadline = time.monotonic() + 5
    # The insert holds the writer from here until it is in (after renewing the session, if it did).
    while not (writer._drain_lock.locked() and writer.sessions_opened == (2 if renewed else 1)) and time.monotonic() < deadline:
        time.sleep(0.0005)
    while renewed and writer._reader is None and time.monotonic() < deadline:
        time.sleep(0.0005)  # the renewed session's reader is being opened
    assert writer.query("SELECT count() FROM runmeter_runs") == [(0,)]
    finished.append("query")
    inserting.join()
    assert finished == ["query", "insert"]  # serialized behind the writer, the query would come second
    assert writer.sessions_opened == (2 if renewed else 1)
    assert writer.query("SELECT count() FROM otel_traces") == [(400_000,)]
    writer.close()
