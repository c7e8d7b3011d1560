"""Export throughput into embedded chDB: a bare column insert vs ClickHouseSpanExporter.export(), in one run.

* bare: clickhouse-connect inserts pre-built ``otel_traces`` rows (the floor: no conversion,
  no spool, no deduplication token);
* runmeter: ``ClickHouseSpanExporter.export()`` on the same spans — conversion to
  ``otel_traces`` and ``runmeter_calls`` rows, the durable spool (fsync), the insert with a
  deduplication token, the spool file removed.

Both take the same 20 batches of 512 spans. The bare insert makes one insert per batch; the
exporter's writer lingers briefly after a batch is spooled and inserts what arrived meanwhile as
one insert per table, so it pays chDB's fixed cost per insert (~20 ms here) a few times, not 20.
Each timed phase starts with its tables merged and chDB's background merges stopped (``settle``).

Prints rows/s of each and the ratio (target: runmeter >= 70 % of the bare insert), then the
time of the cost-per-accepted-run query on a store holding 1M spans (goal <= 1 s embedded).

    .venv/bin/python benchmarks/export_throughput.py [--batches 20] [--batch 512]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from runmeter.exporter import ClickHouseSpanExporter, Spool, Store, Writer
from runmeter.exporter._rows import TRACE_COLUMNS, trace_row
from runmeter.processor import PriceBook
from runmeter.reports import Filters, parse_since, run_query


def make_spans(n: int, offset: int) -> list:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.spans import llm, make_span, tool

    out = []
    for i in range(n):
        t = offset + i // 8 + 1
        kind = i % 8
        if kind == 0:
            out.append(make_span("invoke_agent bench", 1, trace_id=t, attrs={"runmeter.run.id": f"r{t}", "runmeter.run.root": True}))
        elif kind < 5:
            out.append(llm(10 + kind, 1, "gpt-5.5", 1_000 * kind, 120, trace_id=t, extra={"runmeter.cost.usd": 0.001 * kind, "runmeter.run.id": f"r{t}"}))
        else:
            out.append(tool(20 + kind, 1, "read_file", args_hash=f"{kind:016x}", resource="src/app.py", trace_id=t))
    return out


def fill_million(store: Store) -> None:
    """1M spans' worth of data, made in ClickHouse: 40k runs of 25 spans (8 LLM calls each)."""
    with store.session() as c:
        c.command("""
            INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName, SpanAttributes, Duration, StatusCode)
            SELECT now64(9) - toIntervalSecond(number % 86400), lower(hex(intDiv(number, 25))), lower(hex(number)),
                   'chat gpt-5.5', 'Client', 'bench', map('runmeter.cost.usd', '0.001'), 1000000, 'Unset'
            FROM numbers(1000000) SETTINGS async_insert = 0""")
        c.command("""
            INSERT INTO runmeter_calls (Timestamp, TraceId, SpanId, RunId, Kind, Operation, Provider, Model, InputTokens, OutputTokens, CostUsd, Priced)
            SELECT now64(9) - toIntervalSecond(number % 86400), lower(hex(intDiv(number, 8))), lower(hex(number)), concat('run-', toString(intDiv(number, 8))),
                   'llm', 'chat', 'openai', if(number % 3 = 0, 'gpt-4o-mini', 'gpt-5.5'), 1000 + number % 5000, 100 + number % 300, 0.001, 1
            FROM numbers(320000) SETTINGS async_insert = 0""")
        c.command("""
            INSERT INTO runmeter_runs (RunId, TraceId, Name, Owner, Project, StartTime, EndTime, Outcome, CostUsd, CostByModel, LlmCalls, ToolCallsTotal, Version)
            SELECT concat('run-', toString(number)), lower(hex(number)), ['triage', 'fix-bug', 'report'][1 + number % 3],
                   ['ana', 'bo', 'cy'][1 + number % 3], 'bench', now64(9) - toIntervalSecond(number % 86400), now64(9) - toIntervalSecond(number % 86400) + 30,
                   ['accepted', 'rejected', '', 'accepted'][1 + number % 4], 0.008, map('gpt-5.5', 0.008), 8, 17, 1
            FROM numbers(40000) SETTINGS async_insert = 0""")


TABLES = ("otel_traces", "runmeter_calls")


def settle(client) -> None:  # type: ignore[no-untyped-def]
    """Before a timed phase: each table merged into one part, then merges stopped until the phase ends.

    chDB merges parts on its own threads, on the same 2 cores. Without this, the merges one phase's
    inserts started run on the clock of the next phase. With merges stopped, neither phase pays
    for merging, which favours the bare insert: it makes 20 parts per round, runmeter a few.
    """
    for table in TABLES:
        client.command(f"SYSTEM START MERGES {table}")
        client.command(f"OPTIMIZE TABLE {table} FINAL")
    while client.query("SELECT count() FROM system.merges").result_rows[0][0]:
        time.sleep(0.01)
    for table in TABLES:
        client.command(f"SYSTEM STOP MERGES {table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"chdb://{tmp}/store"
        store = Store(url)
        writer = Writer(store, Spool(Path(tmp) / "spool"), background=True, hold_s=3600)
        exporter = ClickHouseSpanExporter(writer=writer, prices=PriceBook())
        bare_rates, ours_rates = [], []
        offset = 0
        for _ in range(args.rounds):
            batches = []
            for _ in range(args.batches):
                batches.append(make_spans(args.batch, offset))
                offset += args.batch
            rows = [[trace_row(s) for s in b] for b in batches]  # pre-built for the bare insert
            writer.release_idle()
            with store.session() as c:
                settle(c)
                t0 = time.perf_counter()
                for r in rows:
                    c.insert("otel_traces", r, column_names=TRACE_COLUMNS, settings={"async_insert": 0})
                bare_rates.append(sum(map(len, rows)) / (time.perf_counter() - t0))
            batches = [make_spans(args.batch, offset + i * args.batch) for i in range(args.batches)]
            offset += args.batches * args.batch
            # The store's session is opened before the clock starts, as the bare insert's is (a running
            # exporter keeps it open), and closing it is left out, as for the bare insert.
            exporter.export(make_spans(1, offset))
            offset += 1
            writer.drain()
            settle(writer._client(wait=True))
            t0 = time.perf_counter()
            for b in batches:
                exporter.export(b)
            while writer.spool.pending():
                writer.drain()
            ours_rates.append(sum(map(len, batches)) / (time.perf_counter() - t0))
            writer.release_idle()
        bare, ours = statistics.median(bare_rates), statistics.median(ours_rates)
        # Each round's ratio (the two measured back to back): the shared machine's load cancels out.
        ratio = statistics.median(o / b for o, b in zip(ours_rates, bare_rates))
        print("each round (bare rows/s, runmeter spans/s):", [(round(b), round(o)) for b, o in zip(bare_rates, ours_rates)])
        print(f"batches of {args.batch} spans x {args.batches}, rounds: {args.rounds}")
        print(f"bare clickhouse-connect column insert (pre-built rows):  median {bare:10,.0f} rows/s")
        print(f"ClickHouseSpanExporter.export() (convert, spool, insert): median {ours:10,.0f} spans/s")
        print(f"ratio: median of the rounds' ratios {ratio:.0%} of the bare insert  (target >= 70%)")
        exporter.shutdown()
        # Every row is in the store: both phases' spans, the warm-up spans, and 7 calls per 8 spans of ours.
        per_round = args.batches * args.batch
        with Store(url).session() as c:
            traces = c.query("SELECT count() FROM otel_traces").result_rows[0][0]
            calls = c.query("SELECT count() FROM runmeter_calls").result_rows[0][0]
        assert traces == args.rounds * (2 * per_round + 1), f"otel_traces holds {traces} rows"
        assert calls == args.rounds * per_round * 7 // 8, f"runmeter_calls holds {calls} rows"
        print(f"stored: {traces:,} spans and {calls:,} calls, none missing")

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"chdb://{tmp}/store")
        fill_million(store)
        with store.session() as c:
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                rows = run_query(c, "cost_per_accepted_run", Filters(since=parse_since("2d")), group="name")
                times.append(time.perf_counter() - t0)
        print(f"cost-per-accepted-run query over 1M spans (40k runs): median {statistics.median(times) * 1000:.0f} ms "
              f"(goal <= 1000 ms embedded); {len(rows)} groups, {sum(r['Runs'] for r in rows):,} runs")


if __name__ == "__main__":
    main()
