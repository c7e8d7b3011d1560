"""Rows to ClickHouse's Native format away from the process that inserts them.

The collector's worker processes build rows and encode them here, so the process that owns
the store only hands finished blocks to ClickHouse (``Writer.insert_encoded``: a ``raw_insert``
of the bytes, for chDB and a server alike). Encoding is clickhouse-connect's own: its compiled
codec (``clickhouse-connect[rust]``; on the collector's rows 0-35 % faster than the Python one in
the 2026-11-26 benchmark runs) when installed, else
its Python codec - the same bytes either way.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver.insert import InsertContext
from clickhouse_connect.driver.transform import NativeTransform

__all__ = ["NativeEncoder", "column_types", "native_codec", "without_dataframes"]

_log = logging.getLogger(__name__)


def native_codec(wanted: str = "auto") -> tuple[str, Any]:
    """The codec's name and its transform: ``rust`` when ``wanted`` allows it and it is installed.

    ``wanted``: ``auto`` (rust if installed), ``rust`` (an error when it is not), ``python``.
    """
    if wanted != "python":
        try:
            # Private to clickhouse-connect, as a client's codec choice is; its public knob is a
            # client's native_codec argument, and these blocks are encoded with no client at hand.
            from clickhouse_connect.driver.rustcodec import _make_native_transform

            return "rust", _make_native_transform("rust")
        except Exception as exc:
            if wanted == "rust":
                raise ValueError(f"native_codec = 'rust' needs pip install 'clickhouse-connect[rust]': {exc}") from None
    return "python", NativeTransform()


def without_dataframes() -> None:
    """Keep clickhouse-connect from importing pandas and numpy into this process.

    Every insert's data is checked against their DataFrame and array types, which imports them on
    the first insert where they are installed: 0.6-1 s of CPU and ~80 MB per process, measured here.
    A process of runmeter's own (the collector, its workers) inserts lists only, so there the
    check is told they are absent - unless the process has imported them already (then it costs
    nothing). Uses the lazy names clickhouse-connect's ``driver.options`` module resolves itself.
    """
    from clickhouse_connect.driver import options

    found = vars(options)
    if "pandas" not in sys.modules and "pd" not in found:
        options.pd = None  # type: ignore[attr-defined]
        options.pd_time_test = None  # type: ignore[attr-defined]
    if "numpy" not in sys.modules and "np" not in found:
        options.np = None  # type: ignore[attr-defined]


def column_types(rows: Sequence[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    """``{table: {column: type}}`` from rows of ``(table, name, type)`` (``system.columns``)."""
    out: dict[str, dict[str, str]] = {}
    for table, name, type_name in rows:
        out.setdefault(table, {})[name] = type_name
    return out


class NativeEncoder:
    """Encodes rows of a table, given its column types by name (from ``system.columns``)."""

    def __init__(self, types: Mapping[str, Mapping[str, str]], codec: str = "auto") -> None:
        self.codec, self._transform = native_codec(codec)
        self._types = types
        self._resolved: dict[tuple[str, tuple[str, ...]], list[Any]] = {}

    def encode(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
        key = (table, tuple(columns))
        types = self._resolved.get(key)
        if types is None:
            known = self._types.get(table, {})
            missing = [c for c in columns if c not in known]
            if missing:
                raise ValueError(f"{table} has no column(s) {', '.join(missing)}: is the store's schema up to date?")
            types = self._resolved[key] = [get_from_name(known[c]) for c in columns]
        ctx = InsertContext(table, list(columns), types, data=rows)
        chunks = list(self._transform.build_insert(ctx))
        if ctx.insert_exception is not None:
            raise ctx.insert_exception
        # The first chunk starts with the INSERT statement an HTTP body carries; a raw insert
        # names the table and format itself, so only the Native bytes after it are kept.
        if chunks and chunks[0].startswith(b"INSERT INTO "):
            first = chunks[0]
            chunks[0] = first[first.index(b"\n") + 1:]
        return b"".join(chunks)
