"""The writer: spool first, then insert idempotently, retry in the background.

``submit(batch)`` writes the batch to the spool (durable: this is the moment it
is acknowledged) and then tries to drain the spool into ClickHouse. A batch
that cannot be inserted stays in the spool and is retried with jittered
exponential backoff in a background thread, on the next ``submit``, on
``flush()``, and by the next process that opens the same spool. Every insert
carries the batch's ``insert_deduplication_token``, so a batch inserted twice
(a retry after a lost answer, a crash between insert and removal) counts once.

Embedded chDB: the drain holds the store's lock only while it inserts, so
several agent processes and a report can share one store.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.exceptions import ProgrammingError

from runmeter.exporter._inserts import insert_batch, insert_blocks
from runmeter.exporter._spool import SEGMENT_SUFFIX, Batch, Spool, SpoolFull
from runmeter.exporter._store import Store
from runmeter.core import Thread, internal_error, restore_thread_name

__all__ = ["Writer"]

_log = logging.getLogger(__name__)


MAX_SEGMENT_ROWS = 100_000


def _mergeable(a: Batch, b: Batch) -> bool:
    return all(name not in a.tables or a.tables[name]["columns"] == data["columns"] for name, data in b.tables.items())


_MIN_HOLD_S = 0.5
_LOOK_S = 0.25  # while lingering, how often the writer asks ``lull``
_HANDOVER_S = 1.0


_writers: weakref.WeakSet[Writer] = weakref.WeakSet()


def _before_fork() -> None:
    for w in list(_writers):
        w._before_fork()


def _after_fork_in_parent() -> None:
    for w in list(_writers):
        w._after_fork(child=False)


def _after_fork_in_child() -> None:
    for w in list(_writers):
        w._after_fork(child=True)


# A forked child (multiprocessing, a process pool) must not touch the store through the parent's
# session: an embedded chDB engine does not survive a fork, and the parent's lock on the store is
# shared with the child. The parent gives its session back before the fork; the child's writer only
# spools (a file per batch, durable), and the parent - or the next runmeter process - inserts it.
os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


class Writer:
    def __init__(
        self,
        store: Store,
        spool: Spool,
        *,
        background: bool = True,
        max_backoff_s: float = 30.0,
        hold_s: float = 2.0,
        max_hold_s: float = 5.0,
        linger_s: float = 0.2,
    ) -> None:
        self.store = store
        # The background thread waits this long after a batch is spooled, so the batches that
        # follow go in the same insert: ClickHouse (chDB most of all) pays a fixed cost per insert.
        self.linger_s = linger_s
        self._submitted = threading.Event()
        # The linger ends early once nothing more is coming to join the insert (a collector's input
        # has paused, after a burst): ``hurry()``, a batch submitted with hurry, or ``lull()``.
        self.lull: Callable[[], bool] | None = None
        self._hurry = threading.Event()
        self._lingering = False  # the background thread is in _linger (see hurry)
        # An embedded store's session (and its lock) is kept across inserts - opening chDB costs
        # 50-100 ms - and given up once it has been idle for hold_s, or as soon as another session
        # waits for the store (Store.contended), or after max_hold_s in any case (another agent's
        # background drain does not wait, it tries again later: it gets its turn then).
        self.hold_s = hold_s
        self.max_hold_s = max(hold_s, max_hold_s)
        self._held: list[Any] | None = None  # [session, client, opened at, last used at]
        # Queries run on a client of their own beside the held session's (Store.beside), so a
        # query does not wait for an insert under way; closed, under _read_lock, before the session.
        self._reader: Any = None
        self._read_lock = threading.Lock()
        self._reads = False  # queries came: each new session opens its reader at once, not at the next query
        self.sessions_opened = 0
        self._mine: dict[str, Batch] = {}
        self.spool = spool
        self.dropped_rows = 0
        self.inserted_batches = 0
        self.failures = 0
        self._max_backoff = max_backoff_s
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._forked = False  # in a forked child: spool only (see _after_fork)
        self._refusing = False  # the spool refuses batches (full): said once until it takes one again
        self._down = False  # the store cannot be written: said once until a write succeeds
        if background:
            self._thread = Thread(target=self._loop, name="runmeter-writer", daemon=True)
            self._thread.start()
        _writers.add(self)

    def _before_fork(self) -> None:
        self._drain_lock.acquire()  # no insert is half done in the copy the child gets
        try:
            self._release()
        except Exception as exc:
            internal_error("writer.fork", exc)

    def _after_fork(self, child: bool) -> None:
        if not child:
            self._drain_lock.release()
            return
        self._drain_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._held = None
        self._reader = None
        self._reads = False
        self._forked = True
        self._thread = None
        self._mine = {}
        self.store.forget_after_fork()

    def submit(self, batch: Batch, *, drain: bool = True, hurry: bool | None = None) -> bool:
        """Spool the batch (acknowledged once this returns True); False when the spool is full.
        ``hurry``: insert it without waiting ``linger_s`` for more (None: ask ``lull``)."""
        if drain and not self._forked:
            # Said before the batch is on disk (its write ends with an fsync of the directory, the
            # file visible before it): the background thread, waking on its own timer in between,
            # lingers for it rather than drain it at once.
            self._submitted.set()
        try:
            path = self.spool.write(batch)
        except SpoolFull as exc:
            self.dropped_rows += batch.rows
            if not self._refusing:  # once per episode, not once per batch
                self._refusing = True
                _log.error("runmeter: %s; rows are refused until it has room (counted in dropped_rows) - "
                           "is ClickHouse down, or the disk full?", exc)
            return False
        self._refusing = False
        if len(self._mine) < 1024:
            self._mine[path.name] = batch  # this process's batches are not parsed back from disk
        if drain and not self._forked:
            if hurry if hurry is not None else (self.lull is not None and self.lull()):
                self._hurry.set()
            if self.store.embedded:
                self._wake.set()  # the background thread takes the store's lock, not the exporter thread
                if self._thread is None:
                    self.drain(wait=False)
            else:
                self.drain(wait=False)
        return True

    def drain(self, *, wait: bool = True) -> int:
        """Insert every spooled batch; returns how many were inserted. Never raises."""
        if self._forked or not self.spool.pending():
            return 0  # a forked child leaves its spooled batches to the parent
        if not self._drain_lock.acquire(blocking=wait):
            return 0
        done = 0
        try:
            try:
                done = self._insert_pending(self._client(wait))
            except ProgrammingError as exc:
                if "closed" not in str(exc):
                    raise
                # The held session was closed under us: at interpreter exit chDB's own finalizers may
                # close its handles before the exporter's last flush. Give it back; open a new one.
                self._release()
                done = self._insert_pending(self._client(wait))
            self.inserted_batches += done
            self._used()
            if self._down:
                self._down = False
                _log.warning("runmeter: writing to %s again; the batches that waited are in", self.store.url.redacted())
            if self.hold_s <= 0:
                self._release()
            self.spool.remove_stale_partials()
        except TimeoutError:
            pass  # another process holds the embedded store: later
        except Exception as exc:
            self._release()
            self.failures += 1
            if not self._down:  # once per outage: retries (and their query ids) say nothing new
                self._down = True
                msg = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                _log.warning("runmeter: cannot write to %s (%s); batches wait in %s and go in when it is back "
                             "(said once until then)", self.store.url.redacted(), msg, self.spool.dir)
        finally:
            self._drain_lock.release()
        return done

    def _insert_pending(self, client: Any) -> int:
        """Insert what the spool holds through ``client``; how many batches (drain lock held)."""
        done = 0
        for seg in [p for p in self.spool.pending() if p.name.endswith(SEGMENT_SUFFIX)]:
            done += self._insert_segment(client, seg)  # left by a crash: its sources go first
        group: list[tuple[Path, Batch]] = []
        rows = 0
        pending = self.spool.pending()
        claimed = self._claimed([p for p in pending if p.name.endswith(SEGMENT_SUFFIX)])  # another drainer's
        for path in pending:
            if path.name.endswith(SEGMENT_SUFFIX) or path.name in claimed:
                continue
            batch = self._read(path)
            if batch is None:
                continue
            if group and (rows + batch.rows > MAX_SEGMENT_ROWS or not _mergeable(group[0][1], batch)):
                done += self._insert_group(client, group)
                group, rows = [], 0
            group.append((path, batch))
            rows += batch.rows
        if group:
            done += self._insert_group(client, group)
        return done

    def _read(self, path: Path) -> Batch | None:
        mine = self._mine.pop(path.name, None)
        if mine is not None:
            return mine
        try:
            return self.spool.read(path)
        except FileNotFoundError:
            return None  # drained by another process
        except (ValueError, KeyError) as exc:
            bad = path.with_suffix(".corrupt")
            path.rename(bad)
            _log.error("runmeter: spool file %s is corrupt (%s); moved aside to %s", path.name, exc, bad.name)
            return None

    def _insert_group(self, client: Any, group: list[tuple[Path, Batch]]) -> int:
        """Insert spooled batches; several go as one insert per table, recorded first in a segment manifest."""
        if len(group) == 1:
            path, batch = group[0]
            insert_batch(client, batch)
            self.spool.remove(path)
            return 1
        merged = Batch.merge([b for _, b in group], [p.name for p, _ in group])
        seg_path = self.spool.write_segment(merged.token, merged.sources)  # durable before the insert
        insert_batch(client, merged)
        for path, _ in group:
            self.spool.remove(path)
        self.spool.remove(seg_path)
        return len(group)

    def _insert_segment(self, client: Any, path: Path) -> int:
        """A segment left by a crash: insert its sources again as the same merged batch."""
        segment = self._read(path)
        if segment is None:
            return 0
        if not segment.tables:  # a manifest
            paths = [self.spool.dir / name for name in segment.sources]
            batches = [b for b in (self._read(p) for p in paths if p.exists()) if b is not None]
            if len(batches) == len(paths):
                merged = Batch.merge(batches, segment.sources)
                insert_batch(client, Batch(segment.token, merged.tables))
            # else: sources are removed only after the insert succeeded - it did; finish the clean-up
            for p in paths:
                self.spool.remove(p)
        else:  # a segment holding the rows (written by runmeter 0.1.0): its sources are gone already
            insert_batch(client, segment)
        self.spool.remove(path)
        return len(segment.sources)

    def _claimed(self, segments: list[Path]) -> set[str]:
        names: set[str] = set()
        for seg in segments:
            batch = self._read_quiet(seg)
            if batch is not None:
                names.update(batch.sources)
        return names

    def _read_quiet(self, path: Path) -> Batch | None:
        try:
            return self.spool.read(path)
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def _client(self, wait: bool) -> Any:
        """The held session's client, or a new session (lock held by the caller)."""
        now = time.monotonic()
        held = self._held
        if held is not None and not self._give_up(held, now):
            return held[1]
        if held is not None:
            self._release()
            # Given up for a session that waits: let it take the store before taking it back.
            while wait and self.store.contended() and time.monotonic() - now < _HANDOVER_S:
                time.sleep(0.01)
        cm = self.store.session(wait=wait)
        client = cm.__enter__()  # the first one applies the migrations
        self.sessions_opened += 1
        opened = time.monotonic()
        self._held = [cm, client, opened, opened]
        if self._reads:
            # A session renewed by an insert: its reader too, or the next query would wait for that insert.
            try:
                reader = self.store.beside(client)
            except Exception as exc:  # the next query opens one (and says why if it cannot)
                internal_error("writer.reader", exc)
            else:
                with self._read_lock:
                    self._reader = reader
        return client

    def _used(self) -> None:
        """The held session was used until now: idle time counts from the end of the work."""
        if self._held is not None:
            self._held[3] = time.monotonic()

    def _give_up(self, held: list[Any], now: float) -> bool:
        """Whether the held session should be closed: held past max_hold_s, or wanted elsewhere
        (once it is _MIN_HOLD_S old, so two busy writers do not reopen chDB for every insert)."""
        age = now - held[2]
        return age >= self.max_hold_s or (age >= _MIN_HOLD_S and self.store.contended())

    def _release(self) -> None:
        held, self._held = self._held, None
        with self._read_lock:  # a query under way ends first
            reader, self._reader = self._reader, None
        if reader is not None and (held is None or reader is not held[1]):
            try:
                reader.close()
            except Exception as exc:
                internal_error("writer.release", exc)
        if held is not None:
            try:
                held[0].__exit__(None, None, None)
            except Exception as exc:
                internal_error("writer.release", exc)

    def release_idle(self) -> None:
        """Give the store back (its lock, for an embedded one) if nothing is waiting to be written,
        or if another session waits for the store."""
        if self._held is not None and self._drain_lock.acquire(blocking=False):
            try:
                if not self.spool.pending() or self.store.contended():
                    self._release()
            finally:
                self._drain_lock.release()

    def hurry(self) -> None:
        """Cut the linger under way short (or the one a batch just submitted is about to begin):
        nothing more is coming to join the insert. With none, nothing is kept for the next batch."""
        if self._lingering or self._submitted.is_set():
            self._hurry.set()

    def _linger(self) -> None:
        """Let the next batches join this insert: ``linger_s``, cut short by :meth:`hurry` (a
        hurried batch, close) or once ``lull`` says the input has paused. The batches submitted
        while it lasted go with the drain that follows: ``_submitted`` is cleared at its end, not
        its start, or each would start a linger of its own after that drain, with nothing to wait
        for. ``_lingering`` is set by the caller, so a hurry always finds one of the two set."""
        end = time.monotonic() + self.linger_s
        try:
            while not self._hurry.wait(min(_LOOK_S, max(0.0, end - time.monotonic()))) and time.monotonic() < end:
                if self.lull is not None and self.lull():
                    break
        finally:
            self._submitted.clear()
            self._lingering = False
            self._hurry.clear()

    def _loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            self._wake.wait(timeout=backoff if self.spool.pending() else (min(self.hold_s, 0.25) if self._held else 5.0))
            self._wake.clear()
            if self._submitted.is_set() and self.linger_s > 0:
                self._lingering = True
                self._linger()
            if self._stop.is_set():
                break
            try:
                before = self.failures
                self.drain(wait=False)
                restore_thread_name()  # chDB names the thread that inserts for its own stages
                held = self._held
                if held is not None:
                    now = time.monotonic()
                    if now - held[3] >= self.hold_s or self._give_up(held, now):
                        self.release_idle()
                if self.failures > before or self.spool.pending():
                    backoff = min(self._max_backoff, backoff * 2) * random.uniform(0.5, 1.0)
                else:
                    backoff = 0.5
            except Exception as exc:
                internal_error("writer.loop", exc)
        with self._drain_lock:
            self._release()

    def insert(self, batch: Batch) -> None:
        """Insert now, without the spool (the caller keeps the rows durable until this returns). Raises."""
        with self._drain_lock:
            try:
                insert_batch(self._client(wait=True), batch)
                self._used()
            except Exception:
                self._release()
                raise
        self._wake.set()  # the background thread gives an idle embedded store back

    def insert_encoded(self, token: str, blocks: dict[str, tuple[list[str], bytes]]) -> None:
        """Insert blocks already in Native format (``{table: (columns, bytes)}``, from
        :class:`~runmeter.exporter._native.NativeEncoder`), each table once, with ``token`` as
        its deduplication token. Without the spool, like :meth:`insert`. Raises."""
        with self._drain_lock:
            try:
                insert_blocks(self._client(wait=True), token, blocks)
                self._used()
            except Exception:
                self._release()
                raise
        self._wake.set()

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a query on the store, in the writer's session (an embedded store allows one per
        process) but beside its inserts: on a client of its own (``Store.beside``), so a query - a
        collector's ownership lookup - does not wait for an insert under way (tens of ms each on a
        busy embedded store). Only a query that finds no reader (the first one, or the next after a
        reader failed) waits for the writer, to open one; a session opened later opens its own."""
        with self._read_lock:
            if self._reader is not None:
                return self._query_reader(sql, parameters)
        with self._drain_lock:
            try:
                client = self._client(wait=True)
            except Exception:
                self._release()
                raise
            with self._read_lock:  # the lock order _release takes: drain, then read
                self._reads = True
                if self._reader is None:
                    self._reader = self.store.beside(client)
                return self._query_reader(sql, parameters)

    def _query_reader(self, sql: str, parameters: dict[str, Any] | None) -> list[tuple[Any, ...]]:
        """The query on the reader (``_read_lock`` held); a reader that failed is closed, the next query opens another."""
        reader = self._reader
        try:
            rows = list(reader.query(sql, parameters=parameters).result_rows)
        except Exception:
            self._reader = None
            held = self._held
            if held is None or reader is not held[1]:
                try:
                    reader.close()
                except Exception as exc:  # noqa: BLE001 - the query's error is the one to raise
                    internal_error("writer.reader", exc)
            raise
        self._used()
        return rows

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Drain until the spool is empty or the deadline; True when empty (in a forked child: spooled)."""
        if self._forked:
            return True
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while self.spool.pending():
            self.drain(wait=True)
            if not self.spool.pending():
                break
            if time.monotonic() + delay > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        self.release_idle()
        return True

    def close(self, timeout_s: float = 10.0) -> bool:
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        # At exit a store that is down gets one more try, not a wait: the batches are durable in the
        # spool, and the next runmeter process (or `runmeter db drain`) inserts them.
        if self._down:
            self.drain(wait=True)
            ok = not self.spool.pending()
        else:
            ok = self.flush(timeout_s)
        if self._forked:
            return ok
        with self._drain_lock:
            self._release()
        self.store.close()
        return ok
