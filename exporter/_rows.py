"""Spans, run records and outcome events as ClickHouse column rows.

Timestamps are integer nanoseconds (``DateTime64(9)``); attribute values are
stringified as the OpenTelemetry Collector does (booleans ``true``/``false``,
arrays as JSON). Text that cannot be encoded as UTF-8 (lone surrogates) has
those characters replaced by U+FFFD; every other value round-trips byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from opentelemetry.trace import SpanContext, SpanKind, StatusCode
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from runmeter.conventions import DialectMap
from runmeter.core import IdentityCache
from runmeter.processor import KIND_LLM, KIND_TOOL, OutcomeEvent, PriceBook, RunRecord, attributes_of, facts_of, redact, span_fields

try:  # built unless no C compiler was at hand (setup.py); then the same maps and rows in Python
    from runmeter.exporter._speedups import attr_map as _c_attr_map
    from runmeter.exporter._speedups import row_rules as _c_row_rules
    from runmeter.exporter._speedups import trace_row as _c_trace_row
except ImportError:  # pragma: no cover - make test checks that it is built
    _c_attr_map = _c_row_rules = _c_trace_row = None

__all__ = [
    "CALL_COLUMNS", "MAX_NS", "OUTCOME_COLUMNS", "RUN_COLUMNS", "TRACE_COLUMNS", "Unstorable",
    "call_row", "outcome_row", "run_row", "trace_row",
]

# DateTime64(9) holds signed 64-bit nanoseconds: 1970 (runmeter writes no earlier) to 2262-04-11.
MAX_NS = 2**63 - 1


class Unstorable(ValueError):
    """A value ClickHouse cannot hold. Such a row is refused alone (the caller skips it and says
    why) and never sent: it would fail the whole insert, every time it was retried."""


def _times(start: int, end: int) -> None:
    if not (0 <= start <= MAX_NS and 0 <= end <= MAX_NS):
        raise Unstorable(f"times {start}..{end} ns are outside what DateTime64(9) holds (1970 to 2262)")

TRACE_COLUMNS = [
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind", "ServiceName",
    "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes", "Duration", "StatusCode", "StatusMessage",
    "Events.Timestamp", "Events.Name", "Events.Attributes",
    "Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes",
]
CALL_COLUMNS = [
    "Timestamp", "TraceId", "SpanId", "RunId", "ServiceName", "Kind", "Operation", "Provider", "Model",
    "InputTokens", "OutputTokens", "CacheReadTokens", "CacheWriteTokens", "ReasoningTokens",
    "CostUsd", "Priced", "Estimated", "Duplicate", "CostSource", "ExternalCostUsd",
    "ToolName", "ArgsHash", "Resource", "InputHash", "DurationNs", "Error", "Owner", "Project", "RunName", "TaskId",
]
RUN_COLUMNS = [
    "RunId", "TraceId", "RootSpanId", "Name", "Owner", "Project", "TaskId", "ParentRunId", "ServiceName",
    "StartTime", "EndTime", "Outcome", "OutcomeReason", "CostUsd", "CostByModel", "ExternalCostUsd",
    "InputTokens", "OutputTokens", "CacheReadTokens", "CacheWriteTokens", "ReasoningTokens",
    "LlmCalls", "UnpricedCalls", "EstimatedCalls", "ToolCalls", "ToolCallsTotal", "RepeatedContextReads",
    "LoopSignals.Kind", "LoopSignals.Key", "LoopSignals.Count", "Budget",
    "Breaches.Limit", "Breaches.Value", "Breaches.Threshold", "Breaches.Action",
    "Pricing", "Incomplete", "Implicit", "Spans", "Version",
]
OUTCOME_COLUMNS = ["RunId", "Outcome", "Reason", "Time", "Source"]

_SURROGATES = re.compile("[\ud800-\udfff]")
_KINDS = {
    SpanKind.INTERNAL: "Internal", SpanKind.SERVER: "Server", SpanKind.CLIENT: "Client",
    SpanKind.PRODUCER: "Producer", SpanKind.CONSUMER: "Consumer",
}
_STATUS = {StatusCode.UNSET: "Unset", StatusCode.OK: "Ok", StatusCode.ERROR: "Error"}


def text(value: Any) -> str:
    """A str that encodes as UTF-8."""
    s = value if isinstance(value, str) else str(value)
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", s)


def stringify(value: Any) -> str:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (tuple, list)) or isinstance(value, Sequence):
        # Compact JSON, as the Collector's ClickHouse exporter writes a slice (pcommon's AsString).
        items = [v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for v in value]
        try:
            return orjson.dumps(items).decode()
        except (TypeError, orjson.JSONEncodeError):  # an int past 64 bits, a lone surrogate
            return text(json.dumps(items, ensure_ascii=False, separators=(",", ":")))
    return text(value)


def _texts(*values: Any) -> tuple[str, ...]:
    """``text`` of each value: the common case (all of them ASCII str) checked at once."""
    try:
        if "".join(values).isascii():
            return values
    except TypeError:  # a value that is not a str
        pass
    return tuple(text(v) for v in values)


def attr_map(attrs: Mapping[str, Any] | None) -> dict[str, str]:
    """The attributes as the ``Map(String, String)`` column holds them: ``stringify`` of each
    value, under its key as ``text``. A plain dict (every span's, on the collector's path and for
    spans runmeter copies) is read in C when the extension is built (``_speedups.c``), with the
    same rules and the same result."""
    if type(attrs) is dict and _c_attr_map is not None:
        return _c_attr_map(attrs, text, stringify)
    return _attr_map(attrs)


def _attr_map(attrs: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if not attrs:
        return out
    for k, v in attrs.items():
        # The common case inline (ASCII string keys and values): this runs for every attribute of every span.
        if type(v) is str and v.isascii() and type(k) is str and k.isascii():
            out[k] = v
        else:
            out[text(k)] = stringify(v)
    return out


_SECRET_BEARING = ("exception.message", "exception.stacktrace")


def _event_map(event: Any) -> dict[str, str]:
    """An event's attributes; an exception's text with key-shaped strings removed (a provider's
    401 may quote the request's key back)."""
    out = attr_map(event.attributes)
    for key in _SECRET_BEARING:
        if key in out:
            out[key] = redact(out[key])
    return out


_RESOURCES: IdentityCache[tuple[dict[str, str], str]] = IdentityCache()


def _resource(resource: Any) -> tuple[dict[str, str], str]:
    """A resource's attribute map and service name, stringified once per resource object."""
    cached = _RESOURCES.get(resource)
    if cached is not None:
        return cached
    attrs = resource.attributes if resource is not None else {}
    return _RESOURCES.put(resource, (attr_map(attrs), stringify(attrs.get(SERVICE_NAME, ""))))


# Rows are read, never changed, once built: spans without events or links share these empty
# columns, and the spans of one resource share its map. Fewer objects per row means fewer
# garbage-collector passes over the rows an export holds until they are inserted.
_NO_EVENTS: tuple[list[Any], ...] = ([], [], [])
_NO_LINKS: tuple[list[Any], ...] = ([], [], [], [])


def _status_message(description: Any) -> str:
    """A status message as the column holds it: text, with key-shaped strings removed (a
    provider's error may quote the request's key back)."""
    return redact(text(description or ""))


if _c_row_rules is not None:  # the rules the C rows share with these
    _c_row_rules(
        text, stringify, _resource, tuple(_KINDS.items()), tuple(_STATUS.items()), _NO_EVENTS, _NO_LINKS, SpanContext,
        DEFAULT_TRACE_STATE, _status_message,
    )


def trace_row(span: ReadableSpan) -> list[Any]:
    """The span's ``otel_traces`` row. The common span (no events or links; an SDK ``ReadableSpan``,
    as the collector's and runmeter's copies are) is read in C when the extension is built
    (``_speedups.c``), with the same result; any other here."""
    if _c_trace_row is not None:
        fields = span_fields(span)
        if fields is not None:
            row: list[Any] | None = _c_trace_row(fields)
            if row is not None:
                return row
    return _trace_row(span)


def _trace_row(span: ReadableSpan) -> list[Any]:
    ctx = span.context
    parent = span.parent
    start = span.start_time or 0
    end = span.end_time or start
    _times(start, end)
    resource_map, service = _resource(span.resource)
    scope = span.instrumentation_scope
    events = span.events
    links = span.links
    ev: tuple[list[Any], ...]
    lk: tuple[list[Any], ...]
    if events:
        stamps = [e.timestamp for e in events]
        _times(min(stamps), max(stamps))
        ev = (stamps, [text(e.name) for e in events], [_event_map(e) for e in events])
    else:
        ev = _NO_EVENTS
    if links:
        lk = (
            [f"{x.context.trace_id:032x}" for x in links],
            [f"{x.context.span_id:016x}" for x in links],
            [x.context.trace_state.to_header() if x.context.trace_state else "" for x in links],
            [attr_map(x.attributes) for x in links],
        )
    else:
        lk = _NO_LINKS
    return [
        start,
        f"{ctx.trace_id:032x}" if ctx else "",
        f"{ctx.span_id:016x}" if ctx else "",
        f"{parent.span_id:016x}" if parent else "",
        ctx.trace_state.to_header() if ctx and ctx.trace_state else "",
        text(span.name),
        _KINDS.get(span.kind, "Unspecified"),
        service,
        resource_map,
        text(scope.name) if scope else "",
        text(scope.version or "") if scope else "",
        attr_map(attributes_of(span)),
        max(0, end - start),
        _STATUS.get(span.status.status_code, "Unset"),
        _status_message(span.status.description),
        *ev,
        *lk,
    ]


def call_row(span: ReadableSpan, dialects: DialectMap, prices: PriceBook) -> list[Any] | None:
    """A runmeter_calls row for an LLM call or a tool call; None for other spans."""
    facts = facts_of(span, dialects, prices)
    if facts.kind not in (KIND_LLM, KIND_TOOL):
        return None
    u = facts.usage
    llm = facts.kind == KIND_LLM
    _times(facts.start_ns, facts.end_ns)
    run_id, service, operation, provider, model, source, tool, args, resource, input_hash, owner, project, name, task = _texts(
        facts.run_id or "", facts.service, facts.operation or "", facts.provider or "", facts.model or "", facts.cost_source,
        facts.tool_name or "" if not llm else "", facts.args_hash or "", facts.resource or "", facts.input_hash or "",
        facts.owner or "", facts.project or "", facts.run_name or "", facts.task_id or "",
    )
    return [
        facts.start_ns,
        f"{facts.trace_id:032x}",
        f"{facts.span_id:016x}",
        run_id,
        service,
        "llm" if llm else "tool",
        operation,
        provider,
        model,
        u.input_tokens if u else 0,
        u.output_tokens if u else 0,
        u.cache_read_tokens if u else 0,
        u.cache_write_tokens if u else 0,
        u.reasoning_tokens if u else 0,
        float(facts.cost) if facts.cost is not None else 0.0,
        1 if facts.cost is not None else 0,
        1 if facts.estimated else 0,
        1 if facts.duplicate else 0,
        source,
        float(facts.external_cost or 0.0),
        tool,
        args,
        resource,
        input_hash,
        max(0, facts.end_ns - facts.start_ns),
        1 if facts.error else 0,
        owner,
        project,
        name,
        task,
    ]


# Version orders the records of one run (runmeter_runs is a ReplacingMergeTree on it): a record
# assembled with the run's root outranks a partial one - the rootless record of spans that came
# after their run was written, or another replica's half of a split trace - whenever either was
# written, so the run keeps its name, owner and outcome; among records alike, the latest wins.
# Write times in ns stay below 2**62 until the year 2116.
_WHOLE_RUN = 1 << 62


def run_row(r: RunRecord, version: int) -> list[Any]:
    """``version``: the write time in ns; a record that is not incomplete is ranked above it."""
    _times(r.start_ns, r.end_ns)
    if not r.incomplete:
        version += _WHOLE_RUN
    budget: dict[str, str] = {}
    if r.budget is not None:
        budget = {k.rsplit(".", 1)[-1]: stringify(v) for k, v in r.budget.to_attributes().items()}
    return [
        text(r.run_id), r.trace_id, r.root_span_id, text(r.name), text(r.owner), text(r.project), text(r.task_id),
        text(r.parent_run_id), text(r.service_name), r.start_ns, r.end_ns, r.outcome, text(r.outcome_reason),
        float(r.cost_usd), {text(k): float(v) for k, v in r.cost_by_model.items()}, float(r.external_cost_usd),
        r.tokens.input, r.tokens.output, r.tokens.cache_read, r.tokens.cache_write, r.tokens.reasoning,
        r.llm_calls, r.unpriced_calls, r.estimated_calls, {text(k): v for k, v in r.tool_calls.items()}, r.tool_calls_total,
        {text(k): v for k, v in r.repeated_context_reads.items()},
        [s.kind for s in r.loop_signals], [text(s.key) for s in r.loop_signals], [s.count for s in r.loop_signals],
        budget,
        [b.limit for b in r.breaches], [float(b.value) for b in r.breaches], [float(b.threshold) for b in r.breaches],
        [b.action for b in r.breaches],
        r.pricing, 1 if r.incomplete else 0, 1 if r.implicit else 0, r.spans, version,
    ]


def outcome_row(e: OutcomeEvent) -> list[Any]:
    return [text(e.run_id), e.outcome, text(e.reason), e.time_ns, text(e.source)]
