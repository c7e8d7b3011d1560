"""The collector worker's path per span, stage by stage, in instructions (callgrind): the A/B measure
of a change to it on a noisy machine, where ``collector_ingest.py``'s CPU times move ±15 % between
runs of one build.

Each stage runs in a child under ``valgrind --tool=callgrind`` (``_callgrind.py``): the benchmark's
agent traces (``collector_ingest.make_requests``: 8 spans each, 5 chat calls and 2 tool calls) go
once through the whole path to warm every cache, then a second set of the same shape is measured:

* ``convert``: the logged request's bytes read into spans in C (``convert_bytes``);
* ``processor``: a remote-mode ``RunProcessor`` as the worker runs it (``owns_spans``): every span's
  ``on_end`` (read, priced, held), then the sweep that assembles the runs and forwards the spans;
* ``rows``: the ``otel_traces``, ``runmeter_calls`` and ``runmeter_runs`` rows of what it forwarded;
* ``encode``: those rows to Native blocks (``NativeEncoder``'s ``auto``: the block writer in C, ``_blocks.c``).

The chDB insert is left out: its work is mostly on chDB's own threads, and a server's.

    .venv-bench/bin/python benchmarks/worker_instructions.py [--requests 32] [--spans 64] [STAGE ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import _callgrind  # benchmarks/ is on sys.path when a script in it runs

STAGES = ("convert", "processor", "rows", "encode")


def child(stage: str, n_requests: int, spans_per_request: int) -> None:
    """In the child: warm up, then run ``stage`` alone between ``ready`` and ``done``."""
    import collector_ingest

    from runmeter.collector._convert import Limits, convert_bytes
    from runmeter.collector._worker import worker_gc
    from runmeter.conventions import load_dialects
    from runmeter.exporter import NativeEncoder, Store
    from runmeter.exporter._rows import CALL_COLUMNS, RUN_COLUMNS, TRACE_COLUMNS, call_row, run_row, trace_row
    from runmeter.processor import InMemoryRunSink, PriceBook, RunLimits, RunProcessor

    requests = collector_ingest.make_requests(2 * n_requests, spans_per_request)
    with tempfile.TemporaryDirectory() as d:
        store = Store(f"chdb://{d}/store")
        with store.session() as client:
            types = collector_ingest.table_types(client)
        store.close()
    encoder, prices, dialects = NativeEncoder(types, "auto"), PriceBook(), load_dialects()
    worker_gc()  # as a worker runs (collector/_worker.py): its collections are a full one a minute

    class Keep:  # the worker's Tracker, as far as the processor sees it
        def __init__(self) -> None:
            self.spans: list[Any] = []

        def on_start(self, span: Any, parent_context: Any = None) -> None: ...
        def on_end(self, span: Any) -> None: self.spans.append(span)
        def on_end_many(self, spans: Any) -> None: self.spans.extend(spans)
        def shutdown(self) -> None: ...
        def force_flush(self, timeout_millis: int = 30_000) -> bool: return True

    def run(batch: list[bytes], measured: bool) -> None:
        keep, sink = Keep(), InMemoryRunSink()
        processor = RunProcessor(keep, sink=sink, prices=prices, mode="remote", limits=RunLimits(quiet_s=0.5), clock=lambda: 0.0,
                                 background=False, owns_spans=True)

        def convert() -> list[Any]:
            return [s for data in batch for c in [convert_bytes(data, Limits())] if c is not None for s in c.spans]

        def process(spans: list[Any]) -> None:  # as the worker's pipeline hands them over (Pipeline._take)
            for i in range(0, len(spans), 64):
                processor.on_end_many(spans[i:i + 64])
            processor.sweep(final=True)

        def rows() -> tuple[list[Any], list[Any], list[Any]]:
            calls = [r for s in keep.spans if (r := call_row(s, dialects, prices)) is not None]
            return [trace_row(s) for s in keep.spans], calls, [run_row(r, 0) for r in sink.runs]

        def encode(made: tuple[list[Any], list[Any], list[Any]]) -> None:
            for table, columns, table_rows in zip(("otel_traces", "runmeter_calls", "runmeter_runs"), (TRACE_COLUMNS, CALL_COLUMNS, RUN_COLUMNS), made):
                encoder.encode(table, columns, table_rows)

        def measure(name: str) -> None:
            if measured and name == stage:
                _callgrind.ready()

        def measured_done(name: str) -> None:
            if measured and name == stage:
                _callgrind.done()

        measure("convert")
        spans = convert()
        measured_done("convert")
        measure("processor")
        process(spans)
        measured_done("processor")
        measure("rows")
        made = rows()
        measured_done("rows")
        measure("encode")
        encode(made)
        measured_done("encode")

    run(requests[:n_requests], measured=False)
    run(requests[n_requests:], measured=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--spans", type=int, default=64, help="spans per request (a multiple of 8)")
    ap.add_argument("stages", nargs="*", help=f"among {', '.join(STAGES)} (default: all)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.requests, args.spans)
        return
    unknown = set(args.stages) - set(STAGES)
    if unknown:
        ap.error(f"unknown stage(s) {sorted(unknown)}: among {', '.join(STAGES)}")
    if args.spans % 8:
        ap.error("--spans must be a multiple of 8 (whole runs of 8 spans per request)")
    n = args.requests * args.spans
    total = 0.0
    print(f"instructions per span, {n} spans ({args.requests} requests of {args.spans}) measured after as many to warm up:")
    for stage in args.stages or STAGES:
        per_span = _callgrind.instructions([__file__, "--requests", str(args.requests), "--spans", str(args.spans), "--child", stage]) / n
        total += per_span
        print(f"  {stage:10s} {per_span:10,.0f}")
    print(f"  {'together':10s} {total:10,.0f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
