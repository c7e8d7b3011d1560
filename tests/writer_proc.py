"""A writer process for the multi-process tests: exports runs to a store, printing each acknowledgement."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult  # noqa: E402

from runmeter.exporter import ClickHouseSpanExporter, Spool, Store, Writer  # noqa: E402
from runmeter.processor import PriceBook, RunProcessor  # noqa: E402
from tests.spans import llm, run_root  # noqa: E402


def main() -> None:
    mode, url, spool, first, last = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    writer = Writer(Store(url), Spool(spool), background=True)
    exp = ClickHouseSpanExporter(writer=writer, prices=PriceBook())
    if mode == "spans":  # acknowledge span batches one by one, forever or until killed
        for t in range(first, last):
            if exp.export([llm(1, None, "gpt-4o-mini", 10, 1, trace_id=t)]) is SpanExportResult.SUCCESS:
                print(t, flush=True)
        return
    proc = RunProcessor(SimpleSpanProcessor(exp), sink=exp.run_sink, mode="remote", background=False)
    for t in range(first, last):  # runs: a root and two priced calls each
        for s in (run_root(f"run-{t}", 1, trace_id=t, end_ms=50), llm(2, 1, "gpt-4o-mini", 10_000, 1_000, trace_id=t, start_ms=1),
                  llm(3, 1, "gpt-4o-mini", 10_000, 1_000, trace_id=t, start_ms=20)):
            proc.on_end(s)
        proc.sweep(force=True)
    proc.shutdown()
    print("done", flush=True)


if __name__ == "__main__":
    main()
