"""``runmeter.outcome()``: an outcome that arrives after the run, from code (a review bot, a webhook)."""

from __future__ import annotations

import time

from runmeter.config import load_settings
from runmeter.conventions import check_outcome
from runmeter.exporter import open_writer
from runmeter.exporter import ClickHouseRunSink
from runmeter.processor import OutcomeEvent

def outcome(run_id: str, value: str, reason: str = "", *, store: str | None = None) -> OutcomeEvent:
    """Record ``value`` (accepted, rejected, abandoned, failed) for a run; the latest outcome wins.

    The event is written durably to the store's spool at once and reaches ClickHouse with the
    process's other batches (``store`` overrides ``RUNMETER_CLICKHOUSE_URL`` / ``runmeter.toml``).
    """
    check_outcome(value)
    if not isinstance(run_id, str) or not run_id:
        raise ValueError("run_id must be a non-empty string")
    settings = load_settings()
    writer = open_writer(store or settings.storage.clickhouse_url, settings.storage.spool_dir, settings.storage.spool_max_bytes)
    event = OutcomeEvent(run_id, value, str(reason), time.time_ns(), "api")
    ClickHouseRunSink(writer).write_outcomes([event])
    return event
