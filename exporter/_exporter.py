"""ClickHouseSpanExporter and ClickHouseRunSink: spans and run records into the store.

The exporter is also the ``clickhouse`` entry point of ``opentelemetry_traces_exporter``,
so ``OTEL_TRACES_EXPORTER=clickhouse`` (the runmeter distro's default) selects it.
``export()`` converts a batch of spans to column rows (``otel_traces`` and, for
LLM and tool calls, ``runmeter_calls``), spools it durably and returns SUCCESS —
the batch is then acknowledged and will reach ClickHouse — or FAILURE when the
spool is full. ``run_sink`` writes run records and outcome events through the
same writer.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from runmeter.conventions import load_dialects
from runmeter.exporter._rows import (
    CALL_COLUMNS,
    OUTCOME_COLUMNS,
    RUN_COLUMNS,
    TRACE_COLUMNS,
    Unstorable,
    call_row,
    outcome_row,
    run_row,
    trace_row,
)
from runmeter.exporter._spool import Batch, Spool
from runmeter.exporter._store import Store
from runmeter.exporter._writer import Writer
from runmeter.processor import OutcomeEvent, PriceBook, RunRecord
from runmeter.core import internal_error, load_settings

__all__ = ["ClickHouseRunSink", "ClickHouseSpanExporter", "StoredRows", "default_spool_dir", "open_writer"]

_log = logging.getLogger(__name__)
_writers: dict[tuple[str, str], Writer] = {}
skipped: Counter[str] = Counter()  # spans and run records that could not be stored, by kind


def _skip(kind: str, exc: Unstorable) -> None:
    skipped[kind] += 1
    if skipped[kind] == 1:
        _log.error("runmeter: a %s cannot be stored and is skipped (further ones are counted, not logged): %s", kind, exc)


def default_spool_dir(store: Store) -> Path:
    if store.embedded and store.url.path is not None:
        return store.url.path.with_name(store.url.path.name + "-spool")
    return Path(".runmeter-spool")


def open_writer(url: str, spool_dir: str | Path | None = None, spool_max_bytes: int = 1 << 30, background: bool = True) -> Writer:
    """The process's writer for a store (shared by the span exporter and the run sink)."""
    store = Store(url)
    spool = Path(spool_dir) if spool_dir else default_spool_dir(store)
    key = (str(store.url), str(spool.resolve()))
    w = _writers.get(key)
    if w is None or w._stop.is_set():
        w = _writers[key] = Writer(store, Spool(spool, spool_max_bytes), background=background)
    return w


class ClickHouseRunSink:
    """The RunSink of the ClickHouse store."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer

    def write_runs(self, records: list[RunRecord]) -> None:
        if not records:
            return
        version = time.time_ns()
        rows = []
        for r in records:
            try:
                rows.append(run_row(r, version))
            except Unstorable as exc:  # one run that cannot be stored never costs the others
                _skip("run record", exc)
        if rows:
            self.writer.submit(Batch.of({"runmeter_runs": {"columns": RUN_COLUMNS, "rows": rows}}))

    def write_outcomes(self, events: list[OutcomeEvent]) -> None:
        if not events:
            return
        tables = {"runmeter_outcomes": {"columns": OUTCOME_COLUMNS, "rows": [outcome_row(e) for e in events]}}
        self.writer.submit(Batch.of(tables))


@dataclass
class StoredRows:
    """(trace id, span id) of the spans a table already holds, per table."""

    traces: set[tuple[int, int]] = field(default_factory=set)
    calls: set[tuple[int, int]] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.traces | self.calls)

    def __bool__(self) -> bool:
        return bool(self.traces or self.calls)

    def discard(self, key: tuple[int, int]) -> None:
        self.traces.discard(key)
        self.calls.discard(key)


class ClickHouseSpanExporter(SpanExporter):
    """Spans into ``otel_traces`` (Collector-compatible) and ``runmeter_calls``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        spool_dir: str | Path | None = None,
        spool_max_bytes: int | None = None,
        prices: PriceBook | None = None,
        writer: Writer | None = None,
        spool: bool = True,
    ) -> None:
        """``spool=False``: insert in ``export()`` itself and report failure if ClickHouse refuses -
        for a caller that keeps the spans durable until then (the collector's write-ahead log)."""
        if writer is None:
            if url is None or spool_max_bytes is None or prices is None:
                settings = load_settings()  # the facade's loader, registered in runmeter.core
                url = url or settings.storage.clickhouse_url
                spool_dir = spool_dir or settings.storage.spool_dir
                spool_max_bytes = spool_max_bytes or settings.storage.spool_max_bytes
                prices = prices or PriceBook(settings.pricing)
            writer = open_writer(url, spool_dir, spool_max_bytes)
        self.writer = writer
        self.run_sink = ClickHouseRunSink(writer)
        self._prices = prices or PriceBook()
        self._dialects = load_dialects()
        self._shutdown = False
        self._spool = spool
        self._last_error = ""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.export_new(spans)

    def export_new(self, spans: Sequence[ReadableSpan], stored: StoredRows | None = None) -> SpanExportResult:
        """:meth:`export`, leaving out the rows ClickHouse already holds (``stored``: after a crash,
        a span may be in ``otel_traces`` and not yet in ``runmeter_calls``, which are two inserts)."""
        if self._shutdown:
            return SpanExportResult.FAILURE
        # (runmeter's own ClickHouse calls are never traced: exporter/_store._UntracedClient)
        try:
            traces, calls = [], []
            for span in spans:
                try:
                    key = (span.context.trace_id, span.context.span_id) if stored is not None and span.context else None
                    if key is None or stored is None or key not in stored.traces:
                        traces.append(trace_row(span))
                    if key is None or stored is None or key not in stored.calls:
                        row = call_row(span, self._dialects, self._prices)
                        if row is not None:
                            calls.append(row)
                except Unstorable as exc:  # a malformed span never costs the rest of the batch
                    _skip("span", exc)
                except Exception as exc:
                    internal_error("exporter.convert", exc)
            tables = {
                "otel_traces": {"columns": TRACE_COLUMNS, "rows": traces},
                "runmeter_calls": {"columns": CALL_COLUMNS, "rows": calls},
            }
            if not self._spool:
                return self._insert(spans, tables)
            ok = self.writer.submit(Batch.of(tables))
            return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE
        except Exception as exc:
            internal_error("exporter.export", exc)
            return SpanExportResult.FAILURE

    def _insert(self, spans: Sequence[ReadableSpan], tables: dict[str, Any]) -> SpanExportResult:
        # The same rows always carry the same token (rows are named by their trace and span ids,
        # columns 1 and 2 of both tables): a retry after a partial failure is counted once.
        ids = "|".join("".join(row[1] + row[2] for row in t["rows"]) for t in tables.values())
        try:
            self.writer.insert(Batch(hashlib.blake2b(ids.encode(), digest_size=16).hexdigest(), tables))
        except Exception as exc:
            msg = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            if msg != self._last_error:
                _log.warning("runmeter: cannot write %d spans to %s yet (%s)", len(spans), self.writer.store.url.redacted(), msg)
                self._last_error = msg
            return SpanExportResult.FAILURE
        self._last_error = ""
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        if self._shutdown:
            return False
        return self.writer.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self.writer.close()
