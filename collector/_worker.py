"""A collector worker process: ``python -m runmeter.collector._worker INDEX RECORDS_FD CALLS_FD``.

Started by :class:`~runmeter.collector._workers.WorkerPool` (see its module for the picture). It
reads its :class:`WorkerSpec` and then log records from the pipe, runs the collector's
:class:`~runmeter.collector._pipeline.Pipeline` over the spans of its shard of trace ids, and
calls the collector's process for what that process keeps: the write-ahead log (``LogClient``),
the embedded store and the spool (``WriterClient``), and ``/metrics`` (the relay meter).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from opentelemetry.metrics import CallbackOptions, NoOpMeter, NoOpMeterProvider

__all__ = ["GC_EVERY_S", "Collections", "LogClient", "WorkerSpec", "WriterClient", "main", "worker_gc", "worker_main"]

_log = logging.getLogger(__name__)


@dataclass
class WorkerSpec:
    """What a worker needs to build its pipeline (pickled into the spawned process)."""

    count: int
    store_url: str
    embedded: bool
    limits: Any
    schema: Any = None
    prices: Any = None
    run_limits: Any = None
    metric_labels: list[str] = field(default_factory=list)
    native_codec: str = "auto"
    log_format: str = "json"
    log_level: int = logging.INFO
    nice: int = 0  # the workers' nice value, absolute (WorkerPool: its process's own plus worker_nice)
    insert_interval_s: float = 1.0


# A worker holds each span until its run is written (quiet_s after it arrived, or until processing
# reaches the end of a backlog): ~10 tracked objects a span, all alive when the interpreter's
# automatic collections look at them. Those examined each one in generation 0 and again in 1 and
# found next to no garbage: over the benchmark's 491,520 spans, 1.35-1.5 s of a worker's CPU (2.7-3
# us a span) in 43-46 collections that found 73-76 objects. So a worker turns automatic collection
# off and collects everything every GC_EVERY_S, between records: ~150 ns a tracked object (~1 s
# with 600,000 spans held: 20,000 spans/s at quiet_s 30), and no reference cycle lives longer.
GC_EVERY_S = 60.0


def worker_gc() -> None:
    """A worker's garbage collection: what it has imported frozen, automatic collection off (the
    worker's loop runs :class:`Collections`)."""
    gc.freeze()
    gc.disable()


class Collections:
    """Full collections every ``every_s``, when :meth:`turn` is called past it (the worker's loop,
    between records)."""

    def __init__(self, every_s: float = GC_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._every, self._clock = every_s, clock
        self._next = clock() + every_s

    def turn(self) -> bool:
        """Collect if due; True when it did."""
        now = self._clock()
        if now < self._next:
            return False
        gc.collect()
        self._next = self._clock() + self._every  # from the end: a long collection is not run again at once
        return True


_SUMMED = frozenset({"counter", "up_down_counter"})  # instrument kinds whose measurements add up


class _Link:
    """The worker's end of the call pipe: one call at a time, answered in order.

    Measurements (the relayed metrics: a few per run, one per write) wait and go in one message,
    ahead of the next other message or when ``_MEASUREMENTS`` have gathered: a message each
    would cost both processes more than the measurement. A count of written spans is never
    behind the release of their log record, which follows it. Counts with the same attributes
    are summed here first: recording a measurement costs the collector's process ~10 us (the
    SDK's per-call attribute handling), and runs of one model and outcome all add 1 to one series.
    """

    _MEASUREMENTS = 256

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._measured: list[tuple[Any, float, dict[str, Any]]] = []
        self._counted: dict[tuple[Any, ...], int] = {}  # a count's key and attributes -> its index in _measured

    def call(self, *msg: Any, blobs: Sequence[bytes] = ()) -> Any:
        """Send ``msg`` and wait for its answer; ``blobs`` follow it as messages of their own,
        written from the objects (pickled in the message, megabytes of blocks would be copied
        on both sides)."""
        with self._lock:
            self._send_measured()
            self._conn.send(msg)
            for blob in blobs:
                self._conn.send_bytes(blob)
            status, value = self._conn.recv()
        if status == "err":
            raise RuntimeError(value)
        return value

    def tell(self, *msg: Any) -> None:
        with self._lock:
            self._send_measured()
            self._conn.send(msg)

    def measure(self, key: Any, amount: float, attributes: dict[str, Any]) -> None:
        with self._lock:
            if key[1] in _SUMMED:
                try:
                    series = (key, *attributes.items())
                    at = self._counted.get(series)
                except TypeError:  # an unhashable attribute value: sent as it is
                    series, at = None, None
                if at is not None:
                    k, total, attrs = self._measured[at]
                    self._measured[at] = (k, total + amount, attrs)
                    return
                if series is not None:
                    self._counted[series] = len(self._measured)
            self._measured.append((key, amount, attributes))
            if len(self._measured) >= self._MEASUREMENTS:
                self._send_measured()

    def _send_measured(self) -> None:
        if self._measured:
            measured, self._measured = self._measured, []
            self._counted.clear()
            self._conn.send(("metrics", measured))


class _RecordReader:
    """A record's request, read from the records pipe into one buffer kept for the next.

    ``Connection.recv_bytes`` reads a message in chunks into fresh memory, which a request's size
    maps apart (``map_large_blocks_apart``) and faults in page by page: 160-270 us of CPU, mostly
    the kernel's, for a 160 KB request, against ~50 read into a buffer already mapped (measured
    with two processes and a pipe, 2026-11-27) - ~3 us per span of a worker's CPU. The framing is
    ``multiprocessing.connection``'s (a 4-byte big-endian size, -1 then 8 bytes past 2 GiB), which
    the pipe's other messages keep using; the view returned is valid until the next read.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray(1 << 20)
        self._view: memoryview | None = None
        self._size = memoryview(bytearray(8))  # a message's size, as multiprocessing frames it

    def _read_into(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            n = os.readv(self._fd, [view[got:]])
            if n == 0:
                raise EOFError("the records pipe closed")
            got += n

    def read(self) -> memoryview:
        if self._view is not None:
            try:
                self._view.release()  # a caller that kept the last view finds it released, not overwritten
            except BufferError:  # a buffer taken from it is still held: the probe below finds the memory in use
                pass
            self._view = None
            try:  # a view made from it is still read from (the buffer cannot be resized): it keeps that memory
                self._buffer.append(0)
                del self._buffer[-1]
            except BufferError:
                self._buffer = bytearray(len(self._buffer))
        self._read_into(self._size[:4])
        size = struct.unpack("!i", self._size[:4])[0]
        if size == -1:
            self._read_into(self._size)
            size = struct.unpack("!Q", self._size)[0]
        if size > len(self._buffer):
            self._buffer = bytearray(size)
        self._view = memoryview(self._buffer)[:size]
        self._read_into(self._view)
        return self._view


class LogClient:
    """The write-ahead log as a worker sees it: the collector's process keeps it."""

    def __init__(self, link: _Link) -> None:
        self._link = link

    def release(self, seq: int) -> None:
        self._link.tell("release", seq)

    def read(self, seq: int) -> bytes:
        return bytes(self._link.call("read", seq))

    def pinning(self) -> list[int]:
        return list(self._link.call("pinning"))

    def append_carried(self, payload: bytes) -> int:
        return int(self._link.call("append", payload))


class _StoreName:
    def __init__(self, url: str) -> None:
        from runmeter.exporter import StoreURL

        self.url = StoreURL.parse(url)


class WriterClient:
    """The writer as a worker sees it: spans are encoded here, in Native blocks, and inserted by
    the collector's process (the embedded store) or straight into a ClickHouse server; runs go
    to the collector's spool."""

    def __init__(self, link: _Link, spec: WorkerSpec) -> None:
        self._link = link
        self._spec = spec
        self.store = _StoreName(spec.store_url)
        self._encoder: Any = None
        self._direct: Any = None  # a Store of our own, for a ClickHouse server
        self.lull: Callable[[], bool] = lambda: False  # the pipeline's (Pipeline.lull)

    def _blocks(self, batch: Any) -> dict[str, tuple[list[str], bytes]]:
        from runmeter.exporter import COLUMN_TYPES_SQL, NativeEncoder, column_types

        if self._encoder is None:
            self._encoder = NativeEncoder(column_types(self._link.call("query", COLUMN_TYPES_SQL, None)), self._spec.native_codec)
        return {
            table: (data["columns"], self._encoder.encode(table, data["columns"], data["rows"]))
            for table, data in batch.tables.items() if data["rows"]
        }

    def insert(self, batch: Any) -> None:
        blocks = self._blocks(batch)
        if self._spec.embedded:
            self._link.call("insert", batch.token, [(table, columns) for table, (columns, _) in blocks.items()],
                            blobs=[data for _, data in blocks.values()])
            return
        from runmeter.exporter import Store, insert_blocks

        if self._direct is None:
            self._direct = Store(self._spec.store_url, self._spec.schema)
        with self._direct.session() as client:
            insert_blocks(client, batch.token, blocks)

    def submit(self, batch: Any, *, drain: bool = True) -> bool:
        """Into the collector's spool; in a lull its writer inserts them without its linger."""
        return bool(self._link.call("submit", batch, self.lull()))

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._link.call("query", sql, parameters)]

    def flush(self, timeout_s: float = 30.0) -> bool:
        return bool(self._link.call("flush", timeout_s))

    def close(self, timeout_s: float = 10.0) -> bool:
        if self._direct is not None:
            self._direct.close()
        return True


class _Instrument:
    def __init__(self, link: _Link, meter: str, kind: str, name: str, unit: str, description: str, *advice: Any) -> None:
        self._link = link
        self._key = (meter, kind, name, unit, description, *advice)  # a histogram's: its bucket bounds

    def add(self, amount: float, attributes: Any = None, context: Any = None) -> None:
        self._link.measure(self._key, amount, dict(attributes or {}))

    record = add


class _RelayMeter(NoOpMeter):
    """A meter whose instruments are recorded in the collector's process (its ``/metrics``)."""

    def __init__(self, name: str, link: _Link, observed: list[tuple[Any, list[Callable[..., Any]]]]) -> None:
        super().__init__(name)
        self._link = link
        self._observed = observed

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Any:
        return _Instrument(self._link, self.name, "counter", name, unit, description)

    def create_up_down_counter(self, name: str, unit: str = "", description: str = "") -> Any:
        return _Instrument(self._link, self.name, "up_down_counter", name, unit, description)

    def create_histogram(
        self, name: str, unit: str = "", description: str = "", *, explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> Any:
        bounds = tuple(explicit_bucket_boundaries_advisory) if explicit_bucket_boundaries_advisory is not None else None
        return _Instrument(self._link, self.name, "histogram", name, unit, description, bounds)

    def create_observable_gauge(self, name: str, callbacks: Any = None, unit: str = "", description: str = "") -> Any:
        self._observed.append(((self.name, "gauge", name, unit, description), list(callbacks or [])))
        return super().create_observable_gauge(name, callbacks, unit, description)

    def create_observable_up_down_counter(self, name: str, callbacks: Any = None, unit: str = "", description: str = "") -> Any:
        self._observed.append(((self.name, "up_down_counter", name, unit, description), list(callbacks or [])))
        return super().create_observable_up_down_counter(name, callbacks, unit, description)


class _RelayMeterProvider(NoOpMeterProvider):
    def __init__(self, link: _Link) -> None:
        self._link = link
        self.observed: list[tuple[Any, list[Callable[..., Any]]]] = []

    def get_meter(self, name: str, version: str | None = None, schema_url: str | None = None, attributes: Any = None) -> Any:
        return _RelayMeter(name, self._link, self.observed)

    def report(self) -> None:
        """Send the observable instruments' values (the collector's process reads the latest)."""
        for key, callbacks in self.observed:
            total = 0.0
            for cb in callbacks:
                for obs in cb(CallbackOptions()):
                    total += obs.value
            self._link.tell("observed", key, total)


def _setup_logging(spec: WorkerSpec, index: int) -> None:
    from runmeter.collector._server import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if spec.log_format == "json" else logging.Formatter(f"%(asctime)s %(levelname)s worker {index} %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(spec.log_level)


def worker_main(index: int, spec: WorkerSpec, records: Connection, calls: Connection) -> None:
    """A worker process: records in, its shard processed, until told to stop or the pipe closes."""
    from runmeter.collector._pipeline import Pipeline, decode
    from runmeter.conventions import attributes as A
    from runmeter.exporter import without_dataframes

    # Ctrl-C in a terminal reaches the whole process group: the collector's process drains, and
    # stops its workers when they are done; they must not die first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # absolute: a worker started again is spawned by a thread already at this value
        os.setpriority(os.PRIO_PROCESS, 0, spec.nice)
    except OSError:  # a lower value than the one inherited needs privileges: keep what it has
        pass
    _setup_logging(spec, index)
    worker_gc()
    from runmeter.collector._service import map_large_blocks_apart

    map_large_blocks_apart()  # as the collector's process does: records are request-sized
    without_dataframes()  # as the collector's process does
    link = _Link(calls)
    meters = _RelayMeterProvider(link)
    collector_meter = meters.get_meter(__package__ or __name__.rpartition(".")[0])  # the collector's own meter
    pipeline = Pipeline(
        WriterClient(link, spec), LogClient(link), limits=spec.limits,
        written=collector_meter.create_counter(A.RUNMETER_COLLECTOR_SPANS_WRITTEN_METRIC, A.RUNMETER_COLLECTOR_SPANS_WRITTEN_UNIT),
        duplicate=collector_meter.create_counter(A.RUNMETER_COLLECTOR_SPANS_DUPLICATE_METRIC, A.RUNMETER_COLLECTOR_SPANS_DUPLICATE_UNIT),
        prices=spec.prices, run_limits=spec.run_limits, meter_provider=meters, metric_labels=spec.metric_labels,
        shard=(index, spec.count), interval_s=spec.insert_interval_s,
    )
    link.tell("ready", os.getpid())
    requests = _RecordReader(records.fileno())
    collections = Collections()
    carried = time.monotonic()
    draining = False
    lulled = False  # the collector was told this pause of the input began
    while True:
        try:
            ready = records.poll(0.25)
            msg = records.recv() if ready else None
            data = requests.read() if msg is not None and msg[0] == "rec" else b""  # a record's request follows it
        except (EOFError, OSError):  # the collector's process is gone: what it logged is replayed at its next start
            os._exit(0)
        if msg is None:
            if not lulled and pipeline.lull():  # the collector's writer need not linger for more run records
                lulled = True
                link.tell("lull")
        else:
            kind = msg[0]
            if kind == "rec":
                lulled = False
                _, seq, project, arrived = msg
                pipeline.arrived = arrived
                try:
                    pipeline.process_bytes(seq, data, project)
                except Exception:
                    _log.exception("record %d cannot be processed; it stays in the log", seq)
                if not records.poll():
                    pipeline.arrived = None
            elif kind == "replay":
                pipeline.replay([(seq, *decode(payload)) for seq, payload in msg[1]])
            elif kind == "flush":
                link.tell("flushed", msg[1], pipeline.flush_once(msg[2]))
            elif kind == "stop":
                draining = True
                done = pipeline.close(msg[1])
                meters.report()
                link.tell("stopped", done)
                return
        collections.turn()
        now = time.monotonic()
        if now - carried >= 1.0:  # at most once a second: it looks at every unreleased record
            carried = now
            if not draining:
                pipeline.carry_forward()
            meters.report()



def main(argv: list[str]) -> None:
    """``python -m runmeter.collector._worker INDEX RECORDS_FD CALLS_FD`` (started by WorkerPool)."""
    index, records_fd, calls_fd = (int(a) for a in argv)
    records = Connection(records_fd, writable=False)
    calls = Connection(calls_fd)
    spec = records.recv()
    worker_main(index, spec, records, calls)


if __name__ == "__main__":
    from runmeter.collector._worker import main as _main  # the module by its name, not as __main__

    _main(sys.argv[1:])
