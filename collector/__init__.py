"""The runmeter collector: OTLP in from any language and instrumentation, runs out to ClickHouse.

``runmeter collector`` listens for OTLP/gRPC (:4317) and OTLP/HTTP (:4318),
writes each request to a write-ahead log before acknowledging it, and sends
the spans through the same :class:`~runmeter.processor.RunProcessor` (remote
completion rules) into the same ClickHouse exporter an agent process uses.
See ``collector/_service.py`` for the pipeline and README.md for operation.

Names are loaded on first use, so ``runmeter.config`` can read the collector's
settings without importing protobuf, gRPC or aiohttp into every agent.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Collector",
    "CollectorServer",
    "CollectorSettings",
    "Converted",
    "Limits",
    "MalformedRequest",
    "Refused",
    "TokenAuth",
    "JsonFormatter",
    "Ownership",
    "StoreIds",
    "WriteAheadLog",
    "check",
    "convert",
    "map_large_blocks_apart",
    "parse_json_request",
    "parse_request",
    "read_request",
]

_WHERE = {
    "Collector": "_service",
    "Refused": "_service",
    "map_large_blocks_apart": "_service",
    "CollectorServer": "_server",
    "JsonFormatter": "_server",
    "Ownership": "_ownership",
    "StoreIds": "_ownership",
    "CollectorSettings": "_options",
    "TokenAuth": "_auth",
    "WriteAheadLog": "_wal",
    "Converted": "_convert",
    "Limits": "_convert",
    "MalformedRequest": "_convert",
    "check": "_convert",
    "convert": "_convert",
    "parse_json_request": "_convert",
    "parse_request": "_convert",
    "read_request": "_convert",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
