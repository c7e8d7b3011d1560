"""Processing of logged requests: convert ─► Tracker ─► RunProcessor (remote) ─► exporter.

One :class:`Pipeline` runs in the collector's own process (``workers = 0``) or in each worker
process (``_worker.py``, started by ``_workers.WorkerPool``), there over the spans of its shard of trace ids only. It needs a
write-ahead log and a writer; in a worker both are stand-ins that ask the collector's process
(``_worker.LogClient``, ``_worker.WriterClient``), so this code is the same in both places.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from runmeter.collector._convert import Converted, Limits, convert, convert_bytes, parse_request
from runmeter.collector._tracker import Key, Tracker
from runmeter.exporter import ClickHouseSpanExporter, StoredRows
from runmeter.processor import PriceBook, RunLimits, RunProcessor

__all__ = ["LULL_S", "Pipeline", "decode", "encode", "only", "record_prefix", "shard_of"]

_log = logging.getLogger(__name__)

# Processing has caught up and no record came for this long: the input has paused (after a burst,
# between a quiet agent's traces). What is waiting then goes at once, not at the next batch.
LULL_S = 0.5


def shard_of(trace_id: bytes, shards: int) -> int:
    """The worker of a trace: every span of a trace meets its run in the same one."""
    return int.from_bytes(trace_id, "big") % shards


def record_prefix(project: str | None) -> bytes:
    """What a log record holds ahead of the request: the sender's project (its token's)."""
    p = (project or "").encode()
    return len(p).to_bytes(2, "little") + p


def encode(project: str | None, data: bytes) -> bytes:
    """A log record: the sender's project and the request as received (:func:`record_prefix` + ``data``)."""
    return record_prefix(project) + data


def decode(payload: bytes) -> tuple[str | None, bytes]:
    n = int.from_bytes(payload[:2], "little")
    return payload[2:2 + n].decode() or None, payload[2 + n:]


def only(req: ExportTraceServiceRequest, keys: set[Key]) -> ExportTraceServiceRequest:
    """A copy of the request with only the spans whose (trace id, span id) is in ``keys``."""
    out = ExportTraceServiceRequest()
    for rs in req.resource_spans:
        new_rs = out.resource_spans.add(schema_url=rs.schema_url)
        new_rs.resource.CopyFrom(rs.resource)
        for ss in rs.scope_spans:
            new_ss = new_rs.scope_spans.add(schema_url=ss.schema_url)
            new_ss.scope.CopyFrom(ss.scope)
            for span in ss.spans:
                if (int.from_bytes(span.trace_id, "big"), int.from_bytes(span.span_id, "big")) in keys:
                    new_ss.spans.add().CopyFrom(span)
    return out


class Pipeline:
    """Logged requests in, spans and runs out to ClickHouse; each log record released once written.

    ``shard``: ``(index, count)`` - only the spans of traces :func:`shard_of` gives this index.
    """

    def __init__(
        self,
        writer: Any,
        wal: Any,
        *,
        limits: Limits,
        written: Any,
        duplicate: Any,
        prices: PriceBook | None = None,
        run_limits: RunLimits | None = None,
        meter_provider: MeterProvider | None = None,
        metric_labels: list[str] | None = None,
        give_way: Callable[[], None] = lambda: None,
        shard: tuple[int, int] | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self.writer = writer
        self.wal = wal
        self.limits = limits
        self.shard = shard
        self.give_way = give_way
        self._arrived: float | None = None  # when the request being processed arrived (None: idle)
        self._taken = 0.0  # when processing last took a request or caught up (time.monotonic)
        self._clock_floor = 0.0
        # Run records go to the writer's spool: in a lull, without its linger (Writer.lull).
        writer.lull = self.lull
        # Spans go straight into ClickHouse: the log keeps them durable until the insert succeeds
        # (no second copy in the spool). Run records, written once per run, go through the spool.
        self.exporter = ClickHouseSpanExporter(writer=writer, prices=prices, spool=False)
        self.tracker = Tracker(self.exporter, wal, written, interval_s=interval_s, give_way=give_way, duplicate=duplicate, lull=self.lull)
        self.processor = RunProcessor(
            self.tracker, sink=self.exporter.run_sink, prices=prices, limits=run_limits, mode="remote",
            meter_provider=meter_provider, clock=self.arrival_clock, metric_labels=metric_labels or [], owns_spans=True,
        )

    @property
    def arrived(self) -> float | None:
        return self._arrived

    @arrived.setter
    def arrived(self, when: float | None) -> None:
        """Set by whoever hands requests over: each one's arrival time as it is processed, None
        once processing has caught up."""
        self._taken = time.monotonic()
        self._arrived = when

    def lull(self) -> bool:
        """Processing caught up ``LULL_S`` ago and no request came since: nothing more is coming to
        join a batch, so the Tracker and the writer need not wait for one."""
        return self._arrived is None and time.monotonic() - self._taken >= LULL_S

    def arrival_clock(self) -> float:
        """The RunProcessor's clock: when the spans being processed *arrived* (real time when idle).

        A run is quiet when none of its spans arrived for ``quiet_s``, however far processing
        runs behind the log: a backlog, or a pause between a root and its children in one
        request (a large assembly, a garbage collection), must not complete a run early and
        leave the rest of its spans waiting ``rootless_quiet_s`` as a second, rootless run.
        Never goes backwards. (``time.monotonic`` is one clock for every process of the host,
        so a worker reads the arrival times the receiving process took.)
        """
        arrived = self._arrived
        now = time.monotonic() if arrived is None else arrived
        if now < self._clock_floor:
            return self._clock_floor
        self._clock_floor = now
        return now

    def process(self, seq: int, req: ExportTraceServiceRequest, project: str | None) -> None:
        self.give_way()
        try:
            converted = convert(req, self.limits, project, shard=self.shard)
        except Exception:
            _log.exception("record %d cannot be converted; it stays in the log", seq)
            return
        self._take(seq, converted)

    def process_bytes(self, seq: int, data: bytes | memoryview, project: str | None) -> None:
        """A logged request as its bytes (any buffer, not kept past the call): read in C when it is
        an ordinary one, else parsed by protobuf."""
        try:
            converted = convert_bytes(data, self.limits, project, shard=self.shard)
        except Exception:
            _log.exception("record %d cannot be converted; it stays in the log", seq)
            return
        if converted is None:
            self.process(seq, parse_request(bytes(data)), project)
        else:
            self.give_way()
            self._take(seq, converted)

    def _take(self, seq: int, converted: Converted) -> None:
        fresh = self.tracker.expect(seq, converted.spans)
        for i in range(0, len(fresh), 64):
            self.give_way()
            self.processor.on_end_many(fresh[i:i + 64])

    def carry_forward(self) -> None:
        """Write again, at the tail of the log, the spans still waiting in its oldest segment.

        A record is released only when all its spans are in ClickHouse, and the log deletes a
        segment only when every record in it is released: one span held for long (a run still
        open after hours, a rootless trace waiting ``rootless_quiet_s``) would keep every later
        segment on disk. Its waiting spans are logged again in a record of their own, and the
        old record is released, so the log on disk stays a few segments past what is unreleased.
        """
        for seq, keys in self.tracker.waiting(self.wal.pinning()).items():
            try:
                project, data = decode(self.wal.read(seq))
                carried = only(parse_request(data), keys)
                new = self.wal.append_carried(encode(project, carried.SerializeToString()))
            except Exception as exc:  # the log is full or unreadable: the record stays where it is
                _log.warning("cannot carry log record %d forward: %s", seq, exc)
                return
            self.tracker.carry(seq, new, keys)

    def replay(self, records: list[tuple[int, str | None, bytes]]) -> None:
        """Records a crash left in the log (or a worker that died): the spans of their traces that
        already reached ClickHouse are looked up first and not written again."""
        decoded = []
        trace_ids: set[str] = set()
        for seq, project, data in records:
            try:
                req = parse_request(data)
            except Exception:
                _log.exception("record %d cannot be read; it stays in the log", seq)
                continue
            decoded.append((seq, req, project))
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        if self.shard is None or shard_of(s.trace_id, self.shard[1]) == self.shard[0]:
                            trace_ids.add(s.trace_id.hex())
        self.tracker.stored = self._stored(sorted(trace_ids))
        stored = len(self.tracker.stored)
        self.arrived = time.monotonic()  # they arrived before now: all at once, for the quiet period
        try:
            for item in decoded:
                self.process(*item)
        finally:
            self.arrived = None
        _log.info("replay done: %d span(s) were already stored and are not written again", stored)

    def _stored(self, trace_ids: list[str]) -> StoredRows:
        """Rows of these traces already in ClickHouse, per table; waits (with backoff) until the store answers."""
        delay = 0.5
        while True:
            try:
                if not self.writer.flush(timeout_s=60):  # what an earlier run spooled goes in first
                    raise RuntimeError("the spool does not drain")
                found = StoredRows()
                for table, keys in (("otel_traces", found.traces), ("runmeter_calls", found.calls)):
                    for i in range(0, len(trace_ids), 1000):
                        rows = self.writer.query(
                            f"SELECT TraceId, SpanId FROM {table} WHERE TraceId IN {{ids:Array(String)}}",
                            {"ids": trace_ids[i:i + 1000]},
                        )
                        keys.update((int(t, 16), int(s, 16)) for t, s in rows)
                return found
            except Exception as exc:
                _log.warning("cannot look up replayed traces in ClickHouse yet (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def flush_once(self, deadline: float) -> bool:
        """Complete every open run (as if quiet) and write what waits; True when all is written."""
        self.processor.sweep(force=True)
        return self.tracker.flush_once(deadline)

    def close(self, deadline: float) -> bool:
        """Complete every run, write what waits within the deadline, stop the threads."""
        self.processor.sweep(final=True)
        done = self.tracker.flush_once(deadline)
        self.tracker.shutdown()
        self.processor.shutdown()
        return done
