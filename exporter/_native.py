"""Rows to ClickHouse's Native format away from the process that inserts them.

The collector's worker processes build rows and encode them here, so the process that owns
the store only hands finished blocks to ClickHouse (``Writer.insert_encoded``: a ``raw_insert``
of the bytes, for chDB and a server alike).

Rows of the types runmeter's tables use (String, LowCardinality(String), unsigned integers,
Int64, DateTime64, Float64, and Arrays and Maps of them) are written by ``_blocks.c``: the bytes
clickhouse-connect's codec writes for them, in a fifth to a third of its time (its encoding was
~13 % of a worker's CPU in a profile of the 2026-11-27 benchmark). Any other type, any value not
of the plain type expected, and any build without the compiled part go to clickhouse-connect:
its compiled codec (``clickhouse-connect[rust]``) when installed, else its Python codec - the same
bytes either way.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from clickhouse_connect.datatypes.base import ClickHouseType
from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver.common import write_leb128
from clickhouse_connect.driver.insert import InsertContext
from clickhouse_connect.driver.transform import NativeTransform

try:
    from runmeter.exporter import _blocks
except ImportError:  # built without a C compiler (setup.py): clickhouse-connect's codec for every block
    _blocks = None  # type: ignore[assignment]

__all__ = ["COLUMN_TYPES_SQL", "NativeEncoder", "UnknownColumns", "column_types", "native_codec", "without_dataframes"]

# The rows column_types reads: every table of the store's database.
COLUMN_TYPES_SQL = "SELECT table, name, type FROM system.columns WHERE database = currentDatabase()"


class UnknownColumns(ValueError):
    """The encoder's column types lack a table or column the rows have (a schema changed since
    they were read, or a store that is not up to date)."""


_log = logging.getLogger(__name__)


def native_codec(wanted: str = "auto") -> tuple[str, Any]:
    """clickhouse-connect's codec: its name and its transform, ``rust`` when ``wanted`` allows it and it is installed.

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


def _spec(t: ClickHouseType) -> Any:
    """What ``_blocks.native_block`` is told a column holds, or None where it does not write that type."""
    name = type(t).__name__
    if t.nullable or getattr(t, "encoding", "utf8") not in ("utf8", "utf-8"):
        return None
    if t.low_card:
        return _blocks.LC_STRING if name == "String" else None
    if name == "Array":
        element = _spec(t.element_type)  # type: ignore[attr-defined]
        return None if element is None else (_blocks.ARRAY, element)
    if name == "Map":
        key, value = _spec(t.key_type), _spec(t.value_type)  # type: ignore[attr-defined]
        return None if key is None or value is None else (_blocks.MAP, key, value)
    plain = {"String": _blocks.STRING, "UInt8": _blocks.UINT8, "UInt16": _blocks.UINT16, "UInt32": _blocks.UINT32,
             "UInt64": _blocks.UINT64, "Int64": _blocks.INT64, "DateTime64": _blocks.INT64, "Float64": _blocks.FLOAT64}
    return plain.get(name)


def block_columns(columns: Sequence[str], types: Sequence[ClickHouseType]) -> tuple[tuple[bytes, Any], ...] | None:
    """The ``columns`` argument of ``_blocks.native_block`` for these columns, or None when a type
    is not one it writes (or it is not built): each column's name, type and serialization prefix
    (clickhouse-connect's own, for the LowCardinality parts), and its spec."""
    if _blocks is None:
        return None
    out = []
    for column, t in zip(columns, types):
        spec = _spec(t)
        if spec is None:
            return None
        head = bytearray()
        for text in (column.encode(), t.insert_name.encode()):
            write_leb128(len(text), head)
            head += text
        t.write_column_prefix(head)
        out.append((bytes(head), spec))
    return tuple(out)


class NativeEncoder:
    """Encodes rows of a table, given its column types by name (from ``system.columns``).

    ``codec``: ``auto`` writes in C (``_blocks.c``) what it can and hands the rest to
    clickhouse-connect's rust codec where installed, else its Python one; ``rust`` and ``python``
    use clickhouse-connect's codec of that name for every block.
    """

    def __init__(self, types: Mapping[str, Mapping[str, str]], codec: str = "auto") -> None:
        self.codec, self._transform = native_codec(codec)
        self._compiled = codec == "auto" and _blocks is not None
        self._types = types
        self._resolved: dict[tuple[str, tuple[str, ...]], tuple[list[Any], tuple[tuple[bytes, Any], ...] | None]] = {}

    def encode(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
        key = (table, tuple(columns))
        resolved = self._resolved.get(key)
        if resolved is None:
            known = self._types.get(table, {})
            missing = [c for c in columns if c not in known]
            if missing:
                raise UnknownColumns(f"{table} has no column(s) {', '.join(missing)}: is the store's schema up to date?")
            types = [get_from_name(known[c]) for c in columns]
            resolved = self._resolved[key] = (types, block_columns(columns, types) if self._compiled else None)
        types, heads = resolved
        if heads is not None and rows and type(rows) is list:
            try:
                return _blocks.native_block(heads, rows)  # type: ignore[no-any-return]
            except (TypeError, ValueError, OverflowError):  # (UnicodeEncodeError is a ValueError)
                pass  # a value it does not write: clickhouse-connect encodes these rows, or says what is wrong
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
