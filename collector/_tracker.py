"""The collector's tracker: downstream of the RunProcessor, it writes spans to ClickHouse in batches
and releases each write-ahead-log record once all its spans are in.

It also keeps the dedup window: a span still on its way to ClickHouse, or among the last
200,000 written, is not processed again (a client that resent a request whose acknowledgement
it lost costs nothing twice).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExportResult

from runmeter.collector._wal import WriteAheadLog
from runmeter.core import Thread, restore_thread_name
from runmeter.exporter import ClickHouseSpanExporter, StoredRows

__all__ = ["Key", "Tracker", "next_tick"]

_log = logging.getLogger(__name__)
Key = tuple[int, int]  # (trace id, span id)
_Key = Key
_SPAN_BITS = 64  # a span's key here: its trace id and span id in one int (trace_id << 64 | span_id)
_SPAN_MASK = (1 << _SPAN_BITS) - 1
_LOOK_S = 0.25  # how often the export thread looks for a lull in the input
_SETTLE_S = 0.05  # in a lull, what waits goes once no span came for this long


def next_tick(now: float, interval: float) -> float:
    """When the next batch is due after ``now`` (wall-clock seconds): a multiple of ``interval``, at
    least half an interval away. Every worker's Tracker keeps the same grid, so their batches reach
    the collector together and go in as one insert a table (``_workers._GroupedInserts``)."""
    return (math.floor((now + interval / 2) / interval) + 1) * interval


class Tracker(SpanProcessor):
    """Downstream of the RunProcessor: exports spans in batches and releases their log records.

    A batch goes when ``batch_size`` spans wait or at the next tick of ``interval_s`` on the wall
    clock (at least half an interval after the last; and at a flush): about one insert a second,
    as ClickHouse asks - every worker's at the same ticks, inserted together. Each insert has a
    fixed cost (an embedded store's ~12 files a part per table and view; tens of ms on the disk measured), and at
    4,096 spans or 0.2 s the workers' runs forwarded after each sweep went in as many small
    inserts: in ``collector_ingest.py``, three alternating pairs of runs, 32,768 / 1 s (with the
    collector's 1 s linger for run records) gave two workers 45-47k spans/s end to end against
    40-42k, one worker 29k against 27-28k, 39-40 µs of CPU a span against 43-46 with two. Spans
    are held until their run is written anyway (``quiet_s``): the second is not felt.

    Unless the input has paused (``lull()``: processing caught up, and no request came for half a
    second - ``Pipeline.lull``): nothing more would join the batch, so what waits goes once it
    stops growing (a sweep forwards many runs at once). After a burst the last runs are written
    at once, not a second or two later; a busy input keeps its batches.
    """

    def __init__(
        self,
        exporter: ClickHouseSpanExporter,
        wal: WriteAheadLog,
        written: Any,
        batch_size: int = 32_768,
        interval_s: float = 1.0,
        give_way: Callable[[], None] = lambda: None,
        recent: int = 200_000,
        duplicate: Any = None,
        lull: Callable[[], bool] = lambda: False,
    ) -> None:
        self._exporter = exporter
        self._duplicate = duplicate  # the counter of spans not processed again
        self._give_way = give_way
        self._wal = wal
        self._written = written
        self._batch_size = batch_size
        self._interval = interval_s
        self._lull = lull
        self._lock = threading.Lock()
        # span (its ids in one int: no tuple made and hashed a span) -> the log record(s) it came in
        self._keys: dict[int, int | list[int]] = {}
        self._left: dict[int, int] = {}  # log record -> spans not yet written
        self._recent: deque[int] = deque()  # the spans written last, oldest first (~90 bytes each)
        self._recent_set: set[int] = set()
        self._recent_max = recent
        self.duplicates = 0  # spans not processed again: a retried request's copies
        self._buf: list[ReadableSpan] = []
        self.stored = StoredRows()  # rows ClickHouse already holds (found when replaying)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._export_lock = threading.Lock()
        self._thread = Thread(target=self._loop, name="runmeter-collector-export", daemon=True)
        self._thread.start()

    def expect(self, seq: int, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
        """Register log record ``seq`` and its spans; returns the ones to process.

        A span already on its way to ClickHouse, or written a short while ago, is a client's
        retry of a request whose acknowledgement it never got: it is not processed again (its
        calls would be counted twice), and ``seq`` is released with the first copy.
        """
        fresh: list[ReadableSpan] = []
        waiting = dup = 0
        with self._lock:
            keys, recent_set = self._keys, self._recent_set
            for s in spans:
                ctx = s.context
                key = ctx.trace_id << _SPAN_BITS | ctx.span_id
                if key in recent_set:
                    dup += 1
                    continue
                prev = keys.get(key)
                if prev is None:
                    keys[key] = seq
                    fresh.append(s)
                else:
                    dup += 1
                    if prev == seq or (isinstance(prev, list) and seq in prev):
                        continue  # twice in one request
                    if isinstance(prev, list):
                        prev.append(seq)
                    else:
                        keys[key] = [prev, seq]
                waiting += 1
            if waiting:
                self._left[seq] = waiting
        if dup:
            self.duplicates += dup
            if self._duplicate is not None:
                self._duplicate.add(dup)
        if not waiting:
            self._wal.release(seq)
        return fresh

    def on_end(self, span: ReadableSpan) -> None:
        self.on_end_many((span,))

    def on_end_many(self, spans: Sequence[ReadableSpan]) -> None:
        """Spans the RunProcessor forwards (a trace's at once): buffered for the next export."""
        with self._lock:
            self._buf.extend(spans)
            full = len(self._buf) >= self._batch_size
        if full:
            self._wake.set()

    def _loop(self) -> None:
        due = self._next_tick()
        while not self._stop.is_set():
            now = time.time()
            if due - now > self._interval:  # the wall clock went back
                due = self._next_tick()
            full = self._wake.wait(max(0.0, min(due - now, _LOOK_S)))
            self._wake.clear()
            if not full and time.time() < due:
                if not self._buf or not self._lull():
                    continue
                self._settle()
            self._give_way()
            self.flush_once(deadline=None)
            restore_thread_name()  # an insert into chDB (one process, no workers) names this thread for its own stages
            due = self._next_tick()

    def _next_tick(self) -> float:
        return next_tick(time.time(), self._interval)

    def _settle(self) -> None:
        """Wait while spans keep coming (a sweep forwarding its runs), at most the interval."""
        end = time.monotonic() + self._interval
        n = len(self._buf)
        while not self._stop.wait(_SETTLE_S) and time.monotonic() < end:
            m = len(self._buf)
            if m == n or m >= self._batch_size:
                return
            n = m

    def flush_once(self, deadline: float | None) -> bool:
        """Export what is buffered; retries with backoff until it is in ClickHouse (or the deadline)."""
        with self._export_lock:
            with self._lock:
                batch, self._buf = self._buf, []
            if not batch:
                return True
            stored = self.stored or None
            delay = 0.1
            todo = batch
            while todo:
                try:
                    result = self._exporter.export_new(todo, stored)
                except Exception as exc:  # the exporter never raises; if it does, the spans wait
                    _log.error("export failed: %s", exc)
                    result = SpanExportResult.FAILURE
                if result is SpanExportResult.SUCCESS:
                    self._written.add(len(todo))
                    break
                if (deadline is not None and time.monotonic() + delay > deadline) or (deadline is None and self._stop.is_set()):
                    with self._lock:  # keep them for later: their log records stay unreleased
                        self._buf[:0] = batch
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            self._release(batch)
            return True

    def _release(self, batch: list[ReadableSpan]) -> None:
        done: list[int] = []
        written: dict[int, int] = {}  # log record -> its spans in this batch (a batch holds a few records' spans)
        with self._lock:
            stored = self.stored if self.stored else None  # rows found stored at a replay: mostly none
            keys, recent, recent_set = self._keys, self._recent, self._recent_set
            for s in batch:
                ctx = s.context
                key = ctx.trace_id << _SPAN_BITS | ctx.span_id
                if stored is not None:
                    stored.discard((ctx.trace_id, ctx.span_id))
                seqs = keys.pop(key, None)
                if seqs is None:
                    continue
                # A written span is kept among the last `recent` ones, to recognise a late retry.
                recent.append(key)
                recent_set.add(key)
                if isinstance(seqs, int):
                    written[seqs] = written.get(seqs, 0) + 1
                else:
                    for seq in seqs:
                        written[seq] = written.get(seq, 0) + 1
            for _ in range(len(recent) - self._recent_max):
                recent_set.discard(recent.popleft())
            for seq, n in written.items():
                left = self._left[seq] - n
                if left:
                    self._left[seq] = left
                else:
                    del self._left[seq]
                    done.append(seq)
        for seq in done:
            self._wal.release(seq)

    def waiting(self, seqs: Sequence[int]) -> dict[int, set[_Key]]:
        """The spans still waiting to be written, of those of these log records processing has
        taken (a record still queued for processing is left out)."""
        with self._lock:
            out: dict[int, set[_Key]] = {seq: set() for seq in seqs if seq in self._left}
            if out:
                for key, held in self._keys.items():
                    for seq in held if isinstance(held, list) else (held,):
                        if seq in out:
                            out[seq].add((key >> _SPAN_BITS, key & _SPAN_MASK))
        return out

    def carry(self, old: int, new: int, keys: set[_Key]) -> None:
        """Log record ``new`` holds again the spans of ``old`` that were waiting: from now on
        their insert releases ``new``; ``old`` is released (those written meanwhile released it)."""
        moved = 0
        release_old = False
        with self._lock:
            for trace_id, span_id in keys:
                key = trace_id << _SPAN_BITS | span_id
                held = self._keys.get(key)
                if held == old:
                    self._keys[key] = new
                elif isinstance(held, list) and old in held:
                    held[held.index(old)] = new
                else:
                    continue  # written since
                moved += 1
            if moved:
                self._left[new] = moved
            left = self._left.pop(old, 0) - moved
            if left > 0:
                self._left[old] = left
            else:
                release_old = True
        if release_old:
            self._wal.release(old)
        if not moved:
            self._wal.release(new)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.flush_once(time.monotonic() + timeout_millis / 1000)

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
