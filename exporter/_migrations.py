"""Versioned schema migrations: ``schema/NNN_name.sql``, recorded in ``runmeter_schema_migrations``.

Each file is a list of statements with a few template slots, rendered for a
single node or for a cluster:

* ``{{local:T}}`` — the table that stores the rows: ``T``, or ``T_local`` on a cluster;
* ``{{on_cluster}}`` — nothing, or ``ON CLUSTER name``;
* ``{{engine:E}}`` — ``E`` (``MergeTree()``...), or its ``Replicated`` form with
  ``/clickhouse/tables/{shard}/{database}/{table}`` and ``{replica}``;
* ``{{distributed:T:key}}`` — nothing, or ``CREATE TABLE T ... ENGINE = Distributed(...)``
  over ``T_local``, sharded by ``key`` (a hash of the trace id, so a trace's rows stay
  on one shard);
* ``{{dedup_setting}}`` — the table setting that makes ``insert_deduplication_token``
  work (``non_replicated_deduplication_window`` on a single node);
* ``{{traces_ttl_days}}``, ``{{calls_ttl_days}}`` — retention;
* ``{{embedded:STATEMENT}}`` — ``STATEMENT`` on an embedded store (chDB, runmeter's own
  directory), nothing on a server (whose tables may be shared with other writers).

Only trusted values fill the slots: a cluster name must be a plain identifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Migration", "SchemaOptions", "apply_migrations", "applied_versions", "load_migrations", "render"]

SCHEMA_DIR = Path(__file__).with_name("schema")
MIGRATIONS_TABLE = "runmeter_schema_migrations"
_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SLOT = re.compile(r"\{\{([a-z_]+)(?::([^}]*))?\}\}")


@dataclass(frozen=True)
class SchemaOptions:
    cluster: str | None = None
    traces_ttl_days: int = 180
    calls_ttl_days: int = 400
    dedup_window: int = 1000
    embedded: bool = False  # the store is chDB in a directory of runmeter's (set by Store)

    def __post_init__(self) -> None:
        if self.cluster is not None and not _IDENT.match(self.cluster):
            raise ValueError(f"cluster name must be a plain identifier, not {self.cluster!r}")
        for name in ("traces_ttl_days", "calls_ttl_days", "dedup_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str


def load_migrations(directory: Path = SCHEMA_DIR) -> list[Migration]:
    out = []
    for path in sorted(directory.glob("*.sql")):
        m = _FILE.match(path.name)
        if m is None:
            raise ValueError(f"schema file {path.name!r} is not named NNN_name.sql")
        out.append(Migration(int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in out]
    if versions != sorted(set(versions)):
        raise ValueError("schema versions repeat")
    return out


def _engine(spec: str, opts: SchemaOptions) -> str:
    name, _, args = spec.partition("(")
    args = args.rstrip(")")
    if opts.cluster is None:
        return f"{name}({args})"
    path = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
    return f"Replicated{name}({path}{', ' + args if args else ''})"


def render(text: str, opts: SchemaOptions) -> list[str]:
    """The statements of one migration file for these options."""

    def slot(m: re.Match[str]) -> str:
        kind, arg = m.group(1), m.group(2) or ""
        if kind == "local":
            return f"{arg}_local" if opts.cluster else arg
        if kind == "on_cluster":
            return f"ON CLUSTER {opts.cluster}" if opts.cluster else ""
        if kind == "engine":
            return _engine(arg, opts)
        if kind == "distributed":
            if not opts.cluster:
                return ""
            table, _, key = arg.partition(":")
            return (
                f"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER {opts.cluster} AS {table}_local "
                f"ENGINE = Distributed({opts.cluster}, currentDatabase(), {table}_local, {key})"
            )
        if kind == "dedup_setting":
            key = "replicated_deduplication_window" if opts.cluster else "non_replicated_deduplication_window"
            return f"{key} = {opts.dedup_window}"
        if kind == "embedded":
            return arg if opts.embedded else ""
        if kind == "traces_ttl_days":
            return str(opts.traces_ttl_days)
        if kind == "calls_ttl_days":
            return str(opts.calls_ttl_days)
        raise ValueError(f"unknown schema slot {m.group(0)}")

    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    rendered = _SLOT.sub(slot, body)
    return [s.strip() for s in rendered.split(";") if s.strip()]


def applied_versions(client: Any) -> set[int]:
    client.command(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (Version UInt32, Name String, AppliedAt DateTime DEFAULT now()) "
        "ENGINE = MergeTree ORDER BY Version"
    )
    return {int(r[0]) for r in client.query(f"SELECT Version FROM {MIGRATIONS_TABLE}").result_rows}


def apply_migrations(client: Any, opts: SchemaOptions | None = None, upto: int | None = None) -> list[int]:
    """Apply the migrations not yet recorded (up to ``upto``); returns the versions applied."""
    opts = opts or SchemaOptions()
    done = applied_versions(client)
    applied = []
    for m in load_migrations():
        if m.version in done or (upto is not None and m.version > upto):
            continue
        for statement in render(m.text, opts):
            client.command(statement)
        client.insert(MIGRATIONS_TABLE, [[m.version, m.name]], column_names=["Version", "Name"])
        applied.append(m.version)
    return applied
