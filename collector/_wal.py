"""The collector's write-ahead log: a request is on disk (fsync) before it is acknowledged.

Records are appended to segment files ``<first seq>.wal`` in ``directory``::

    record = u32 length | u32 crc32(payload) | u64 seq | payload

A single writer thread takes every append waiting at that moment, writes them
with one ``writev`` and makes them durable with one ``fdatasync`` (group
commit), then completes their futures in sequence order and hands each record
to ``on_durable``: nothing is processed that a crash could still take back.

Processing *releases* a record once its spans are durably with the store's
writer. The log keeps every record from the oldest unreleased one on (the
*watermark* is the highest sequence below which all are released, persisted
in ``checkpoint``); whole segments below the watermark are deleted. After a
crash, :meth:`WriteAheadLog.open` returns the records after the checkpoint
for replay. A torn tail (a record half written when the process died, never
acknowledged) is cut off; a damaged record in an older segment is skipped and
counted, never fatal.

The log is bounded: :meth:`append` raises :class:`LogFull` when the records not
yet released would pass ``max_bytes``, which the receivers turn into a retryable
refusal. On disk it also holds the released records after the oldest unreleased
one; :meth:`WriteAheadLog.pinning` names the few records that keep a segment
there, for the collector to log their waiting spans again at the tail.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runmeter.core import Thread

try:  # zlib-ng's: the same CRC-32 as zlib's, on the CPU's carry-less multiply (12x faster here on a request)
    from zlib_ng.zlib_ng import crc32
except ImportError:  # the collector extra is not installed
    from zlib import crc32

__all__ = ["LogFull", "WalRecord", "WriteAheadLog"]

_log = logging.getLogger(__name__)
_HEADER = struct.Struct("<IIQ")
_SUFFIX = ".wal"
_CHECKPOINT = "checkpoint"
_MAX_RECORD = 1 << 30


class LogFull(Exception):
    """The log holds ``max_bytes``: refuse (retryably) until processing catches up."""


@dataclass(frozen=True)
class WalRecord:
    seq: int
    payload: bytes


@dataclass
class _Segment:
    path: Path
    first: int
    last: int
    size: int


class WriteAheadLog:
    def __init__(
        self,
        directory: str | Path,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 64 << 20,
        fsync: bool = True,
        on_durable: Callable[[int, Any], None] | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._fsync = fsync
        self._on_durable = on_durable
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: list[tuple[int, bytes, bytes, Any, Future[int]]] = []  # seq, prefix, payload, item, future
        self._segments: list[_Segment] = []
        self._released: set[int] = set()
        self._sizes: dict[int, int] = {}  # unreleased record -> its bytes
        self._where: dict[int, tuple[Path, int]] = {}  # unreleased record -> its segment and offset
        self._unreleased = 0  # their sum (kept as it changes: append checks it per request)
        self._queued = 0  # bytes appended and not yet written
        self.damaged = 0
        self._closed = False
        self._checkpoint_written = 0.0
        self._checkpoint_lock = threading.Lock()
        self._checkpoint_failing = False  # said once until a checkpoint is written again
        self._fd: int | None = None
        self._active: _Segment | None = None  # the segment being appended to (none until the first write)
        self._roll_next = False  # a write failed: the next one starts a new segment
        self.watermark = self._read_checkpoint()
        self.replay: list[WalRecord] = self._recover()
        last = max([s.last for s in self._segments] + [self.watermark])
        self._next_seq = last + 1
        self._thread = Thread(target=self._run, name="runmeter-wal", daemon=True)
        self._thread.start()

    # --- recovery --------------------------------------------------------------------------

    def _read_checkpoint(self) -> int:
        try:
            return int((self.dir / _CHECKPOINT).read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            _log.error("runmeter collector: %s is damaged; replaying the whole log", self.dir / _CHECKPOINT)
            return 0

    def _recover(self) -> list[WalRecord]:
        paths = sorted(self.dir.glob("*" + _SUFFIX))
        records: list[WalRecord] = []
        for i, path in enumerate(paths):
            last_segment = i == len(paths) - 1
            data = path.read_bytes()
            pos, first, last = 0, 0, 0
            while pos < len(data):
                if pos + _HEADER.size > len(data):
                    break
                length, crc, seq = _HEADER.unpack_from(data, pos)
                end = pos + _HEADER.size + length
                payload = data[pos + _HEADER.size:end]
                if length > _MAX_RECORD or end > len(data) or crc32(payload) != crc:
                    break
                first = first or seq
                last = seq
                if seq > self.watermark:
                    records.append(WalRecord(seq, payload))
                    self._sizes[seq] = end - pos
                    self._where[seq] = (path, pos)
                    self._unreleased += end - pos
                pos = end
            if pos < len(data):
                if last_segment:  # torn tail: written when the process died, never acknowledged
                    with open(path, "r+b") as f:
                        f.truncate(pos)
                        os.fsync(f.fileno())
                    _log.warning("runmeter collector: cut a torn record at the end of %s (%d bytes)", path, len(data) - pos)
                else:
                    self.damaged += 1
                    _log.error("runmeter collector: %s is damaged after byte %d; the rest of it is skipped", path, pos)
            if last == 0:  # nothing readable in it (created just before a crash, or all torn)
                path.unlink()
                continue
            self._segments.append(_Segment(path, first, last, pos))
        # A sequence number past the watermark with no record was never acknowledged (a write the
        # disk refused): released, so the watermark can pass it.
        expected = self.watermark + 1
        for r in records:
            self._released.update(range(expected, r.seq))
            expected = r.seq + 1
        self._trim()
        return records

    # --- appending -------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def pending(self) -> int:
        """Records acknowledged or waiting, not yet released."""
        return self._next_seq - 1 - self.watermark - len(self._released)

    @property
    def pending_bytes(self) -> int:
        """Bytes of the records not yet released."""
        return self._unreleased

    def append(self, payload: bytes, item: Any = None, *, prefix: bytes = b"") -> Future[int]:
        """Queue a record; the future completes with its sequence number once it is on disk.

        ``item`` goes to ``on_durable`` with the sequence number (in order), so the
        caller can hand the request on without reading it back. The record is
        ``prefix + payload``, written from the two (a request is not copied to
        join them: its size in fresh pages, every request).
        """
        fut: Future[int] = Future()
        size = len(prefix) + len(payload) + _HEADER.size
        with self._cond:
            if self._closed:
                raise LogFull("the log is closed (the collector is shutting down)")
            held = self._unreleased + self._queued
            if held + size > self.max_bytes:
                raise LogFull(f"the write-ahead log holds {held} unreleased bytes of {self.max_bytes}")
            seq = self._next_seq
            self._next_seq += 1
            self._queue.append((seq, prefix, payload, item, fut))
            self._queued += size
            self._cond.notify()
        return fut

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
                batch, self._queue = self._queue, []
            try:
                self._write(batch)
            except Exception as exc:  # a disk error: every waiting request is refused, none acknowledged
                with self._lock:
                    self._queued -= sum(len(prefix) + len(p) + _HEADER.size for _, prefix, p, _, _ in batch)
                    # Refused, never processed: counted as released, so the watermark (and the trim of
                    # the segments below it) moves past them once the disk takes writes again.
                    self._released.update(seq for seq, *_ in batch)
                self._after_failed_write()
                _log.error("runmeter collector: cannot write the log: %s", exc)
                for *_, fut in batch:
                    fut.set_exception(LogFull(f"cannot write the log: {exc}"))
                continue
            for seq, _, _, item, fut in batch:
                if self._on_durable is not None:
                    try:
                        self._on_durable(seq, item)
                    except Exception as exc:
                        _log.error("runmeter collector: on_durable failed for record %d: %s", seq, exc)
                fut.set_result(seq)

    def _after_failed_write(self) -> None:
        """A write or its sync failed part way: the refused records' bytes may be in the segment, a
        torn record among them. Cut them off (best effort) and start the next write in a new
        segment, so no acknowledged record is ever written after them: recovery reads a segment up
        to the first damage, and would not reach it."""
        if self._fd is not None and self._active is not None:
            try:
                os.ftruncate(self._fd, self._active.size)
            except OSError:
                pass  # the next segment starts clean all the same; this one's torn tail is skipped on recovery
        self._roll_next = True

    def _write(self, batch: list[tuple[int, bytes, bytes, Any, Future[int]]]) -> None:
        if self._fd is None or self._active is None or self._active.size >= self.segment_bytes or self._roll_next:
            self._roll(batch[0][0])
            self._roll_next = False
        assert self._fd is not None and self._active is not None
        parts: list[bytes] = []
        sizes: list[int] = []
        for seq, prefix, payload, _, _ in batch:
            length = len(prefix) + len(payload)
            parts += (_HEADER.pack(length, crc32(payload, crc32(prefix)), seq), prefix, payload)
            sizes.append(length + _HEADER.size)
        _write_all(self._fd, parts)
        if self._fsync:
            os.fdatasync(self._fd)
        written = sum(sizes)
        with self._lock:
            offset = self._active.size
            for (seq, *_), size in zip(batch, sizes):
                self._sizes[seq] = size
                self._where[seq] = (self._active.path, offset)
                offset += size
            self._unreleased += written
            self._queued -= written  # counted as unreleased now (_cond shares this lock)
            self._active.size += written
            self._active.last = batch[-1][0]

    def _roll(self, first: int) -> None:
        """A new active segment. ``_fd`` is the active segment's or None: a roll that fails part way
        leaves None (the next write rolls again), never a closed descriptor whose number another
        file may reuse."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        path = self.dir / f"{first:020d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if self._fsync:
                _fsync_dir(self.dir)
            seg = _Segment(path, first, first - 1, os.fstat(fd).st_size)
        except BaseException:
            os.close(fd)
            raise
        with self._lock:
            self._segments.append(seg)
            self._active = seg
        self._fd = fd

    def read(self, seq: int) -> bytes:
        """The payload of unreleased record ``seq``, read back from its segment (CRC-checked)."""
        with self._lock:
            path, offset = self._where[seq]
            size = self._sizes[seq]
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        length, crc, found = _HEADER.unpack_from(data)
        payload = data[_HEADER.size:]
        if found != seq or length != len(payload) or crc32(payload) != crc:
            raise OSError(f"record {seq} in {path} does not read back intact")
        return payload

    def pinning(self) -> list[int]:
        """Unreleased records that keep released ones on disk: those of the oldest segment, once
        the log has more than two and they are less than a tenth of that segment (a few records
        held for long - a run still open - that would otherwise keep every segment after it, not
        a backlog). The caller may write them again at the tail and release them."""
        with self._lock:
            if len(self._segments) <= 2 or self._segments[0] is self._active:
                return []
            oldest = self._segments[0]
            seqs = [seq for seq, (path, _) in self._where.items() if path == oldest.path]
            if sum(self._sizes[seq] for seq in seqs) * 10 > oldest.size:
                return []
            return sorted(seqs)

    # --- release ---------------------------------------------------------------------------

    def release(self, seq: int) -> None:
        """Processing is done with record ``seq``: its spans are durably with the store's writer."""
        with self._lock:
            if seq <= self.watermark:
                return
            self._released.add(seq)
            self._unreleased -= self._sizes.pop(seq, 0)
            self._where.pop(seq, None)
            moved = False
            while self.watermark + 1 in self._released:
                self._released.discard(self.watermark + 1)
                self.watermark += 1
                moved = True
        if moved:
            self._trim()

    def _trim(self, force: bool = False) -> None:
        """Delete segments wholly below the watermark; persist the checkpoint (at most 5 per second).

        Never raises: a checkpoint the disk refuses (full) keeps the segments below it until one is
        persisted - a restart replays from the last checkpoint written, and the stored-rows lookup
        keeps what is replayed from being written twice."""
        with self._lock:
            dead = [s for s in self._segments if s.last <= self.watermark and s is not self._active]
            watermark = self.watermark
        now = time.monotonic()
        if dead or force or now - self._checkpoint_written >= 0.2:
            with self._checkpoint_lock:
                self._checkpoint_written = now
                tmp = self.dir / (_CHECKPOINT + ".tmp")
                try:
                    tmp.write_text(str(watermark))
                    os.replace(tmp, self.dir / _CHECKPOINT)
                except OSError as exc:
                    if not self._checkpoint_failing:
                        _log.error("runmeter collector: cannot write the log's checkpoint (%s); its segments are kept until it can", exc)
                    self._checkpoint_failing = True
                    return
                if self._checkpoint_failing:
                    _log.info("runmeter collector: the log's checkpoint is written again")
                self._checkpoint_failing = False
        with self._lock:
            self._segments = [s for s in self._segments if s not in dead]
        for s in dead:
            try:
                s.path.unlink(missing_ok=True)
            except OSError as exc:
                _log.error("runmeter collector: cannot delete %s (%s)", s.path, exc)

    def close(self) -> None:
        """Write what is queued, persist the checkpoint, stop the writer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)
        self._trim(force=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_IOV_MAX = 1024  # writev's limit on Linux (sysconf's SC_IOV_MAX)


def _write_all(fd: int, parts: list[bytes]) -> None:
    """Every byte of ``parts``, in order, with as few ``writev`` calls as the kernel allows."""
    views = [memoryview(p) for p in parts if p]
    i = 0  # the first part not yet wholly written
    while i < len(views):
        n = os.writev(fd, views[i:i + _IOV_MAX])
        while n:
            size = len(views[i])
            if n >= size:
                n -= size
                i += 1
            else:
                views[i] = views[i][n:]
                n = 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
