"""Native blocks encoded away from the inserting process: their bytes, and what encoding pulls into a process."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runmeter.exporter import NativeEncoder, block_columns, native_codec
from runmeter.exporter._blocks import native_block  # built by make's install: a missing build fails here

_SCRIPT = """
import json, sys
from runmeter.exporter import OUTCOME_COLUMNS, NativeEncoder, Store, column_types, insert_blocks, without_dataframes
if sys.argv[2] == "skip":
    without_dataframes()
store = Store("chdb://" + sys.argv[1])
with store.session() as client:
    types = column_types(client.query(
        "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() AND table = 'runmeter_outcomes'").result_rows)
    block = NativeEncoder(types).encode("runmeter_outcomes", OUTCOME_COLUMNS, [["r1", "accepted", "", 1, "api"]])
    insert_blocks(client, "t", {"runmeter_outcomes": (OUTCOME_COLUMNS, block)})
    client.insert("runmeter_outcomes", [["r2", "rejected", "", 2, "api"]], column_names=OUTCOME_COLUMNS)
    rows = client.query("SELECT RunId, Outcome FROM runmeter_outcomes ORDER BY RunId").result_rows
store.close()
print(json.dumps({"rows": [list(r) for r in rows], "pandas": "pandas" in sys.modules}))
"""


def _inserts(tmp: Path, mode: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp / mode), mode], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_collectors_inserts_do_not_import_pandas(tmp_path: Path) -> None:
    """clickhouse-connect checks insert data against pandas' DataFrame, importing pandas (chDB's
    dependency, so installed) on the first insert: 0.6-1 s of CPU and ~80 MB in each collector process.
    ``without_dataframes`` keeps it out; both insert paths still store their rows."""
    control = _inserts(tmp_path, "default")
    skipped = _inserts(tmp_path, "skip")
    assert control["pandas"] is True  # what the collector's processes would pay without it
    assert skipped["pandas"] is False
    assert control["rows"] == skipped["rows"] == [["r1", "accepted"], ["r2", "rejected"]]


# The block writer in C (exporter/_blocks.c) against clickhouse-connect's Python codec: the
# reference for the bytes of every type it writes.

_TYPES = {
    "t": {
        "s": "String", "lc": "LowCardinality(String)", "u8": "UInt8", "u16": "UInt16", "u32": "UInt32",
        "u64": "UInt64", "ts": "DateTime64(9)", "f": "Float64", "attrs": "Map(LowCardinality(String), String)",
        "counts": "Map(String, UInt32)", "names": "Array(LowCardinality(String))", "times": "Array(DateTime64(9))",
        "nested": "Array(Map(LowCardinality(String), String))", "n": "Int64",
    },
    "other": {"s": "String", "maybe": "Nullable(String)"},
}
_COLUMNS = list(_TYPES["t"])


def _row(i: int) -> list[object]:
    return [
        f"span {i} ünïcødé ✓" if i % 3 else "", f"service-{i % 5}", i % 2 == 0, 65_535 - i, 4_000_000_000 + i,
        2**64 - 1 - i, 1_700_000_000_123_456_789 + i, [0.1, -0.0, float("inf"), float("nan"), 1e300][i % 5],
        {} if i % 4 == 0 else {"gen_ai.operation.name": "chat", f"k{i % 3}": "v" * (i % 200), "ключ": "значение"},
        {f"/files/{i % 7}": i % 9} if i % 2 else {},
        [f"event {j}" for j in range(i % 4)], [1_700_000_000_000_000_000 + j for j in range(i % 3)],
        [{"a": "b"}, {}] if i % 5 == 1 else [], -(2**63) + i,
    ]


def _both(table: str, columns: list[str], rows: list[list[object]]) -> tuple[bytes, bytes]:
    """The block in C, and clickhouse-connect's Python codec's bytes for the same rows."""
    from clickhouse_connect.datatypes.registry import get_from_name

    heads = block_columns(columns, [get_from_name(_TYPES[table][c]) for c in columns])
    assert heads is not None
    return native_block(heads, rows), NativeEncoder(_TYPES, "python").encode(table, columns, rows)


def test_the_block_writer_writes_clickhouse_connects_bytes() -> None:
    """Every type the collector's tables use, rows of each shape: empty strings, maps and arrays,
    non-ASCII text, the integers' edges, NaN and infinity, maps inside arrays - byte for byte."""
    rows = [_row(i) for i in range(300)]
    ours, reference = _both("t", _COLUMNS, rows)
    assert ours == reference


@pytest.mark.parametrize("distinct", [1, 255, 256, 65_535, 65_536])
def test_a_low_cardinality_index_is_as_wide_as_its_dictionary_needs(distinct: int) -> None:
    """Up to 255 distinct values an index is one byte, up to 65,535 two, past that four."""
    rows = [[f"v{i % distinct}"] for i in range(max(distinct, 10))]
    ours, reference = _both("t", ["lc"], rows)
    assert ours == reference
    width = 1 if distinct < 256 else 2 if distinct < 65_536 else 4
    # The flags' low byte is the index type (0, 1, 2 for widths 1, 2, 4): after the column count,
    # the row count (LEB128: 7 bits a byte), the column's name and type, and the 8-byte prefix.
    row_count_bytes = (len(rows).bit_length() + 6) // 7
    flags_at = 1 + row_count_bytes + 1 + len("lc") + 1 + len("LowCardinality(String)") + 8
    assert ours[flags_at] == {1: 0, 2: 1, 4: 2}[width]
    assert ours[-len(rows) * width:] == b"".join((i % distinct).to_bytes(width, "little") for i in range(len(rows)))


@pytest.mark.parametrize("bad", [
    ("s", None), ("s", b"bytes"), ("s", "lone \ud800 surrogate"), ("ts", datetime(2026, 11, 27, tzinfo=timezone.utc)),
    ("u8", 256), ("u64", -1), ("f", None), ("attrs", [("k", "v")]), ("names", "not a list"), ("lc", type("Text", (str,), {})("x")),
])
def test_a_value_it_does_not_write_goes_to_clickhouse_connect(bad: tuple[str, object]) -> None:
    """A value the block writer does not take is encoded by the clickhouse-connect codec ``auto``
    picks (rust where installed, which takes some values Python's refuses): its bytes, or its error."""
    column, value = bad
    rows = [_row(1), _row(2)]
    rows[1][_COLUMNS.index(column)] = value
    try:
        reference = NativeEncoder(_TYPES, native_codec("auto")[0]).encode("t", _COLUMNS, rows)
    except Exception as exc:
        with pytest.raises(type(exc)):
            NativeEncoder(_TYPES, "auto").encode("t", _COLUMNS, rows)
        return
    assert NativeEncoder(_TYPES, "auto").encode("t", _COLUMNS, rows) == reference


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # no lone surrogates: UTF-8 cannot hold them


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(
    _TEXT, _TEXT, st.integers(0, 2**64 - 1), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
    st.dictionaries(_TEXT, _TEXT, max_size=6), st.dictionaries(_TEXT, st.integers(0, 2**32 - 1), max_size=4),
    st.lists(st.dictionaries(_TEXT, _TEXT, max_size=3), max_size=3), st.lists(_TEXT, max_size=4),
), min_size=1, max_size=30))
def test_any_rows_of_its_types_are_clickhouse_connects_bytes(rows: list[tuple[object, ...]]) -> None:
    columns = ["s", "lc", "u64", "n", "f", "attrs", "counts", "nested", "names"]
    ours, reference = _both("t", columns, [list(r) for r in rows])
    assert ours == reference


def test_the_encoder_writes_in_c_what_it_can_and_hands_the_rest_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto``: a type the block writer does not write (Nullable) gets clickhouse-connect's bytes;
    the rest are written in C - still encoded with clickhouse-connect's codecs out of reach, where
    the same bytes from a fallback would prove nothing."""
    import runmeter.exporter._native as native

    other = [["a", None], ["b", "c"]]
    assert NativeEncoder(_TYPES, "auto").encode("other", ["s", "maybe"], other) == NativeEncoder(_TYPES, "python").encode("other", ["s", "maybe"], other)
    rows = [_row(i) for i in range(20)]
    reference = NativeEncoder(_TYPES, "python").encode("t", _COLUMNS, rows)

    def unreachable(*args: object, **kwargs: object) -> None:
        raise AssertionError("clickhouse-connect's codec was used")

    monkeypatch.setattr(native, "InsertContext", unreachable)
    assert NativeEncoder(_TYPES, "auto").encode("t", _COLUMNS, rows) == reference
    with pytest.raises(AssertionError, match="codec was used"):
        NativeEncoder(_TYPES, "auto").encode("other", ["s", "maybe"], other)


def test_every_column_a_worker_writes_is_written_in_c(tmp_path: Path) -> None:
    """The tables' columns are all of types the block writer takes: a schema change that adds one it
    does not would send every block back to clickhouse-connect's codec, at five times the CPU."""
    from clickhouse_connect.datatypes.registry import get_from_name

    from runmeter.exporter import COLUMN_TYPES_SQL, Store, column_types
    from runmeter.exporter._rows import CALL_COLUMNS, RUN_COLUMNS, TRACE_COLUMNS

    store = Store(f"chdb://{tmp_path}/store")
    with store.session() as client:
        types = column_types(client.query(COLUMN_TYPES_SQL).result_rows)
    store.close()
    for table, columns in (("otel_traces", TRACE_COLUMNS), ("runmeter_calls", CALL_COLUMNS), ("runmeter_runs", RUN_COLUMNS)):
        assert block_columns(columns, [get_from_name(types[table][c]) for c in columns]) is not None, table
