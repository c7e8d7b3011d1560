"""The on-disk spool: batches wait here, durably, until ClickHouse has them.

One file per batch, written to a temporary name, fsynced, then renamed into
place (and the directory fsynced), so a reader only ever sees whole batches and
a batch that was acknowledged survives a crash or SIGKILL. Files are named by
time, so they drain in order. The spool is bounded: a batch that would take it
past ``max_bytes`` is refused, and the caller reports failure (and counts it).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from runmeter.core import renew_locks_after_fork

__all__ = ["SEGMENT_SUFFIX", "Batch", "Spool", "SpoolFull"]

_SUFFIX = ".batch.json"
SEGMENT_SUFFIX = ".segment.json"


_TMP = ".tmp"


class SpoolFull(Exception):
    """The spool is at its size bound."""


def _dumps(value: Any) -> bytes:
    """JSON bytes; orjson (a dozen times faster on rows of maps and arrays), else the standard
    library for what orjson refuses (integers past 64 bits)."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # NaN or Infinity, as the standard library writes them
        return json.loads(data)


@dataclass
class Batch:
    """Rows for one or more tables, with a deterministic deduplication token.

    ``Batch.of(tables)`` serializes the rows once; the token is a hash of those bytes, so
    the same rows always carry the same token (a retried batch is counted once).
    ``sources`` names the spool files a merged batch (a *segment*) was made from.
    """

    token: str
    tables: dict[str, dict[str, Any]]  # table -> {"columns": [...], "rows": [[...], ...]}
    sources: list[str] = field(default_factory=list)
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, tables: dict[str, dict[str, Any]], sources: list[str] | None = None) -> Batch:
        encoded = _dumps(tables)
        token = hashlib.blake2b(encoded, digest_size=16).hexdigest()
        return cls(token, tables, sources or [], encoded)

    def to_json(self) -> bytes:
        tables = self._encoded or _dumps(self.tables)
        head = _dumps({"token": self.token, "sources": self.sources})[:-1]
        return head + b',"tables":' + tables + b"}"

    @classmethod
    def from_json(cls, data: bytes) -> Batch:
        """A batch, or a segment: a manifest of sources (no tables), or, as written before 0.1.1, the merged rows."""
        doc = _loads(data)
        return cls(str(doc["token"]), dict(doc.get("tables", {})), list(doc.get("sources", [])))

    @staticmethod
    def merge(batches: list[Batch], sources: list[str]) -> Batch:
        """One batch of the batches' rows, in order; its token follows from theirs (the same group, the same token)."""
        tables: dict[str, dict[str, Any]] = {}
        for batch in batches:
            for name, data in batch.tables.items():
                t = tables.setdefault(name, {"columns": data["columns"], "rows": []})
                t["rows"].extend(data["rows"])
        token = hashlib.blake2b("".join(b.token for b in batches).encode(), digest_size=16).hexdigest()
        return Batch(token, tables, sources)

    @property
    def rows(self) -> int:
        return sum(len(t["rows"]) for t in self.tables.values())


class Spool:
    def __init__(self, directory: str | Path, max_bytes: int = 1 << 30) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        renew_locks_after_fork(self, "_lock")  # a parent thread may be writing when a worker forks
        self._seq = 0
        self._writes = 0
        self._estimate = 0

    def size(self) -> int:
        """Bytes waiting, read from disk (other processes share the directory)."""
        total = 0
        for p in self.dir.glob("*" + _SUFFIX):
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass  # drained by another process meanwhile
        return total

    def write(self, batch: Batch) -> Path:
        """Durably store a batch; raises SpoolFull at the bound."""
        data = batch.to_json()
        with self._lock:
            # Listing the directory on every write would cost O(files) under a backlog: the size is
            # re-read every 64 writes, or when the estimate nears the bound, and estimated between.
            self._writes += 1
            if self._writes % 64 == 1 or self._estimate + len(data) > self.max_bytes:
                self._estimate = self.size()
            if self._estimate + len(data) > self.max_bytes:
                raise SpoolFull(f"spool {self.dir} is full ({self.max_bytes} bytes)")
            self._estimate += len(data)
            self._seq += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}-{batch.token[:16]}"
            return self._write(data, name, _SUFFIX)

    def remove_stale_partials(self, older_than_s: float = 60.0) -> int:
        """Remove half-written files a crash left (``*.tmp`` older than ``older_than_s``); how many."""
        removed = 0
        cutoff = time.time() - older_than_s
        for tmp in self.dir.glob("*" + _TMP):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except OSError:
                pass  # taken by another process
        return removed

    def pending(self) -> list[Path]:
        """Batches and segments waiting, oldest first."""
        return sorted([*self.dir.glob("*" + _SUFFIX), *self.dir.glob("*" + SEGMENT_SUFFIX)])

    def write_segment(self, token: str, sources: list[str]) -> Path:
        """Durably record that ``sources`` are inserted together as one batch with ``token``.

        A segment is a manifest, not a copy of the rows: its sources stay in the spool until the
        insert succeeded, so after a crash the same files are merged again in the same order and
        inserted with the same token (counted once).
        """
        with self._lock:
            self._seq += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}-{token[:16]}"
            data = _dumps({"token": token, "sources": sources})
            return self._write(data, name, SEGMENT_SUFFIX)

    def _write(self, data: bytes, name: str, suffix: str) -> Path:
        tmp = self.dir / (name + _TMP)
        final = self.dir / (name + suffix)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # a full disk, a file size limit: nothing half written stays behind
            try:
                tmp.unlink()
            except OSError:
                pass
            raise SpoolFull(f"cannot write to the spool {self.dir}: {exc.strerror or exc}") from exc
        os.replace(tmp, final)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return final

    @staticmethod
    def read(path: Path) -> Batch:
        return Batch.from_json(path.read_bytes())

    @staticmethod
    def remove(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
