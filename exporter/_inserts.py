"""Inserts of rows and Native blocks into the store: what the writer and the collector's workers share.

Each table's rows go in one insert with the batch's ``insert_deduplication_token`` (a batch
inserted twice counts once), encoded to Native blocks here (``NativeEncoder``) or, where the
client's column types cannot say how, by clickhouse-connect's own insert; per-table insert
settings asked of the server once per client.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError

from runmeter.exporter._native import COLUMN_TYPES_SQL, NativeEncoder, UnknownColumns, column_types
from runmeter.exporter._spool import Batch

__all__ = ["insert_batch", "insert_blocks"]

_INSERT_SETTINGS = {"async_insert": 0, "deduplicate_blocks_in_dependent_materialized_views": 1}


# A client's tables' column types, read once per client: clickhouse-connect's insert asks the store
# (DESCRIBE TABLE) before every insert, a query each time (~1-7 ms of chDB's CPU on a busy store).
_encoders: weakref.WeakKeyDictionary[Any, NativeEncoder] = weakref.WeakKeyDictionary()


def _encoder(client: Any, fresh: bool = False) -> NativeEncoder:
    encoder = None if fresh else _encoders.get(client)
    if encoder is None:
        encoder = _encoders[client] = NativeEncoder(column_types(client.query(COLUMN_TYPES_SQL).result_rows))
    return encoder


def _block(client: Any, table: str, columns: list[str], rows: list[Any]) -> bytes | None:
    """The rows as a Native block, or None where clickhouse-connect's own insert is to take them:
    a table or column the client's column types lack even when read again (a migration since
    they were read gets them), or column types that cannot be read at all (a server that keeps
    ``system.columns`` from this user, or is down; a client that cannot be weakly referenced)."""
    try:
        encoder = _encoder(client)
    except Exception:
        return None
    try:
        return encoder.encode(table, columns, rows)
    except UnknownColumns:
        pass
    try:
        return _encoder(client, fresh=True).encode(table, columns, rows)
    except UnknownColumns:
        return None


def insert_batch(client: Any, batch: Batch) -> None:
    """The batch's rows, one insert per table with the batch's deduplication token: encoded here
    (``NativeEncoder``: in C for runmeter's tables, ~5x clickhouse-connect's codec on span rows) and
    inserted as Native blocks, or by clickhouse-connect's insert where ``_block`` says so (it asks
    the store, and says what it lacks)."""
    for table, data in batch.tables.items():
        if not data["rows"]:
            continue
        columns, rows = data["columns"], data["rows"]
        block = _block(client, table, columns, rows)
        if block is None:
            client.insert(table, rows, column_names=columns,
                          settings={**_INSERT_SETTINGS, **_settings_of(client).get(table, {}), "insert_deduplication_token": f"{batch.token}:{table}"})
        else:
            insert_blocks(client, batch.token, {table: (columns, block)})


# otel_traces' bloom filters over the keys and values of its attribute maps serve searches by
# attribute (Grafana's trace search); built at insert they were two thirds of chDB's CPU on an
# otel_traces insert (~15 -> ~4.5 us a span row without them). ClickHouse builds them again
# whenever parts merge, so they are left to the merges: a part not merged yet (the newest spans)
# is searched without them, with the same results. idx_trace_id (a trace by its id: the trace
# view, a replay's lookup) is still built at insert. ``exclude_..._on_insert`` is ClickHouse
# 25.10's; an older server builds all of them at insert, as before (docs/storage.md).
_AT_MERGE = {"otel_traces": "idx_res_attr_key, idx_res_attr_value, idx_span_attr_key, idx_span_attr_value"}
_EXCLUDE_ON_INSERT = "exclude_materialize_skip_indexes_on_insert"
_ON_INSERT_ENV = "RUNMETER_ATTRIBUTE_INDEXES_ON_INSERT"
_table_settings: weakref.WeakKeyDictionary[Any, dict[str, dict[str, str]]] = weakref.WeakKeyDictionary()


def _settings_of(client: Any) -> dict[str, dict[str, str]]:
    """Each table's own insert settings for this client's server, asked once per client (a store
    that cannot be reached is asked again; one that refuses the question is not). Only a setting
    the server has and lets this user change (``readonly``: a settings profile's constraint) is
    sent: any other would fail every insert."""
    try:
        known = _table_settings.get(client)
    except TypeError:  # a client that cannot be weakly referenced: asked each time
        known = None
    if known is None:
        on_insert = os.environ.get(_ON_INSERT_ENV, "").strip().lower() in ("1", "true", "yes", "on")
        try:
            has = not on_insert and bool(
                client.query("SELECT count() FROM system.settings WHERE name = {n:String} AND readonly = 0", {"n": _EXCLUDE_ON_INSERT}).result_rows[0][0])
        except (OSError, OperationalError):  # the store cannot be reached now: asked again at the next insert
            return {}
        except Exception:  # the server refuses the question (system tables kept from this user): as without the setting
            has = False
        known = {table: {_EXCLUDE_ON_INSERT: names} for table, names in _AT_MERGE.items()} if has else {}
        try:
            _table_settings[client] = known
        except TypeError:
            pass
    return known


def insert_blocks(client: Any, token: str, blocks: dict[str, tuple[list[str], bytes]]) -> None:
    """Blocks already in Native format (``{table: (columns, bytes)}``), each table once, with
    ``token`` as its deduplication token."""
    own = _settings_of(client)
    for table, (columns, data) in blocks.items():
        if data:
            client.raw_insert(
                table, columns, data, fmt="Native",
                settings={**_INSERT_SETTINGS, **own.get(table, {}), "insert_deduplication_token": f"{token}:{table}"},
            )
