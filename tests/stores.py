"""Store fixtures: embedded chDB in a temp dir, and the same engine behind ClickHouse's HTTP interface.

Set RUNMETER_TEST_CLICKHOUSE_URL=http://user:pass@host:8123/db to run the same tests against a
real ClickHouse server too (see docs/storage.md, "Testing against a real ClickHouse server").
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chhttp import ClickHouseHTTP

KINDS = ["chdb", "http"] + (["server"] if os.environ.get("RUNMETER_TEST_CLICKHOUSE_URL") else [])


@dataclass
class StoreRig:
    kind: str
    url: str
    spool: Path
    http: ClickHouseHTTP | None = None


@pytest.fixture(params=KINDS)
def store_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreRig]:
    kind = request.param
    if kind == "chdb":
        yield StoreRig(kind, f"chdb://{tmp_path / 'store'}", tmp_path / "spool")
    elif kind == "http":
        srv = ClickHouseHTTP(str(tmp_path / "engine")).up()
        yield StoreRig(kind, srv.url, tmp_path / "spool", srv)
        srv.close()
    else:
        url = os.environ["RUNMETER_TEST_CLICKHOUSE_URL"]
        from runmeter.exporter import Store

        store = Store(url)
        with store.session() as c:  # a clean database for each test
            for t in ("otel_traces", "otel_traces_trace_id_ts", "runmeter_calls", "runmeter_runs", "runmeter_outcomes"):
                c.command(f"TRUNCATE TABLE IF EXISTS {t}")
        yield StoreRig(kind, url, tmp_path / "spool")
