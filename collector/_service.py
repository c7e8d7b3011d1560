"""The collector's pipeline, between the receivers and the store.

::

    receiver ─ check ─► write-ahead log (group commit, fsync) ─► acknowledge
                                  │ in order, once durable
                                  ▼
               convert ─► RunProcessor (remote) ─► Tracker (_tracker.py) ─► ClickHouseSpanExporter ─► ClickHouse
                              │ runs                  │ once the insert succeeded
                              ▼                       └─► release the log records
                        run sink ─► spool ─► ClickHouse

Processing (_pipeline.Pipeline) runs in worker processes sharded by trace id (``workers``, one
per core by default; see _workers.py for how the log's guarantees hold across processes), or
in this process on one thread (``workers = 0``).

A log record is released only when every span of it is in ClickHouse (and the
runs of its traces were in the durable spool before that), so a crash at any
point loses nothing acknowledged; the log, not a second copy in the spool, keeps
the spans until then. After a crash the records past
the checkpoint are replayed; the spans of those traces that already reached
ClickHouse are looked up first and not written again, so each acknowledged
span is stored exactly once (the replayed runs are re-assembled and replace
their earlier rows: ``runmeter_runs`` is a ReplacingMergeTree). A span that comes again
(a client resends a request whose acknowledgement it lost) while its first copy is on its way,
or among the last spans written, is not processed again (``Tracker.expect`` in ``_tracker.py``).

The RunProcessor's quiet periods run on :meth:`Collector.arrival_clock`: the time
the spans being processed arrived, not the time they are processed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import Counter, MeterProvider
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from runmeter.collector._convert import Converted, Limits, check, check_bytes, owners_bytes, parse_request
from runmeter.collector._options import CollectorSettings
from runmeter.collector._ownership import Bloom, Ownership, StoreIds, remove, spans_of
from runmeter.collector._pipeline import Pipeline, decode, record_prefix
from runmeter.collector._wal import LogFull, WalRecord, WriteAheadLog
from runmeter.collector._workers import WorkerPool, WorkerSpec, _Relay
from runmeter.conventions import attributes as A
from runmeter.core import Thread
from runmeter.exporter import Writer
from runmeter.processor import PriceBook, RunLimits

__all__ = ["Collector", "Refused", "map_large_blocks_apart"]

_log = logging.getLogger(__name__)


class Refused(Exception):
    """The request is refused as a whole; ``retryable`` ones carry a ``retry_after_s``."""

    def __init__(self, reason: str, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.retry_after_s is not None


_HELD_BYTES = 32 << 20  # parsed requests kept in memory for processing (by their size on the wire)
_ID_PAGE = 200_000  # ids read from the store at a time for ownership's filter (~10 MB of rows)


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:  # not glibc: nothing to do
        return None


_LIBC = _libc()
_MALLOC_TRIM = _LIBC.malloc_trim if _LIBC is not None else None
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_LARGE = 128 << 10


def map_large_blocks_apart() -> None:
    """Blocks of 128 KiB and more (request bodies and their copies) get pages of their own, given
    back to the OS when freed. glibc's default raises that threshold after the first such block is
    freed (up to 32 MiB), and from then on keeps each burst's request-sized blocks in its heaps, one
    per thread: 8 gRPC requests of 3.5 MiB at a time (4 read at once) took the collector's RSS up by
    185 MiB, past the 68 MiB its limits allow (docs/collector.md, "Memory"); within it with this
    (tests/test_collector_hostile.py).
    A block of its own costs an mmap and a munmap: microseconds, against a request's milliseconds.
    Called at the start of the collector's process and of each worker."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, _LARGE)


def _release_free_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc keeps them after a burst of large requests,
    so RSS would stay at its peak though the memory is free)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@dataclass
class _Metrics:
    received: Counter
    accepted: Counter
    rejected: Counter
    written: Counter
    duplicate: Counter
    refused: Counter


class Collector:
    """Receivers call :meth:`accept`; everything after the log happens on the collector's threads."""

    def __init__(
        self,
        settings: CollectorSettings,
        writer: Writer,
        *,
        prices: PriceBook | None = None,
        run_limits: RunLimits | None = None,
        meter_provider: MeterProvider | None = None,
        track_ownership: bool = False,
    ) -> None:
        self.settings = settings
        self.writer = writer
        # When a token is bound to a project: then no such token may join or name another project's
        # traces and runs (see _ownership).
        self.track_ownership = track_ownership
        self._held_lock = threading.Lock()
        self._held_bytes = 0  # wire size of the parsed requests waiting in the processing queue
        # An embedded store has no other writer while it is open here: the ids it cannot hold need no lookup.
        store_ids = StoreIds(self._stored_ids) if track_ownership and writer.store.embedded and Bloom is not None else None
        self.ownership = Ownership(self._stored_owners, store_ids=store_ids)
        self.limits = Limits(settings.max_attributes_per_span, settings.max_attribute_value_length)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(__package__ or __name__)
        self.metrics = _Metrics(
            received=meter.create_counter(A.RUNMETER_COLLECTOR_SPANS_RECEIVED_METRIC, A.RUNMETER_COLLECTOR_SPANS_RECEIVED_UNIT),
            accepted=meter.create_counter(A.RUNMETER_COLLECTOR_SPANS_ACCEPTED_METRIC, A.RUNMETER_COLLECTOR_SPANS_ACCEPTED_UNIT),
            rejected=meter.create_counter(A.RUNMETER_COLLECTOR_SPANS_REJECTED_METRIC, A.RUNMETER_COLLECTOR_SPANS_REJECTED_UNIT),
            written=meter.create_counter(A.RUNMETER_COLLECTOR_SPANS_WRITTEN_METRIC, A.RUNMETER_COLLECTOR_SPANS_WRITTEN_UNIT),
            duplicate=meter.create_counter(A.RUNMETER_COLLECTOR_SPANS_DUPLICATE_METRIC, A.RUNMETER_COLLECTOR_SPANS_DUPLICATE_UNIT),
            refused=meter.create_counter(A.RUNMETER_COLLECTOR_REQUESTS_REFUSED_METRIC, A.RUNMETER_COLLECTOR_REQUESTS_REFUSED_UNIT),
        )
        meter.create_observable_counter(
            A.RUNMETER_COLLECTOR_OWNER_LOOKUPS_METRIC, [lambda _: [metrics.Observation(self.ownership.lookups)]],
            A.RUNMETER_COLLECTOR_OWNER_LOOKUPS_UNIT,
        )
        meter.create_observable_gauge(
            A.RUNMETER_COLLECTOR_LOG_SIZE_METRIC, [lambda _: [metrics.Observation(self.wal.size)]], A.RUNMETER_COLLECTOR_LOG_SIZE_UNIT
        )
        meter.create_observable_gauge(
            A.RUNMETER_COLLECTOR_STORE_LAG_METRIC, [lambda _: [metrics.Observation(self.store_lag_bytes)]], A.RUNMETER_COLLECTOR_STORE_LAG_UNIT
        )
        self._queue: queue.SimpleQueue[tuple[int, ExportTraceServiceRequest | None, str | None, float, int] | None] = queue.SimpleQueue()
        self._clock_floor = 0.0
        self.wal = WriteAheadLog(
            settings.wal_dir, max_bytes=settings.wal_max_bytes, segment_bytes=settings.wal_segment_bytes, on_durable=self._durable
        )
        if track_ownership:  # before any request is taken and before the log's records are handed on
            self._learn_owners(self.wal.replay)
            if store_ids is not None:
                store_ids.start()
        self.workers = settings.worker_count()
        # Run records are spooled as the pipeline's sweeps write them: the writer waits the same
        # interval as the span batches for more to join an insert (cut short in a lull).
        writer.linger_s = settings.insert_interval_s
        self.pipeline: Pipeline | None = None
        self.pool: WorkerPool | None = None
        if self.workers:
            # Traces spread evenly over the workers: each holds its share of the open-run bound,
            # so the collector as a whole keeps the bound docs/collector.md ("Memory") states.
            limits = run_limits or RunLimits()
            per_worker = dataclasses.replace(limits, max_open_runs=max(1, -(-limits.max_open_runs // self.workers)))
            spec = WorkerSpec(
                count=self.workers, store_url=writer.store.url.with_credentials(), schema=writer.store.schema,
                embedded=writer.store.embedded, limits=self.limits, prices=prices, run_limits=per_worker,
                metric_labels=list(settings.metrics_run_labels), native_codec=settings.native_codec, log_format=settings.log_format,
                log_level=logging.getLogger().getEffectiveLevel(), nice=settings.worker_nice,
                insert_interval_s=settings.insert_interval_s,
            )
            relay = _Relay(meter_provider, {
                (__package__ or __name__, A.RUNMETER_COLLECTOR_SPANS_WRITTEN_METRIC): self.metrics.written,
                (__package__ or __name__, A.RUNMETER_COLLECTOR_SPANS_DUPLICATE_METRIC): self.metrics.duplicate,
            })
            self.pool = WorkerPool(spec, self.wal, writer, relay, held_bytes=_HELD_BYTES)
        else:
            self.pipeline = Pipeline(
                writer, self.wal, limits=self.limits, written=self.metrics.written, duplicate=self.metrics.duplicate,
                prices=prices, run_limits=run_limits, meter_provider=meter_provider, metric_labels=list(settings.metrics_run_labels),
                give_way=self.give_way, interval_s=settings.insert_interval_s,
            )
        self.draining = False
        self._stopping = threading.Event()  # shutdown(): the supervising thread ends
        self._intake = 0  # requests between accept() and durable: processing gives way to them
        self._intake_lock = threading.Lock()
        self._full_at = -1e9  # when the log last refused a request
        self._enqueued = self._processed = 0  # live records handed to / done by the processing thread
        self.replayed = threading.Event()
        self._worker = Thread(target=self._work, name="runmeter-collector-process", daemon=True)
        self._worker.start()

    # --- intake (receiver threads) ----------------------------------------------------------

    def check_wire(self, data: bytes, project: str | None) -> Converted | None:
        """The check of a protobuf request made on its bytes, when nothing here needs it parsed:
        worker processes read it from the log (:func:`check_bytes`); with tokens, what ownership
        reads of each span comes from the bytes too (:func:`owners_bytes`). None: parse it
        (:func:`read_request`) and pass it to :meth:`accept`."""
        if self.pool is None:
            return None
        if self.track_ownership:
            return owners_bytes(data, project, self.limits)
        return check_bytes(data, self.limits) if project is None else None

    def accept(
        self, req: ExportTraceServiceRequest | None, data: bytes | None, project: str | None, invalid_utf8: int = 0,
        checked: Converted | None = None,
    ) -> tuple[Converted, Future[int] | None]:
        """Check the request and log it; the future completes once it is durable (then acknowledge).

        ``invalid_utf8``: spans already dropped from ``req`` when it was read (they are refused too).
        ``checked``: what :meth:`check_wire` said of ``data``; then ``req`` is None.

        Raises :class:`Refused` when the log is full or the collector is draining.
        """
        with self._intake_lock:
            self._intake += 1
        try:
            checked, fut = self._accept(req, data, project, invalid_utf8, checked)
        except BaseException:
            self._leave()
            raise
        if fut is None:
            self._leave()
        else:
            fut.add_done_callback(self._leave)
        return checked, fut

    @property
    def requests_in_flight(self) -> int:
        """Requests accepted and not yet durable (or refused): processing gives way while any are."""
        return self._intake

    def _leave(self, _: object = None) -> None:
        with self._intake_lock:
            self._intake -= 1

    def give_way(self, limit_s: float = 0.002) -> None:
        """Called by processing between chunks of work: while requests wait to be acknowledged,
        sleep (in 0.5 ms steps, at most ``limit_s``) so they get the interpreter first; the
        bound keeps processing going under a steady stream of requests."""
        deadline = 0.0
        while self._intake:
            now = time.monotonic()
            if not deadline:
                deadline = now + limit_s
            elif now >= deadline:
                return
            time.sleep(0.0005)

    def _accept(
        self, req: ExportTraceServiceRequest | None, data: bytes | None, project: str | None, invalid_utf8: int,
        checked: Converted | None,
    ) -> tuple[Converted, Future[int] | None]:
        if checked is None:
            if req is None:
                assert data is not None
                req = parse_request(data)
            checked = check(req, project, self.limits)
        if invalid_utf8:
            checked.rejected += invalid_utf8
            checked.reasons["invalid_utf8"] += invalid_utf8
        if self.track_ownership and checked.accepted:
            if checked.owners is not None:  # read on the wire (check_wire)
                at = self.ownership.decide(checked.owners, project)
                if at:  # rare: the spans go from the parsed request, which is logged in place of the bytes
                    assert data is not None
                    req = parse_request(data)
                    remove(req, at)
                foreign = len(at)
            else:
                assert req is not None
                foreign = self.ownership.admit(req, project)
            if foreign:  # removed from the request: what is logged is what was acknowledged
                checked.accepted -= foreign
                checked.rejected += foreign
                checked.reasons["foreign_project"] += foreign
                data = None
        self.metrics.received.add(checked.accepted + checked.rejected)
        for reason, n in checked.reasons.items():
            self.metrics.rejected.add(n, {ERROR_TYPE: reason})
        if not checked.accepted:
            return checked, None
        if self.draining:
            self.refuse("draining")
            raise Refused("draining", "the collector is shutting down; retry on another replica", self.settings.retry_after_s)
        if data is None:
            assert req is not None
            data = req.SerializeToString()
        # What processing gets once the record is durable: the parsed request here, the bytes for workers.
        item = (req, project, checked.accepted, len(data)) if self.pool is None else (project, data, checked.accepted)
        try:
            fut = self.wal.append(data, item, prefix=record_prefix(project))
        except LogFull as exc:
            self._full_at = time.monotonic()
            self.refuse("log_full")
            raise Refused("log_full", f"{exc}: ClickHouse is behind; retry later", self.settings.retry_after_s) from None
        return checked, fut

    def _stored_owners(self, trace_ids: list[str], run_ids: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        """The projects the store knows for these traces and runs (Ownership's lookup): primary-key
        lookups, in ``runmeter_trace_owners`` (the projects that wrote each trace's calls and runs)
        and ``runmeter_runs``, whatever the store holds."""
        traces: dict[str, str] = {}
        runs: dict[str, str] = {}
        if trace_ids:
            for t, p in self.writer.query(
                "SELECT TraceId, any(Project) FROM runmeter_trace_owners WHERE TraceId IN {t:Array(String)} GROUP BY TraceId",
                {"t": trace_ids},
            ):
                traces[t] = p
        if run_ids:
            for r, p in self.writer.query(
                "SELECT RunId, argMax(Project, Version) FROM runmeter_runs WHERE RunId IN {r:Array(String)} GROUP BY RunId",
                {"r": run_ids},
            ):
                runs[r] = p
        return traces, runs

    def _stored_ids(self) -> Iterator[list[str]]:
        """The trace and run ids the store's owners come from (``_stored_owners`` asks these tables),
        in pages, each a primary-key range after the last."""
        for sql in (
            "SELECT TraceId FROM runmeter_trace_owners WHERE TraceId > {after:String} ORDER BY TraceId LIMIT {n:UInt32}",
            "SELECT RunId FROM runmeter_runs WHERE RunId > {after:String} ORDER BY RunId LIMIT {n:UInt32}",
        ):
            after = ""
            while True:
                page = [row[0] for row in self.writer.query(sql, {"after": after, "n": _ID_PAGE})]
                if not page:
                    break
                yield page
                after = page[-1]

    def _learn_owners(self, records: list[WalRecord]) -> None:
        """The owners of what the log holds at a start, not yet written: the store does not know them
        yet, and the requests that made them were admitted before they were logged (~1 µs a span:
        seconds for a full log, before the receivers listen)."""
        started = time.monotonic()
        for r in records:
            try:
                project, data = decode(r.payload)
                checked = owners_bytes(data, project, self.limits)
                owners = checked.owners if checked is not None else None
                self.ownership.learn(owners if owners is not None else spans_of(parse_request(data), project))
            except Exception as exc:  # noqa: BLE001 - unreadable: replay says so too
                _log.warning("cannot read the owners of log record %d (%s)", r.seq, exc)
        if records:
            _log.info("read the owners of %d log record(s) not yet written in %.1fs", len(records), time.monotonic() - started)

    def refuse(self, reason: str) -> None:
        self.metrics.refused.add(1, {ERROR_TYPE: reason})

    def _durable(self, seq: int, item: Any) -> None:  # the log's writer thread, in sequence order
        if item is None:
            return  # spans carried forward (Pipeline.carry_forward): already being processed
        if self.pool is not None:
            project, data, n = item
            self.metrics.accepted.add(n)
            self.pool.dispatch(seq, project, data, time.monotonic())
            return
        req, project, n, size = item
        self.metrics.accepted.add(n)
        self._enqueued += 1
        # A parsed request takes several times its size in memory: past _HELD_BYTES of them waiting
        # (processing behind intake), only the sequence number waits and the request is read back
        # from the log when its turn comes. A backlog then costs disk (the log), not memory.
        with self._held_lock:
            keep = self._held_bytes + size <= _HELD_BYTES
            if keep:
                self._held_bytes += size
        self._queue.put((seq, req if keep else None, project, time.monotonic(), size if keep else 0))

    # --- processing (worker processes, or one thread here) ----------------------------------

    @property
    def tracker(self) -> Any:
        assert self.pipeline is not None, "with worker processes, each worker has its own tracker"
        return self.pipeline.tracker

    def _work(self) -> None:
        try:  # open the store (and migrate it) before the first spans need it
            self.writer.query("SELECT 1")
        except Exception as exc:
            _log.warning("ClickHouse is not reachable yet (%s); spans wait in the log", exc)
        if self.pool is not None:
            self._supervise(self.pool)
            return
        assert self.pipeline is not None
        pipeline = self.pipeline
        try:
            records = self.wal.replay
            self.wal.replay = []
            if records:
                _log.warning("replaying %d write-ahead log record(s) left by the last run", len(records))
                pipeline.replay([(r.seq, *decode(r.payload)) for r in records])
        except Exception:
            _log.exception("replaying the write-ahead log failed; its records stay for the next start")
        self.replayed.set()
        carried = trimmed = time.monotonic()
        busy = False  # work since the last trim
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                if busy and time.monotonic() - trimmed >= 10.0:  # idle after work: give freed memory back
                    _release_free_memory()
                    trimmed, busy = time.monotonic(), False
            else:
                if item is None:
                    return
                seq, req, project, pipeline.arrived, held = item
                busy = True
                if req is None:
                    try:
                        project, data = decode(self.wal.read(seq))
                        req = parse_request(data)
                    except Exception:
                        _log.exception("record %d cannot be read back from the log; it stays there", seq)
                        self._processed += 1
                        continue
                else:
                    with self._held_lock:
                        self._held_bytes -= held
                pipeline.process(seq, req, project)
                self._processed += 1
                if self._queue.empty():
                    pipeline.arrived = None
            if time.monotonic() - carried >= 1.0 and not self.draining:  # at most once a second: it looks at every unreleased record
                carried = time.monotonic()
                pipeline.carry_forward()

    def _supervise(self, pool: WorkerPool) -> None:
        """With worker processes: once they are up, hand them what the last run left in the log."""
        if not pool.wait_ready(120, self._stopping):
            _log.error("the worker processes did not start within 120 s; records wait in the log")
            return
        records = self.wal.replay
        self.wal.replay = []
        if records:
            _log.warning("replaying %d write-ahead log record(s) left by the last run", len(records))
            pool.replay([r.seq for r in records])
        self.replayed.set()
        while not self._stopping.wait(10.0):
            _release_free_memory()

    # --- state ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Replayed, not draining, and the log neither nearly full nor refusing in the last retry_after_s."""
        full = self.wal.pending_bytes >= 0.9 * self.settings.wal_max_bytes or time.monotonic() - self._full_at < self.settings.retry_after_s
        return self.replayed.is_set() and not self.draining and not full

    @property
    def healthy(self) -> bool:
        if self.pool is not None:
            return self.pool.healthy
        return self._worker.is_alive() or self.draining

    @property
    def store_lag_bytes(self) -> int:
        return self.wal.pending_bytes + self.writer.spool.size()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Process everything logged so far, complete every open run and write it all (tests, drain)."""
        deadline = time.monotonic() + timeout_s
        while self.wal.pending and time.monotonic() < deadline:
            if self.pool is not None:
                if self.replayed.is_set():  # after every record handed to them so far
                    self.pool.flush(deadline)
            elif self.replayed.is_set() and self._processed == self._enqueued:  # every span is in the RunProcessor
                assert self.pipeline is not None
                self.pipeline.flush_once(deadline)
            time.sleep(0.01)
        return self.writer.flush(max(0.0, deadline - time.monotonic())) and not self.wal.pending

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Stop taking requests, finish what was acknowledged within the deadline, close.

        What does not finish in time stays in the log and is replayed on the next start.
        """
        timeout_s = self.settings.drain_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        self.draining = True
        if self.ownership.store_ids is not None:
            self.ownership.store_ids.close()
        self.wal.close()  # writes what is queued; durable records reach the processing queue (or the workers)
        self._queue.put(None)
        self._stopping.set()
        if self.pool is not None:
            done = self.pool.stop(deadline)
        else:
            self._worker.join(timeout=max(0.0, deadline - time.monotonic()))
            assert self.pipeline is not None
            done = self.pipeline.close(deadline)
        self._worker.join(timeout=max(0.0, deadline - time.monotonic()))
        done = self.writer.close(timeout_s=max(0.5, deadline - time.monotonic())) and done
        self.wal.close()
        if not done or self.wal.pending:
            _log.warning("shut down with %d log record(s) not yet written; they are replayed on the next start", self.wal.pending)
        return done and not self.wal.pending
