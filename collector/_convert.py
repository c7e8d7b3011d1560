"""OTLP trace requests to SDK ``ReadableSpan``s, span by span, with limits.

The collector feeds the RunProcessor and the ClickHouse exporter with the same
span objects an agent process does. Each span is checked on its own: a span
with a wrong-length trace or span id, a missing name or times, is rejected with
a reason and counted, and never costs the valid spans of the same request
(OTLP ``partial_success``). Attribute values longer than the limit are cut,
attributes past the per-span limit are dropped and counted, as the SDK does.
Protobuf itself rejects invalid UTF-8 in string fields when the request is
parsed: such a request is malformed as a whole.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from runmeter.collector._ownership import Span as OwnedSpan
from runmeter.conventions import attributes as A
from runmeter.exporter import MAX_NS
from runmeter.processor import SDK_FIELDS_KNOWN, readable_span, span_context
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

__all__ = [
    "Converted", "Limits", "MalformedRequest", "check", "check_bytes", "convert", "convert_bytes", "owners_bytes", "parse_json_request",
    "parse_request", "read_request",
]

_KINDS: dict[int, SpanKind] = {
    trace_pb2.Span.SPAN_KIND_UNSPECIFIED: SpanKind.INTERNAL,
    trace_pb2.Span.SPAN_KIND_INTERNAL: SpanKind.INTERNAL,
    trace_pb2.Span.SPAN_KIND_SERVER: SpanKind.SERVER,
    trace_pb2.Span.SPAN_KIND_CLIENT: SpanKind.CLIENT,
    trace_pb2.Span.SPAN_KIND_PRODUCER: SpanKind.PRODUCER,
    trace_pb2.Span.SPAN_KIND_CONSUMER: SpanKind.CONSUMER,
}
_STATUS: dict[int, StatusCode] = {
    trace_pb2.Status.STATUS_CODE_UNSET: StatusCode.UNSET,
    trace_pb2.Status.STATUS_CODE_OK: StatusCode.OK,
    trace_pb2.Status.STATUS_CODE_ERROR: StatusCode.ERROR,
}


_ZERO16, _ZERO8 = bytes(16), bytes(8)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
# A status with no message, one shared object per code (a Status is never changed): most spans'.
_STATUSES: dict[int, Status] = {code: Status(status_code) for code, status_code in _STATUS.items()}
_HAS_IS_REMOTE = trace_pb2.SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = trace_pb2.SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


try:  # the receiver's check and the workers' reader in C (collector/_otlpscan.c); built unless no C compiler was at hand
    from runmeter.collector._otlpscan import decode as _decode, owners as _owners, scan as _scan, span_rules as _span_rules, spans as _spans
except ImportError:  # pragma: no cover - protobuf and Python alone, with the same answers
    _scan = _decode = _spans = _owners = None

MAX_ARRAY_ITEMS = 1024  # items of an array attribute kept (the rest dropped, as a long string is cut)


class MalformedRequest(ValueError):
    """The request as a whole cannot be read (bad protobuf, invalid UTF-8 in a string field)."""


@dataclass(frozen=True)
class Limits:
    max_attributes_per_span: int = 256
    max_attribute_value_length: int = 65_536
    max_events_per_span: int = 256
    max_links_per_span: int = 128
    # otel_traces' retention (SchemaOptions.traces_ttl_days): ClickHouse drops an older span on insert,
    # so it is refused up front, in partial_success, rather than acknowledged and lost.
    max_age_days: int = 180


_DEFAULT_LIMITS = Limits()


@dataclass
class Converted:
    spans: list[ReadableSpan] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    dropped_attributes: int = 0
    # What ownership reads of each span, when the check was made on the bytes (owners_bytes).
    owners: list[OwnedSpan] | None = None

    @property
    def error_message(self) -> str:
        """For ``partial_success.error_message``: each reason with its count."""
        return "; ".join(f"{n} span(s): {REASONS[reason]}" for reason, n in sorted(self.reasons.items()))


def parse_request(data: bytes) -> ExportTraceServiceRequest:
    """A protobuf request, strictly: invalid UTF-8 anywhere makes it malformed (see :func:`read_request`)."""
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(data)
    except (DecodeError, UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest(f"not a valid OTLP ExportTraceServiceRequest: {exc}") from None
    return req


def _lenient_request_class() -> Any:
    """ExportTraceServiceRequest with every string field read as bytes: the same wire format, so a
    request with invalid UTF-8 in one span still parses, and each part can be checked on its own."""
    pool = descriptor_pool.DescriptorPool()
    files: list[Any] = []

    def walk(f: Any) -> None:
        for dep in f.dependencies:
            walk(dep)
        if all(x.name != f.name for x in files):
            files.append(f)

    def loosen(messages: Any) -> None:
        for m in messages:
            for fld in m.field:
                if fld.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
                    fld.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            loosen(m.nested_type)

    walk(ExportTraceServiceRequest.DESCRIPTOR.file)
    for f in files:
        proto = descriptor_pb2.FileDescriptorProto()
        f.CopyToProto(proto)
        loosen(proto.message_type)
        pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(ExportTraceServiceRequest.DESCRIPTOR.full_name))


_LenientRequest = _lenient_request_class()


def _valid(strict: Any, part: Any) -> bool:
    try:
        strict.FromString(part.SerializeToString())
        return True
    except (DecodeError, UnicodeDecodeError, ValueError):
        return False


def read_request(data: bytes) -> tuple[ExportTraceServiceRequest, int]:
    """A protobuf request and how many of its spans were dropped for invalid UTF-8.

    Invalid UTF-8 in one span costs that span alone (refused in ``partial_success``): the request
    is read again with strings as bytes, each span (and its resource and scope) is checked on its
    own, and the valid ones are kept. Anything else unreadable is a malformed request.
    """
    try:
        return parse_request(data), 0
    except MalformedRequest:
        lenient = _LenientRequest()
        try:
            lenient.ParseFromString(data)
        except (DecodeError, ValueError) as exc:
            raise MalformedRequest(f"not a valid OTLP ExportTraceServiceRequest: {exc}") from None
    dropped = 0
    for rs in lenient.resource_spans:
        resource_ok = _valid(resource_pb2.Resource, rs.resource)
        for ss in rs.scope_spans:
            scope_ok = resource_ok and _valid(common_pb2.InstrumentationScope, ss.scope)
            bad = [i for i, sp in enumerate(ss.spans) if not (scope_ok and _valid(trace_pb2.Span, sp))]
            for i in reversed(bad):
                del ss.spans[i]
            dropped += len(bad)
        if not resource_ok:  # the resource itself is unreadable: its spans went with it; drop it
            rs.ClearField("resource")
    if not dropped:
        raise MalformedRequest("not a valid OTLP ExportTraceServiceRequest: invalid UTF-8 outside any span")
    return parse_request(lenient.SerializeToString()), dropped


_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping expects base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise MalformedRequest(f"{key} {value[:40]!r} is not hex") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def parse_json_request(data: bytes) -> ExportTraceServiceRequest:
    """An OTLP/JSON request (ids in hex, enums as integers, unknown fields ignored, per the spec)."""
    try:
        return _parse_json_request(data)
    except RecursionError:  # nested deeper than any OTLP message is (json, the id walk or ParseDict)
        raise MalformedRequest("the JSON is nested too deeply for an OTLP request") from None


def _parse_json_request(data: bytes) -> ExportTraceServiceRequest:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequest(f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedRequest("an OTLP/JSON request is a JSON object")
    _hex_ids_to_base64(obj)
    req = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(obj, req, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise MalformedRequest(f"not a valid OTLP/JSON ExportTraceServiceRequest: {exc}") from None
    return req


def _value(v: AnyValue, limit: int) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value[:limit]
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bytes_value":
        return v.bytes_value[:limit].hex()
    if kind == "array_value":
        # An array is bounded like a string: at most MAX_ARRAY_ITEMS items and `limit` characters
        # in all (a 1M-element array would otherwise be stored as one multi-megabyte value).
        scalars: list[Any] = []
        used = 0
        for x in v.array_value.values[:MAX_ARRAY_ITEMS]:
            item = _value(x, limit)
            if not isinstance(item, (str, bool, int, float)):
                continue
            used += len(item) if isinstance(item, str) else 8
            if used > limit:
                break
            scalars.append(item)
        kinds = {type(x) for x in scalars}
        return tuple(scalars) if len(kinds) <= 1 else tuple(str(x) for x in scalars)
    if kind == "kvlist_value":
        return str({kv.key: _value(kv.value, limit) for kv in v.kvlist_value.values})[:limit]
    return None


def _attributes(kvs: Sequence[KeyValue], limits: Limits, out: Converted) -> dict[str, Any]:
    if len(kvs) > limits.max_attributes_per_span:
        out.dropped_attributes += len(kvs) - limits.max_attributes_per_span
        kvs = kvs[: limits.max_attributes_per_span]
    limit = limits.max_attribute_value_length
    attrs: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        kind = v.WhichOneof("value")
        if kind == "string_value":  # the common cases inline: this runs for every attribute of every span
            value: Any = v.string_value
            if len(value) > limit:
                value = value[:limit]
        elif kind == "int_value":
            value = v.int_value
        else:
            value = _value(v, limit)
        if value is not None and kv.key:
            attrs[kv.key] = value
    return attrs


# Why a span is rejected: the code (counted in metrics as error.type) and what the client is told.
REASONS = {
    "bad_trace_id": "trace_id must be 16 bytes, not all zero",
    "bad_span_id": "span_id must be 8 bytes, not all zero",
    "bad_parent_span_id": "parent_span_id must be empty or 8 bytes",
    "empty_name": "name is empty",
    "bad_times": "start/end times missing, end before start, or past 2262 (beyond 64-bit nanoseconds)",
    "project_not_allowed": "the span names a project its token may not send",
    "invalid_utf8": "a string field (name, attribute, event) is not valid UTF-8",
    "too_old": "the span started before the store's retention (older spans are dropped by its TTL)",
    "foreign_project": "the span joins a trace or names a run of another project (a trace and a run belong to their first writer's project)",
}


def _oldest_ns(limits: Limits) -> int:
    return time.time_ns() - limits.max_age_days * 86_400 * 10**9


def _problem(s: trace_pb2.Span, oldest_ns: int) -> str | None:
    """Why the span cannot be stored (a key of REASONS), or None. Each field is read once: every
    read makes a Python object, and this runs for every span before the request is acknowledged."""
    trace_id = s.trace_id
    if len(trace_id) != 16 or trace_id == _ZERO16:
        return "bad_trace_id"
    span_id = s.span_id
    if len(span_id) != 8 or span_id == _ZERO8:
        return "bad_span_id"
    parent = s.parent_span_id
    if parent and len(parent) != 8:
        return "bad_parent_span_id"
    if not s.name:
        return "empty_name"
    start = s.start_time_unix_nano
    end = s.end_time_unix_nano
    if not start or end < start or end > MAX_NS:
        return "bad_times"
    if start < oldest_ns:
        return "too_old"
    return None


def _claimed_project(kvs: Iterable[KeyValue]) -> str | None:
    """The project the attributes name, whatever the value's type (an int 5 names "5"): check and
    convert read it alike, so what the check accepts is what convert stores."""
    for kv in kvs:
        if kv.key == A.RUNMETER_RUN_PROJECT:
            return _project_text(_value(kv.value, 1 << 16))
    return None


def _project_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def check(req: ExportTraceServiceRequest, project: str | None = None, limits: Limits | None = None) -> Converted:
    """The cheap checks :func:`convert` makes, without building spans: what to answer before logging.

    With ``project`` (a token bound to a project), a span whose resource or
    attributes name another project is rejected too.
    """
    out = Converted()
    accepted = 0
    oldest = _oldest_ns(limits or _DEFAULT_LIMITS)
    for rs in req.resource_spans:
        claimed = _claimed_project(rs.resource.attributes) if project is not None else None
        for ss in rs.scope_spans:
            for s in ss.spans:
                problem = _problem(s, oldest)
                if problem is None and project is not None:
                    mine = _claimed_project(s.attributes) or claimed
                    if mine and mine != project:
                        problem = "project_not_allowed"
                if problem is None:
                    accepted += 1
                else:
                    out.rejected += 1
                    out.reasons[problem] += 1
    out.accepted = accepted
    return out


def check_bytes(data: bytes, limits: Limits | None = None) -> Converted | None:
    """What :func:`check` (without a project) says of the request these bytes parse into, read from
    the bytes in C (``_otlpscan``: no Python object per field); None when the request is not an
    ordinary one (invalid UTF-8, an unknown field, a field given twice ...) or the extension was not
    built: then parse it (:func:`read_request`) and :func:`check` it.

    A request this accepts is one protobuf parses, so its bytes can be logged and acknowledged
    as they are.
    """
    if _scan is None:
        return None
    result = _scan(data, _oldest_ns(limits or _DEFAULT_LIMITS))
    if result is None:
        return None
    out = Converted()
    out.accepted, reasons = result
    out.reasons.update(reasons)
    out.rejected = sum(reasons.values())
    return out


def owners_bytes(data: bytes, project: str | None, limits: Limits | None = None) -> Converted | None:
    """:func:`check` (with ``project``) of the request these bytes parse into, with what ownership
    reads of each span (``Converted.owners``, for ``Ownership.decide``: what ``spans_of`` reads of
    the parsed request), both read from the bytes in C; None when the request is not an ordinary
    one, when a span claims a project other than ``project`` (the check's rejection is protobuf's
    and Python's to count), or when the two Python readers of a claim or run id could differ
    (``_otlpscan.owners``): then parse and check it."""
    checked = check_bytes(data, limits)
    if checked is None or _owners is None:
        return None
    spans = _owners(data, A.RUNMETER_RUN_PROJECT, A.RUNMETER_RUN_ID, project)  # on bytes check_bytes accepted
    if spans is None:
        return None
    checked.owners = spans
    return checked


def _span(
    s: trace_pb2.Span, resource: Resource, scope: InstrumentationScope, limits: Limits, out: Converted, project: str | None,
    oldest_ns: int,
) -> ReadableSpan | str:
    problem = _problem(s, oldest_ns)
    if problem is not None:
        return problem
    attributes = _attributes(s.attributes, limits, out)
    events = [  # an event past 2262 is dropped: OTLP times are unsigned, DateTime64(9) is signed
        Event(e.name, _attributes(e.attributes, limits, out), timestamp=e.time_unix_nano)
        for e in list(s.events)[: limits.max_events_per_span]
        if e.time_unix_nano <= MAX_NS
    ] if s.events else []
    links = [
        Link(SpanContext(int.from_bytes(lk.trace_id, "big"), int.from_bytes(lk.span_id, "big"), is_remote=True),
             _attributes(lk.attributes, limits, out))
        for lk in list(s.links)[: limits.max_links_per_span]
        if len(lk.trace_id) == 16 and len(lk.span_id) == 8
    ] if s.links else []
    status = s.status
    parent_id = s.parent_span_id
    return _readable(
        s.name, int.from_bytes(s.trace_id, "big"), int.from_bytes(s.span_id, "big"),
        int.from_bytes(parent_id, "big") if parent_id else 0, s.trace_state, s.flags, s.kind, s.start_time_unix_nano,
        s.end_time_unix_nano, attributes, events, links, status.code, status.message, resource, scope, project,
    )


def _readable(
    name: str, trace_id: int, span_id: int, parent_id: int, trace_state: str, flags: int, kind: int, start: int, end: int,
    attributes: dict[str, Any], events: list[Event], links: list[Link], code: int, message: str,
    resource: Resource, scope: InstrumentationScope, project: str | None,
) -> ReadableSpan | str:
    """The span of fields read (by protobuf or from the bytes), or why its project is refused."""
    if project is not None:
        claimed = _project_text(attributes.get(A.RUNMETER_RUN_PROJECT)) or _project_text(resource.attributes.get(A.RUNMETER_RUN_PROJECT))
        if claimed and claimed != project:
            return "project_not_allowed"
        attributes[A.RUNMETER_RUN_PROJECT] = project
    try:
        state = TraceState.from_header([trace_state]) if trace_state else None
    except ValueError:
        state = None
    ctx = span_context(trace_id, span_id, True, _SAMPLED, state)
    # The parent is remote only when the sender says so (OTLP span flags bits 8 and 9): a remote
    # parent makes the span a local root, which the RunProcessor treats as a trace root.
    remote_parent = bool(flags & _IS_REMOTE) if flags & _HAS_IS_REMOTE else False
    parent = span_context(trace_id, parent_id, remote_parent, _SAMPLED) if parent_id else None
    return readable_span(
        name, ctx, parent, resource, attributes, events, links,
        _KINDS.get(kind, SpanKind.INTERNAL),  # an unknown enum value reads as INTERNAL
        (None if message else _STATUSES.get(code)) or Status(_STATUS.get(code, StatusCode.UNSET), message or None),
        start, end, scope,
    )


def convert(
    req: ExportTraceServiceRequest, limits: Limits | None = None, project: str | None = None, shard: tuple[int, int] | None = None
) -> Converted:
    """The request's valid spans, and the rest counted by reason.

    With ``project`` (the sender's token is bound to it), every span is stamped
    with that project and a span naming another one is rejected, as :func:`check` says.
    With ``shard`` (``(index, count)``, a worker process), only the spans of that shard's traces.
    """
    limits = limits or _DEFAULT_LIMITS
    out = Converted()
    # A day's grace past the check's bound: a span the check accepted (and the client was told so)
    # is never refused here for the time its processing took.
    oldest = _oldest_ns(limits) - 86_400 * 10**9
    for rs in req.resource_spans:
        resource = Resource(_attributes(rs.resource.attributes, limits, out), rs.schema_url or None)
        for ss in rs.scope_spans:
            scope = InstrumentationScope(ss.scope.name, ss.scope.version or None, ss.schema_url or None)
            for s in ss.spans:
                if shard is not None and int.from_bytes(s.trace_id, "big") % shard[1] != shard[0]:
                    continue  # another worker's trace (_pipeline.shard_of)
                result = _span(s, resource, scope, limits, out, project, oldest)
                if isinstance(result, str):
                    out.rejected += 1
                    out.reasons[result] += 1
                else:
                    out.spans.append(result)
    out.accepted = len(out.spans)
    return out


def convert_bytes(
    data: bytes | memoryview, limits: Limits | None = None, project: str | None = None, shard: tuple[int, int] | None = None
) -> Converted | None:
    """:func:`convert` of the request these bytes parse into, read from the bytes in C
    (``_otlpscan.decode``: no protobuf message, no Python object per field read); None when the
    request is not an ordinary one (as :func:`check_bytes` says) or the extension was not built:
    then :func:`parse_request` and :func:`convert` it. ``tests/test_otlpscan.py`` holds the two
    to the same spans."""
    if _decode is None:
        return None
    limits = limits or _DEFAULT_LIMITS
    try:
        decoded = _decode(
            data, _oldest_ns(limits) - 86_400 * 10**9,  # convert's grace past the check's bound
            limits.max_attributes_per_span, limits.max_attribute_value_length, limits.max_events_per_span,
            limits.max_links_per_span, MAX_ARRAY_ITEMS, *(shard or (0, 1)),
        )
    except ValueError:  # pragma: no cover - what the walk accepted, the reader reads: protobuf decides
        return None
    if decoded is None:
        return None
    groups, dropped = decoded
    out = Converted(dropped_attributes=dropped)
    spans = out.spans
    for resource_attributes, resource_schema, scopes in groups:
        resource = Resource(resource_attributes, resource_schema or None)
        for scope_name, scope_version, scope_schema, items in scopes:
            scope = InstrumentationScope(scope_name, scope_version or None, scope_schema or None)
            if _C_SPANS and (project is None or _project_text(resource.attributes.get(A.RUNMETER_RUN_PROJECT)) is None):
                # the common spans made in C (stamped with the project), the rest by _item_span
                reasons = _spans(
                    items, resource, scope, spans, lambda item, r=resource, s=scope: _item_span(item, r, s, project),
                    project, A.RUNMETER_RUN_PROJECT,
                )
            else:
                reasons = []
                for item in items:
                    item = _item_span(item, resource, scope, project)
                    if isinstance(item, str):
                        reasons.append(item)
                    else:
                        spans.append(item)
            out.rejected += len(reasons)
            out.reasons.update(reasons)
    out.accepted = len(spans)
    return out


def _item_span(item: Any, resource: Resource, scope: InstrumentationScope, project: str | None) -> ReadableSpan | str:
    """The span of one of decode's items, or why it is refused (decode's reason, or the project's)."""
    if isinstance(item, str):
        return item
    trace_id, span_id, parent_id, trace_state, name, kind, start, end, flags, attributes, events, links, code, message = item
    return _readable(
        name, trace_id, span_id, parent_id, trace_state, flags, kind, start, end, attributes,
        [Event(n, a, timestamp=t) for n, t, a in events] if events else events,
        [Link(SpanContext(t, sp, is_remote=True), a) for t, sp, a in links] if links else links,
        code, message, resource, scope, project,
    )


# decode's common spans made in C (_otlpscan.spans) as _readable makes them, where the SDK's
# layout was probed (processor.SDK_FIELDS_KNOWN); tests/test_otlpscan.py holds the two alike.
_C_SPANS = _spans is not None and SDK_FIELDS_KNOWN
if _C_SPANS:
    from opentelemetry.trace.span import DEFAULT_TRACE_STATE

    _span_rules(
        ReadableSpan, SpanContext, tuple(_KINDS.get(k, SpanKind.INTERNAL) for k in range(6)), tuple(_STATUSES[c] for c in range(3)), _SAMPLED,
        DEFAULT_TRACE_STATE, _HAS_IS_REMOTE, _IS_REMOTE,
    )
