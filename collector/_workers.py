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

Wire: each worker is ``python -m runmeter.collector._worker`` (``_worker.py``) (a fresh interpreter: nothing of
the host program's ``__main__`` is imported again, as ``multiprocessing``'s spawn would), with
``multiprocessing.connection`` framing over a pipe and a socket pair it inherits. Records go down
the pipe (each a small message, then the request's bytes as a message of their own); a worker's
calls (insert, submit, query, read, append, release, metrics; lull when its input has paused) come
up the socket, answered in order by one thread per worker (an insert's Native blocks follow it, a
message each).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from runmeter.collector import _worker
from runmeter.collector._pipeline import decode
from runmeter.collector._worker import WorkerSpec
from runmeter.core import Thread, restore_thread_name

__all__ = ["WorkerPool", "WorkerSpec"]

_log = logging.getLogger(__name__)

class _Relay:
    """The workers' metrics, recorded on the collector's meter provider (``/metrics``)."""

    def __init__(self, provider: MeterProvider | None, known: dict[tuple[str, str], Any]) -> None:
        self._provider = provider or metrics.get_meter_provider()
        self._instruments: dict[tuple[str, str], Any] = dict(known)
        self._observed: dict[tuple[Any, ...], dict[int, float]] = {}
        self._lock = threading.Lock()

    def record(self, key: tuple[Any, ...], amount: float, attributes: dict[str, Any]) -> None:
        """``key``: the instrument's meter, kind, name, unit and description; a histogram's bucket
        bounds (or None) follow."""
        meter, kind, name, unit, description, *advice = key
        inst: Any = self._instruments.get((meter, name))
        if inst is None:
            with self._lock:
                inst = self._instruments.get((meter, name))
                if inst is None:
                    m = self._provider.get_meter(meter)
                    if kind == "histogram":
                        bounds = advice[0] if advice else None
                        inst = m.create_histogram(name, unit=unit, description=description, explicit_bucket_boundaries_advisory=bounds)
                    else:
                        create = m.create_counter if kind == "counter" else m.create_up_down_counter
                        inst = create(name, unit=unit, description=description)
                    self._instruments[(meter, name)] = inst
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


class _Insert:
    __slots__ = ("blocks", "done", "error", "token")

    def __init__(self, token: str, blocks: dict[str, tuple[list[str], bytes]]) -> None:
        self.token, self.blocks = token, blocks
        self.done = False
        self.error: BaseException | None = None


class _GroupedInserts:
    """The workers' inserts into an embedded store, taken together: one insert a table for the
    blocks the workers flush at the same tick (their Trackers flush on a shared wall-clock grid).

    Each worker's blocks as an insert of their own gave the store a part per worker per table a
    second under a steady input - N parts a second on a host with N workers, where ClickHouse asks
    for about one insert a second - and each part is merged again later. Native blocks one after
    another are one input, which ClickHouse squashes into one part: two workers at ~2k spans a
    second made 7 inserts of both workers' blocks in 7 s, not 14 (2026-11-27). A backlog's
    batches go when full, at no shared moment, and mostly go alone.

    The first insert to come leads: it waits up to ``wait_s`` for the other workers' (each worker
    has at most one under way), then inserts them together, table by table; inserts that come
    while it does wait for the next leader. A worker's insert succeeds or fails on its own:

    * a group's insert that fails is tried once more under the same deduplication token (a
      group stored before its error - a materialized view failing after the table's part was
      written - is then deduplicated, not stored twice); failing again, it is most likely one
      worker's blocks, and each worker's go alone under its own token, so one worker's bad batch
      holds up no other;
    * a table a token's blocks were stored in is remembered: the worker's retry after a failure
      part way (the same rows, the same token) skips it, as the group's token is not the retry's.
    """

    def __init__(self, writer: Any, expected: Callable[[], int], wait_s: float = 0.05, remember: int = 4096) -> None:
        self._writer = writer
        self._expected = expected
        self._wait_s = wait_s
        self._cond = threading.Condition()
        self._pending: list[_Insert] = []
        self._leading = False
        self._stored: OrderedDict[str, set[str]] = OrderedDict()  # a token -> the tables its blocks are in
        self._remember = remember

    def insert(self, token: str, blocks: dict[str, tuple[list[str], bytes]]) -> None:
        me = _Insert(token, blocks)
        with self._cond:
            self._pending.append(me)
            self._cond.notify_all()
            while self._leading and not me.done:
                self._cond.wait()
            if not me.done:
                self._leading = True
                end = time.monotonic() + self._wait_s
                while len(self._pending) < self._expected() and (left := end - time.monotonic()) > 0:
                    self._cond.wait(left)
                group, self._pending = self._pending, []
        if not me.done:
            try:
                self._insert(group)
            except BaseException as exc:
                for g in group:
                    g.error = g.error or exc
            with self._cond:
                for g in group:
                    g.done = True
                self._leading = False
                self._cond.notify_all()
        if me.error is not None:
            raise me.error

    def _insert(self, group: list[_Insert]) -> None:
        """Each table once for the group; a member that fails keeps its error (``_Insert.error``)
        and is left out of the tables after."""
        tables = list(dict.fromkeys(table for g in group for table in g.blocks))
        for table in tables:
            by_columns: dict[tuple[str, ...], list[_Insert]] = {}
            for g in group:
                columns, data = g.blocks.get(table, ((), b""))
                if g.error is None and data and table not in self._stored.get(g.token, ()):
                    by_columns.setdefault(tuple(columns), []).append(g)
            for members in by_columns.values():
                self._insert_table(table, members)

    def _insert_table(self, table: str, members: list[_Insert]) -> None:
        names = list(members[0].blocks[table][0])
        if len(members) == 1:
            m = members[0]
            try:
                self._writer.insert_encoded(m.token, {table: (names, m.blocks[table][1])})
            except Exception as exc:
                m.error = exc
                return
            self._mark(members, table)
            return
        token = hashlib.blake2b("|".join(sorted(m.token for m in members)).encode(), digest_size=16).hexdigest()
        data = b"".join(m.blocks[table][1] for m in members)
        for _ in range(2):  # the second time under the same token: a group stored before its error is deduplicated
            try:
                self._writer.insert_encoded(token, {table: (names, data)})
            except Exception:
                continue
            self._mark(members, table)
            return
        for m in members:  # each alone: one worker's bad blocks fail only its insert
            self._insert_table(table, [m])

    def _mark(self, members: list[_Insert], table: str) -> None:
        with self._cond:
            for m in members:
                self._stored.setdefault(m.token, set()).add(table)
                self._stored.move_to_end(m.token)
            while len(self._stored) > self._remember:
                self._stored.popitem(last=False)


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
        self.serving = False  # its calls are still being read (the last may come after it exited)
        self.generation = 0


def _widen(pipe: int) -> None:
    """A records pipe of 1 MiB rather than Linux's 64 KiB: a request crosses in one write and one
    read, not a handful with a wake-up between each (a 160 KB request: ~55 us of the worker's time
    against 130-165, measured with two processes). Best effort: elsewhere, or past
    ``/proc/sys/fs/pipe-max-size``, the pipe keeps its size."""
    try:
        import fcntl

        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):
        pass


class WorkerPool:
    """Spawns the workers and keeps the books: which worker still owes which log record."""

    def __init__(
        self, spec: WorkerSpec, wal: Any, writer: Any, relay: _Relay, *, held_bytes: int,
    ) -> None:
        # The workers' priority, and that of the threads doing their inserts here: below this
        # process's own by spec.nice, whichever thread spawns a worker (a restart: an insert thread).
        self.spec = dataclasses.replace(spec, nice=min(19, os.getpriority(os.PRIO_PROCESS, 0) + spec.nice))
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
        self._inserts = _GroupedInserts(writer, expected=lambda: sum(1 for w in self.workers if w.ready.is_set()))
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

    def dispatch(self, seq: int, project: str | None, data: bytes, arrived: float) -> None:
        """Hand a durable record (the request's bytes and its sender's project) to every worker
        (never blocks: each has a queue and a thread)."""
        with self._lock:
            self._owed[seq] = set(self._all)
            for w in self.workers:
                # Past the budget only the sequence number waits, and the record is read back
                # from the log when its turn comes: a backlog costs disk, not memory.
                keep = w.held + len(data) <= self._held_max
                if keep:
                    w.held += len(data)
                w.queue.put(("rec", seq, project, data if keep else None, arrived))

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
                    _, seq, project, data, arrived = item
                    if data is None:
                        project, data = decode(self.wal.read(seq))
                    else:
                        with self._lock:
                            w.held -= len(data)
                    # The request's bytes follow as a message of their own, written from the
                    # object itself: pickled in the tuple they would be copied, every request.
                    with w.send_lock:
                        assert w.records is not None
                        w.records.send(("rec", seq, project, arrived))
                        w.records.send_bytes(data)
                    continue
                msg: Any
                if item[0] == "replay":
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
        # chDB's own threads, which do much of an insert's work, keep the nice value they were
        # made with (0: ClickHouse's os_thread_priority would need CAP_SYS_NICE); giving them the
        # workers' moved nothing measurable in benchmarks/collector_ingest.py (2026-11-27).
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.spec.nice)
        except (AttributeError, OSError):
            pass
        while True:
            try:
                msg = conn.recv()
                if msg[0] == "insert":  # its Native blocks follow, a message each (_worker._Link.call)
                    msg = ("insert", msg[1], {table: (columns, conn.recv_bytes()) for table, columns in msg[2]})
            except (EOFError, OSError):
                break
            kind = msg[0]
            call = False  # a message the worker waits an answer for (_Link.call): the ones _answer takes
            try:
                if kind == "release":
                    self._released(w.index, msg[1])
                    continue
                if kind == "metrics":
                    for key, amount, attributes in msg[1]:
                        self.relay.record(key, amount, attributes)
                    continue
                if kind == "observed":
                    self.relay.observed(w.index, msg[1], msg[2])
                    continue
                if kind == "ready":
                    w.ready.set()
                    continue
                if kind == "lull":  # the worker's input paused: its run records need not wait for more
                    self.writer.hurry()
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
                call = True
                try:
                    answer: tuple[str, Any] = ("ok", self._answer(w, kind, msg[1:]))
                finally:
                    restore_thread_name()  # an insert into chDB names this thread for its own stages
            except Exception as exc:  # an OSError too (a record that does not read back): the call failed, not the pipe
                if not call:  # a message the worker waits no answer for (tell): an answer would be taken for its next call's
                    _log.error("worker %d: cannot take its %r message: %s", w.index, kind, exc)
                    continue
                answer = ("err", str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__)
            try:
                conn.send(answer)
            except (EOFError, OSError):
                break
        if w.generation != generation:
            return
        with w.flush_cond:
            w.serving = False
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
            self._inserts.insert(token, blocks)
            return None
        if kind == "submit":  # with whether the worker's input has paused: then without the writer's linger
            return self.writer.submit(args[0], hurry=bool(args[1]) if len(args) > 1 else None)
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
        _widen(records_out)
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
                [sys.executable, "-m", _worker.__name__, str(w.index), str(records_in), str(calls_worker.fileno())],
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
        w.serving = True
        Thread(target=self._serve, args=(w, w.generation), name=f"runmeter-worker-{w.index}-calls", daemon=True).start()
        Thread(target=self._send_loop, args=(w, w.generation), name=f"runmeter-worker-{w.index}-records", daemon=True).start()

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
        with self._lock:  # a restart under way (_restart) either finishes first, its worker told to stop too, or does not start
            self._stopping = True  # a worker that exits now is not started again
            for w in self.workers:
                w.queue.put(("stop", deadline))
        ok = True
        for w in self.workers:
            with w.flush_cond:
                # A worker that has exited may still have messages on their way ("stopped" among
                # them, and its releases): the reading thread finishes them before it is judged.
                while w.stopped is None and time.monotonic() < deadline and (w.process.poll() is None or w.serving):
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
