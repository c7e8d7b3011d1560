"""Worker processes: the collector's processing on every core, sharded by trace id.

::

    collector process                                      worker k of n (a process)
    receivers ─ check ─► log (fsync) ─► acknowledge
                           │ durable record (bytes) ──────► parse; keep the spans whose trace
                           │ to every worker                id is shard k (_pipeline.shard_of)
                           │                                 │
                           │                                 ▼
                           │                               Pipeline: convert ─► Tracker ─►
                           │                               RunProcessor ─► rows ─► Native blocks
                           │  ◄── insert(blocks) ─────────────┘ (or straight into a ClickHouse
                           │  ◄── submit(runs) (spool)          server, from the worker)
                           │  ◄── release(record) once its spans of shard k are written
                           ▼
      a record is released when every worker has released it

All spans of a trace meet in one worker, so its runs assemble there as they do in one process.
The collector's process keeps the log, acknowledges, and - for the embedded store, which one
process owns - inserts the blocks the workers encoded; a ClickHouse server takes each worker's
inserts directly.

The log's guarantees hold across the cut. A record is released only when each worker that must
(all of them; for a record a worker carried forward, that worker alone) said its spans are
written. A worker that dies (killed, out of memory) is started again and given every record it
had not released, as a replay: the spans of those traces already in ClickHouse are looked up and
not written again, so each acknowledged span is stored once. If the collector's process dies,
its workers see their pipe close and exit; the next start replays the log as before.

Wire: each worker is ``python -m runmeter.collector._workers`` (a fresh interpreter: nothing of
the host program's ``__main__`` is imported again, as ``multiprocessing``'s spawn would), with
``multiprocessing.connection`` framing over a pipe and a socket pair it inherits. Records go down
the pipe; a worker's calls (insert, submit, query, read, append, release, metrics) come up the
socket, answered in order by one thread per worker.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, NoOpMeter, NoOpMeterProvider, Observation

__all__ = ["WorkerPool", "WorkerSpec"]

_log = logging.getLogger(__name__)
_TYPES_SQL = (
    "SELECT table, name, type FROM system.columns "
    "WHERE database = currentDatabase() AND table IN ('otel_traces', 'runmeter_calls')"
)


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
    nice: int = 0


# --- in the worker ----------------------------------------------------------------------------


class _Link:
    """The worker's end of the call pipe: one call at a time, answered in order."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def call(self, *msg: Any) -> Any:
        with self._lock:
            self._conn.send(msg)
            status, value = self._conn.recv()
        if status == "err":
            raise RuntimeError(value)
        return value

    def tell(self, *msg: Any) -> None:
        with self._lock:
            self._conn.send(msg)


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

    def _blocks(self, batch: Any) -> dict[str, tuple[list[str], bytes]]:
        from runmeter.exporter import NativeEncoder, column_types

        if self._encoder is None:
            self._encoder = NativeEncoder(column_types(self._link.call("query", _TYPES_SQL, None)), self._spec.native_codec)
        return {
            table: (data["columns"], self._encoder.encode(table, data["columns"], data["rows"]))
            for table, data in batch.tables.items() if data["rows"]
        }

    def insert(self, batch: Any) -> None:
        blocks = self._blocks(batch)
        if self._spec.embedded:
            self._link.call("insert", batch.token, blocks)
            return
        from runmeter.exporter import Store, insert_blocks

        if self._direct is None:
            self._direct = Store(self._spec.store_url, self._spec.schema)
        with self._direct.session() as client:
            insert_blocks(client, batch.token, blocks)

    def submit(self, batch: Any, *, drain: bool = True) -> bool:
        return bool(self._link.call("submit", batch))

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._link.call("query", sql, parameters)]

    def flush(self, timeout_s: float = 30.0) -> bool:
        return bool(self._link.call("flush", timeout_s))

    def close(self, timeout_s: float = 10.0) -> bool:
        if self._direct is not None:
            self._direct.close()
        return True


class _Instrument:
    def __init__(self, link: _Link, meter: str, kind: str, name: str, unit: str, description: str) -> None:
        self._link = link
        self._key = (meter, kind, name, unit, description)

    def add(self, amount: float, attributes: Any = None, context: Any = None) -> None:
        self._link.tell("metric", self._key, amount, dict(attributes or {}))

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

    def create_histogram(self, name: str, unit: str = "", description: str = "", **kw: Any) -> Any:
        return _Instrument(self._link, self.name, "histogram", name, unit, description)

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
    from runmeter.collector._convert import parse_request
    from runmeter.collector._pipeline import Pipeline, decode
    from runmeter.conventions import attributes as A

    # Ctrl-C in a terminal reaches the whole process group: the collector's process drains, and
    # stops its workers when they are done; they must not die first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if spec.nice:
        os.nice(spec.nice)
    _setup_logging(spec, index)
    import gc

    gc.freeze()  # as the collector's process does (runmeter/cli.py): fewer, cheaper GC passes
    gc.set_threshold(50_000, 20, 100)
    link = _Link(calls)
    meters = _RelayMeterProvider(link)
    collector_meter = meters.get_meter(__package__ or __name__.rpartition(".")[0])  # the collector's own meter
    pipeline = Pipeline(
        WriterClient(link, spec), LogClient(link), limits=spec.limits,
        written=collector_meter.create_counter(A.RUNMETER_COLLECTOR_SPANS_WRITTEN_METRIC, A.RUNMETER_COLLECTOR_SPANS_WRITTEN_UNIT),
        duplicate=collector_meter.create_counter(A.RUNMETER_COLLECTOR_SPANS_DUPLICATE_METRIC, A.RUNMETER_COLLECTOR_SPANS_DUPLICATE_UNIT),
        prices=spec.prices, run_limits=spec.run_limits, meter_provider=meters, metric_labels=spec.metric_labels,
        shard=(index, spec.count),
    )
    link.tell("ready", os.getpid())
    carried = time.monotonic()
    draining = False
    while True:
        try:
            ready = records.poll(0.5)
            msg = records.recv() if ready else None
        except (EOFError, OSError):  # the collector's process is gone: what it logged is replayed at its next start
            os._exit(0)
        if msg is not None:
            kind = msg[0]
            if kind == "rec":
                _, seq, payload, arrived = msg
                pipeline.arrived = arrived
                try:
                    project, data = decode(payload)
                    pipeline.process(seq, parse_request(data), project)
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
        now = time.monotonic()
        if now - carried >= 1.0:  # at most once a second: it looks at every unreleased record
            carried = now
            if not draining:
                pipeline.carry_forward()
            meters.report()


# --- in the collector's process ---------------------------------------------------------------


class _Relay:
    """The workers' metrics, recorded on the collector's meter provider (``/metrics``)."""

    def __init__(self, provider: MeterProvider | None, known: dict[tuple[str, str], Any]) -> None:
        self._provider = provider or metrics.get_meter_provider()
        self._instruments: dict[tuple[str, str], Any] = dict(known)
        self._observed: dict[tuple[Any, ...], dict[int, float]] = {}
        self._lock = threading.Lock()

    def record(self, key: tuple[str, str, str, str, str], amount: float, attributes: dict[str, Any]) -> None:
        meter, kind, name, unit, description = key
        inst: Any = self._instruments.get((meter, name))
        if inst is None:
            with self._lock:
                inst = self._instruments.get((meter, name))
                if inst is None:
                    m = self._provider.get_meter(meter)
                    create = {"counter": m.create_counter, "up_down_counter": m.create_up_down_counter,
                              "histogram": m.create_histogram}[kind]
                    inst = self._instruments[(meter, name)] = create(name, unit=unit, description=description)
        (inst.record if kind == "histogram" else inst.add)(amount, attributes)

    def observed(self, worker: int, key: tuple[str, str, str, str, str], value: float) -> None:
        with self._lock:
            values = self._observed.get(key)
            if values is None:
                values = self._observed[key] = {}
                meter, kind, name, unit, description = key
                m = self._provider.get_meter(meter)
                # Over workers: a count adds up (open runs), an age is the largest (the oldest open run).
                combine = max if kind == "gauge" else sum

                def callback(_: CallbackOptions, values: dict[int, float] = values, combine: Any = combine) -> list[Observation]:
                    return [Observation(combine(values.values()) if values else 0)]

                create = m.create_observable_gauge if kind == "gauge" else m.create_observable_up_down_counter
                create(name, [callback], unit=unit, description=description)
            values[worker] = value


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Any = None
        self.records: Connection | None = None
        self.calls: Connection | None = None
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.send_lock = threading.Lock()
        self.held = 0  # bytes of record payloads waiting in the queue
        self.started = 0.0
        self.crashes = 0
        self.ready = threading.Event()
        self.flushed: dict[int, bool] = {}
        self.flush_cond = threading.Condition()
        self.stopped: bool | None = None
        self.generation = 0


class WorkerPool:
    """Spawns the workers and keeps the books: which worker still owes which log record."""

    def __init__(
        self, spec: WorkerSpec, wal: Any, writer: Any, relay: _Relay, *, held_bytes: int,
    ) -> None:
        self.spec = spec
        self.wal = wal
        self.writer = writer
        self.relay = relay
        self._held_max = max(1, held_bytes // spec.count)
        self._lock = threading.Lock()
        self._owed: dict[int, set[int]] = {}  # log record -> workers that have not released it
        self._all = frozenset(range(spec.count))
        self._stopping = False
        self._flush_token = 0
        self.workers = [_Worker(i) for i in range(spec.count)]
        for w in self.workers:
            self._start(w, replay=[])

    # --- books ---------------------------------------------------------------------------------

    def _released(self, worker: int, seq: int) -> None:
        with self._lock:
            owed = self._owed.get(seq)
            if owed is None:
                return
            owed.discard(worker)
            done = not owed
            if done:
                del self._owed[seq]
        if done:
            self.wal.release(seq)

    # --- records out ---------------------------------------------------------------------------

    def dispatch(self, seq: int, payload: bytes, arrived: float) -> None:
        """Hand a durable record to every worker (never blocks: each has a queue and a thread)."""
        with self._lock:
            self._owed[seq] = set(self._all)
            for w in self.workers:
                # Past the budget only the sequence number waits, and the record is read back
                # from the log when its turn comes: a backlog costs disk, not memory.
                keep = w.held + len(payload) <= self._held_max
                if keep:
                    w.held += len(payload)
                w.queue.put(("rec", seq, payload if keep else None, arrived))

    def replay(self, seqs: Sequence[int]) -> None:
        """Records left in the log by the last run: every worker takes its shard of them."""
        with self._lock:
            for seq in seqs:
                self._owed[seq] = set(self._all)
            for w in self.workers:
                w.queue.put(("replay", list(seqs)))

    def _send_loop(self, w: _Worker, generation: int) -> None:
        while True:
            item = w.queue.get()
            if item is None or w.generation != generation:
                return
            try:
                if item[0] == "rec":
                    _, seq, payload, arrived = item
                    if payload is None:
                        payload = self.wal.read(seq)
                    else:
                        with self._lock:
                            w.held -= len(payload)
                    msg: Any = ("rec", seq, payload, arrived)
                elif item[0] == "replay":
                    msg = ("replay", [(seq, self.wal.read(seq)) for seq in item[1]])
                else:
                    msg = item
                with w.send_lock:
                    assert w.records is not None
                    w.records.send(msg)
            except (OSError, EOFError, ValueError):
                return  # the worker is gone: its serve thread starts it again with what it owes
            except Exception:
                _log.exception("cannot hand %s to worker %d", item[:2], w.index)

    # --- calls in ------------------------------------------------------------------------------

    def _serve(self, w: _Worker, generation: int) -> None:
        conn = w.calls
        assert conn is not None
        # This thread does the workers' inserts into an embedded store: at the workers' priority
        # too (Linux sets nice per thread), so acknowledging requests comes first here as well.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.spec.nice)
        except (AttributeError, OSError):
            pass
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            kind = msg[0]
            try:
                if kind == "release":
                    self._released(w.index, msg[1])
                    continue
                if kind == "metric":
                    self.relay.record(*msg[1:])
                    continue
                if kind == "observed":
                    self.relay.observed(w.index, msg[1], msg[2])
                    continue
                if kind == "ready":
                    w.ready.set()
                    continue
                if kind == "flushed":
                    with w.flush_cond:
                        w.flushed[msg[1]] = msg[2]
                        w.flush_cond.notify_all()
                    continue
                if kind == "stopped":
                    with w.flush_cond:
                        w.stopped = bool(msg[1])
                        w.flush_cond.notify_all()
                    continue
                reply = self._answer(w, kind, msg[1:])
                conn.send(("ok", reply))
            except (EOFError, OSError):
                break
            except Exception as exc:
                try:
                    conn.send(("err", str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__))
                except (EOFError, OSError):
                    break
        if w.generation != generation:
            return
        with w.flush_cond:
            w.flush_cond.notify_all()
        if self._stopping:
            return
        code = w.process.wait() if w.process is not None else None
        _log.error("worker %d (pid %s) exited (%s); starting it again with the log records it had not written",
                   w.index, getattr(w.process, "pid", "?"), code)
        self._restart(w)

    def _answer(self, w: _Worker, kind: str, args: tuple[Any, ...]) -> Any:
        if kind == "insert":
            token, blocks = args
            self.writer.insert_encoded(token, blocks)
            return None
        if kind == "submit":
            return self.writer.submit(args[0])
        if kind == "query":
            return self.writer.query(args[0], args[1])
        if kind == "flush":
            return self.writer.flush(args[0])
        if kind == "read":
            return self.wal.read(args[0])
        if kind == "pinning":
            return self.wal.pinning()
        if kind == "append":
            # A worker's waiting spans, logged again: only that worker owes the new record.
            seq = self.wal.append(args[0], None).result()
            with self._lock:
                self._owed[seq] = {w.index}
            return seq
        raise ValueError(f"unknown call {kind!r}")

    # --- lifecycle -----------------------------------------------------------------------------

    def _start(self, w: _Worker, replay: list[int]) -> None:
        records_in, records_out = os.pipe()
        calls_here, calls_worker = socket.socketpair()
        w.generation += 1
        w.queue = queue.SimpleQueue()
        w.held = 0
        w.ready.clear()
        w.stopped = None
        if replay:
            w.queue.put(("replay", replay))
        # The interpreter and import path of this process (as multiprocessing's spawn passes them).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if isinstance(p, str) and p)}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", __name__, str(w.index), str(records_in), str(calls_worker.fileno())],
                pass_fds=(records_in, calls_worker.fileno()), env=env, stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(records_in)
            calls_worker.close()
        w.process = proc
        w.records = Connection(records_out, readable=False)
        w.calls = Connection(calls_here.detach())
        w.records.send(self.spec)
        w.started = time.monotonic()
        threading.Thread(target=self._serve, args=(w, w.generation), name=f"runmeter-worker-{w.index}-calls", daemon=True).start()
        threading.Thread(target=self._send_loop, args=(w, w.generation), name=f"runmeter-worker-{w.index}-records", daemon=True).start()

    def _restart(self, w: _Worker) -> None:
        if time.monotonic() - w.started > 60:
            w.crashes = 0
        w.crashes += 1
        time.sleep(min(30.0, 0.25 * 2 ** (w.crashes - 1)))  # a record that kills its worker: back off
        with self._lock:
            if self._stopping:
                return
            w.queue.put(None)  # the old sender thread ends
            owed = sorted(seq for seq, workers in self._owed.items() if w.index in workers)
            self._start(w, replay=owed)

    @property
    def healthy(self) -> bool:
        """False when a worker keeps dying (five times, each within a minute of its start): a record
        or the host kills it, and the collector makes no progress - better restarted and looked at."""
        return all(w.crashes < 5 for w in self.workers) or self._stopping

    def wait_ready(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Every worker has started (False after the timeout, or once ``stop`` is set)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            if all(w.ready.wait(0.1) for w in self.workers):
                return True
        return False

    def flush(self, deadline: float) -> bool:
        """Every worker completes its open runs and writes what it holds (after the records handed to it)."""
        with self._lock:
            self._flush_token += 1
            token = self._flush_token
        for w in self.workers:
            w.queue.put(("flush", token, deadline))
        ok = True
        for w in self.workers:
            with w.flush_cond:
                while token not in w.flushed and time.monotonic() < deadline:
                    w.flush_cond.wait(max(0.0, min(0.5, deadline - time.monotonic())))
                ok = w.flushed.pop(token, False) and ok
        return ok

    def stop(self, deadline: float) -> bool:
        """Workers finish what they were handed (within the deadline), write, and exit."""
        self._stopping = True  # a worker that exits now is not started again
        for w in self.workers:
            w.queue.put(("stop", deadline))
        ok = True
        for w in self.workers:
            with w.flush_cond:
                while w.stopped is None and time.monotonic() < deadline and w.process.poll() is None:
                    w.flush_cond.wait(max(0.0, min(0.5, deadline - time.monotonic())))
            ok = bool(w.stopped) and ok
        for w in self.workers:
            try:
                w.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait(5)
            w.queue.put(None)
            for conn in (w.records, w.calls):
                if conn is not None:
                    conn.close()
        return ok


def main(argv: list[str]) -> None:
    """``python -m runmeter.collector._workers INDEX RECORDS_FD CALLS_FD`` (started by WorkerPool)."""
    index, records_fd, calls_fd = (int(a) for a in argv)
    records = Connection(records_fd, writable=False)
    calls = Connection(calls_fd)
    spec = records.recv()
    worker_main(index, spec, records, calls)


if __name__ == "__main__":
    from runmeter.collector._workers import main as _main  # the module by its name, not as __main__

    _main(sys.argv[1:])
