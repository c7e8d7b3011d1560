"""The embedded store's part format: the collector's inserts into Wide parts (ClickHouse's default past
10 MiB) and into Compact ones (runmeter's embedded store, ``schema/008_embedded_compact_parts.sql``),
side by side in one run.

The same Native blocks - the three tables' rows of the benchmark's agent traces, as a collector
worker encodes them - go into two embedded stores that differ only in ``min_bytes_for_wide_part``,
taking turns, one insert per table per flush of ``--flush`` spans, merges stopped: chDB's CPU per
span (process time: its threads are this process's) and the ratio, by round, then the medians.
Then three queries on each store (a summary by span name, a trace by its id, a sum over an
attribute): median milliseconds. With ``--dir`` on another file system (``/dev/shm``) it shows how
much of the difference is the file system's: creating a Wide part's ~140 files costs what the
kernel's inode allocator costs there.

    .venv-bench/bin/python benchmarks/store_parts.py [--requests 160] [--flush 40960] [--rounds 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import collector_ingest  # noqa: E402  (the benchmark's agent traces and the store's column types)

CLICKHOUSE_DEFAULT_WIDE = 10 * 2**20  # min_bytes_for_wide_part's default
TABLES = ("otel_traces", "runmeter_calls", "runmeter_runs")


def table_rows(requests: list[bytes]) -> tuple[int, dict[str, tuple[list[str], list[list[Any]]]]]:
    """The spans' rows of the three tables, as a collector worker makes them."""
    from runmeter.collector._convert import Limits, convert_bytes
    from runmeter.conventions import load_dialects
    from runmeter.exporter._rows import CALL_COLUMNS, RUN_COLUMNS, TRACE_COLUMNS, call_row, run_row, trace_row
    from runmeter.processor import PriceBook, RunLimits, RunProcessor

    spans = [s for r in requests for c in [convert_bytes(r, Limits())] if c is not None for s in c.spans]
    forwarded: list[Any] = []
    records: list[Any] = []

    class Keep:
        def on_start(self, span: Any, parent_context: Any = None) -> None: ...
        def on_end(self, span: Any) -> None: forwarded.append(span)
        def shutdown(self) -> None: ...
        def force_flush(self, timeout_millis: int = 30000) -> bool: return True

    class Runs:
        def write_runs(self, batch: Any) -> None: records.extend(batch)
        def write_outcomes(self, events: Any) -> None: ...

    prices, dialects = PriceBook(), load_dialects()
    processor = RunProcessor(Keep(), sink=Runs(), prices=prices, mode="remote", limits=RunLimits(quiet_s=0.5, max_open_runs=len(spans)),
                             clock=lambda: 0.0, background=False, owns_spans=True)
    for i in range(0, len(spans), 64):
        processor.on_end_many(spans[i:i + 64])
    processor.sweep(final=True)
    now = time.time_ns()
    return len(spans), {
        "otel_traces": (TRACE_COLUMNS, [trace_row(s) for s in forwarded]),
        "runmeter_calls": (CALL_COLUMNS, [r for s in forwarded if (r := call_row(s, dialects, prices)) is not None]),
        "runmeter_runs": (RUN_COLUMNS, [run_row(r, now) for r in records]),
    }


def flushes(spans: int, rows: dict[str, tuple[list[str], list[list[Any]]]], flush: int) -> list[dict[str, tuple[list[str], list[list[Any]]]]]:
    """The rows cut into flushes of about ``flush`` spans each (every table in the same proportion)."""
    k = max(1, round(spans / flush))
    return [{t: (cols, rs[i * len(rs) // k:(i + 1) * len(rs) // k]) for t, (cols, rs) in rows.items()} for i in range(k)]


def file_system(path: str) -> str:
    try:
        out = subprocess.run(["df", "-T", path], capture_output=True, text=True, check=True).stdout.splitlines()[-1].split()
        return out[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=160, help="requests of 512 spans")
    ap.add_argument("--flush", type=int, default=40960, help="spans per flush (one insert per table)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where the stores go (default: the temp directory)")
    args = ap.parse_args()

    from runmeter.conventions import genai as G
    from runmeter.exporter import NativeEncoder, Store, insert_blocks

    spans, rows = table_rows(collector_ingest.make_requests(args.requests, 512))
    batches = flushes(spans, rows, args.flush)
    print(f"{spans:,} spans in {len(batches)} flush(es) of ~{spans // len(batches):,}; "
          f"rows: " + ", ".join(f"{t} {len(r):,}" for t, (_, r) in rows.items()))
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        print(f"stores in {d} ({file_system(d)})")
        # chDB opens one store at a time in a process: each is opened for its turn (not timed).
        # Each round has a new pair, so its merges merge that round's parts only.
        def new_stores(r: int) -> dict[str, Store]:
            stores = {"wide": Store(f"chdb://{d}/wide{r}"), "compact": Store(f"chdb://{d}/compact{r}")}
            with stores["wide"].session() as client:  # ClickHouse's default, as a server's tables have it
                for t in TABLES:
                    client.command(f"ALTER TABLE {t} MODIFY SETTING min_bytes_for_wide_part = {CLICKHOUSE_DEFAULT_WIDE}")
            return stores

        stores = new_stores(0)
        with stores["wide"].session() as client:
            enc = NativeEncoder(collector_ingest.table_types(client), "auto")
            blocks = [{t: (cols, enc.encode(t, cols, rs)) for t, (cols, rs) in b.items() if rs} for b in batches]
        cpu: dict[str, list[float]] = {label: [] for label in stores}
        merged: dict[str, list[float]] = {label: [] for label in stores}
        for r in range(args.rounds):
            if r:
                for store in stores.values():
                    store.close()
                stores = new_stores(r)
            for label in (("wide", "compact") if r % 2 == 0 else ("compact", "wide")):
                with stores[label].session() as client:
                    client.command("SYSTEM STOP MERGES")  # the inserts alone first, then their merge
                    gc.collect()
                    t0 = time.process_time()
                    for i, b in enumerate(blocks):
                        insert_blocks(client, f"round{r}-{i}", b)
                    t1 = time.process_time()
                    client.command("SYSTEM START MERGES")
                    for t in TABLES:
                        client.command(f"OPTIMIZE TABLE {t} FINAL")  # into one part each, as merges do by and by
                    cpu[label].append((t1 - t0) / spans * 1e6)
                    merged[label].append((time.process_time() - t0) / spans * 1e6)
            print(f"round {r + 1}: chDB's CPU a span, inserting: Wide {cpu['wide'][-1]:.2f} us, Compact {cpu['compact'][-1]:.2f} us "
                  f"({cpu['compact'][-1] / cpu['wide'][-1]:.2f}x); inserting and merging: Wide {merged['wide'][-1]:.2f} us, "
                  f"Compact {merged['compact'][-1]:.2f} us ({merged['compact'][-1] / merged['wide'][-1]:.2f}x)")
        for name, by in (("inserting", cpu), ("inserting and merging", merged)):
            ratios = [c / w for w, c in zip(by["wide"], by["compact"])]
            print(f"median, {name}: Wide {statistics.median(by['wide']):.2f} us a span, Compact {statistics.median(by['compact']):.2f} us "
                  f"= {statistics.median(ratios):.2f}x (median of the rounds' ratios)")
        trace_id = rows["otel_traces"][1][len(rows["otel_traces"][1]) // 2][1]
        queries = {
            "spans by name": "SELECT SpanName, count(), avg(Duration) FROM otel_traces GROUP BY SpanName",
            "a trace by its id": f"SELECT * FROM otel_traces WHERE TraceId = '{trace_id}'",
            "input tokens by service": f"SELECT ServiceName, sum(toUInt64OrZero(SpanAttributes['{G.GEN_AI_USAGE_INPUT_TOKENS}'])) "
                                       "FROM otel_traces GROUP BY ServiceName",
            "cost by model": "SELECT Model, sum(CostUsd) FROM runmeter_calls GROUP BY Model",
        }
        ms: dict[str, dict[str, float]] = {name: {} for name in queries}
        for label, store in stores.items():
            with store.session() as client:
                kinds = client.query("SELECT part_type, count() FROM system.parts WHERE database = currentDatabase() AND active "
                                     "AND table IN {t:Array(String)} GROUP BY part_type ORDER BY part_type", {"t": list(TABLES)}).result_rows
                print(f"{label}: parts " + ", ".join(f"{n} {kind}" for kind, n in kinds))
                for name, sql in queries.items():
                    times = []
                    for _ in range(7):
                        t0 = time.perf_counter()
                        client.query(sql)
                        times.append(time.perf_counter() - t0)
                    ms[name][label] = statistics.median(times) * 1e3
        for name, by in ms.items():
            print(f"query, {name:24s} Wide {by['wide']:7.1f} ms, Compact {by['compact']:7.1f} ms")
        for store in stores.values():
            store.close()


if __name__ == "__main__":
    main()
