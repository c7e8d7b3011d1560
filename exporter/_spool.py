"""The on-disk spool: batches wait here, durably, until ClickHouse has them.

One file per batch, written to a temporary name, fsynced, then renamed into
place (and the directory fsynced), so a reader only ever sees whole batches and
a batch that was acknowledged survives a crash or SIGKILL. Files are named by
time, so they drain in order. The spool is bounded: a batch that would take it
past ``max_bytes`` is refused, and the caller reports failure (and counts it).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Batch", "Spool", "SpoolFull"]

_SUFFIX = ".batch.json"


class SpoolFull(Exception):
    """The spool is at its size bound."""


@dataclass
class Batch:
    """Rows for one or more tables, with a deterministic deduplication token."""

    token: str
    tables: dict[str, dict[str, Any]]  # table -> {"columns": [...], "rows": [[...], ...]}

    def to_json(self) -> bytes:
        return json.dumps({"token": self.token, "tables": self.tables}, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Batch:
        doc = json.loads(data)
        return cls(str(doc["token"]), dict(doc["tables"]))

    @property
    def rows(self) -> int:
        return sum(len(t["rows"]) for t in self.tables.values())


class Spool:
    def __init__(self, directory: str | Path, max_bytes: int = 1 << 30) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._seq = 0

    def size(self) -> int:
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
            if self.size() + len(data) > self.max_bytes:
                raise SpoolFull(f"spool {self.dir} is full ({self.max_bytes} bytes)")
            self._seq += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}-{batch.token[:16]}"
            tmp = self.dir / (name + ".tmp")
            final = self.dir / (name + _SUFFIX)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return final

    def pending(self) -> list[Path]:
        return sorted(self.dir.glob("*" + _SUFFIX))

    @staticmethod
    def read(path: Path) -> Batch:
        return Batch.from_json(path.read_bytes())

    @staticmethod
    def remove(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
