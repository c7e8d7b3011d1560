"""ClickHouse storage: schema and migrations, embedded chDB and server backends, the span exporter, the spool.

::

    exporter = ClickHouseSpanExporter("chdb://.runmeter")          # or http(s)://user:pass@host:8123/db
    processor = RunProcessor(BatchSpanProcessor(exporter), sink=exporter.run_sink)

Configuration: ``RUNMETER_CLICKHOUSE_URL`` (default ``chdb://.runmeter``),
``RUNMETER_SPOOL_DIR``, ``RUNMETER_SPOOL_MAX_BYTES``, or ``[storage]`` in
``runmeter.toml``. ``OTEL_TRACES_EXPORTER=clickhouse`` selects the exporter.
The tables, their keys and retention are described in ``exporter/schema/*.sql``.
"""

from __future__ import annotations

from runmeter.exporter._exporter import ClickHouseRunSink, ClickHouseSpanExporter, StoredRows, default_spool_dir, open_writer
from runmeter.exporter._migrations import SchemaOptions, applied_versions, apply_migrations, load_migrations, render
from runmeter.exporter._rows import MAX_NS, OUTCOME_COLUMNS, outcome_row
from runmeter.exporter._spool import Batch, Spool, SpoolFull
from runmeter.exporter._store import Store, StoreError, StoreURL
from runmeter.exporter._native import COLUMN_TYPES_SQL, NativeEncoder, UnknownColumns, block_columns, column_types, native_codec, without_dataframes
from runmeter.exporter._inserts import insert_batch, insert_blocks
from runmeter.exporter._writer import Writer

__all__ = [
    "MAX_NS",
    "OUTCOME_COLUMNS",
    "Batch",
    "COLUMN_TYPES_SQL",
    "NativeEncoder",
    "UnknownColumns",
    "block_columns",
    "column_types",
    "insert_blocks",
    "native_codec",
    "ClickHouseRunSink",
    "ClickHouseSpanExporter",
    "SchemaOptions",
    "Spool",
    "SpoolFull",
    "Store",
    "StoreError",
    "StoreURL",
    "StoredRows",
    "Writer",
    "applied_versions",
    "apply_migrations",
    "default_spool_dir",
    "insert_batch",
    "load_migrations",
    "open_writer",
    "outcome_row",
    "render",
    "without_dataframes",
]
