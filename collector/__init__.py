"""The runmeter collector: OTLP in from any language and instrumentation, runs out to ClickHouse.

Built so far: :func:`convert`, which turns an OTLP ``ExportTraceServiceRequest`` into
SDK spans span by span — invalid spans rejected with a reason and counted (for
``partial_success``), never costing the valid spans of the same request — with
limits on attributes, value lengths, events and links. The receivers (OTLP gRPC
:4317, HTTP :4318), the write-ahead log and ``runmeter collector`` are not built yet.
"""

from __future__ import annotations

from runmeter.collector._convert import Converted, Limits, MalformedRequest, convert, parse_request

__all__ = ["Converted", "Limits", "MalformedRequest", "convert", "parse_request"]
