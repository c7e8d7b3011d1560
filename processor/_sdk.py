"""The few places runmeter reads the OpenTelemetry SDK's internals, and why, in one module.

Per span, runmeter reads all attributes, adds a few, and forwards a copy with more. The SDK's
public API does each with a lock per key, a copy per value and a fresh ``BoundedAttributes``;
measured (``benchmarks/processor_throughput.py``), that is most of the processor's cost. So, where
the SDK's internals are known to be as below, these functions use them; anywhere else - an SDK
version outside ``KNOWN``, a probe that fails at import, or ``RUNMETER_SDK_FAST_PATHS=0`` - they
take the public path, with the same results (``tests/test_sdk_paths.py`` runs both; ``make test``
runs the processor tests on the lowest supported SDK too).

What is read or written, all for ended spans or under the SDK's own lock:
- ``span._attributes`` (``BoundedAttributes``) and its ``_dict``, ``_lock``, ``_immutable``,
  ``maxlen``, ``max_value_len``;
- a forwarded copy is a ``ReadableSpan`` made with ``object.__new__`` and the original's
  ``__dict__`` with ``_attributes`` replaced by a plain dict;
- runmeter's facts of a span ride on the copy it forwards (``_runmeter_facts``), so the exporter
  does not read the span again; without room for them, they are kept in a weak map;
- the collector makes its spans from OTLP with :func:`readable_span` and :func:`span_context`:
  the same objects, without the constructors' defaults and checks (it checked the ids itself).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.version import __version__ as SDK_VERSION
from opentelemetry.trace import SpanContext, SpanKind, Status, TraceFlags, TraceState
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

__all__ = [
    "FAST", "KNOWN", "SDK_VERSION", "add_in_place", "attributes_of", "copy_with", "known_facts", "readable_span", "remember_facts", "span_context", "span_fields",
    "stamp",
]

KNOWN = ((1, 39), (1, 45))  # the SDK minor versions whose internals were read and tested, inclusive
FACTS_SLOT = "_runmeter_facts"
_blank = object.__new__


def _version(text: str) -> tuple[int, int]:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def _probe() -> bool:
    """The internals are where this module expects them, on a real span of this SDK."""
    try:
        bounded = BoundedAttributes(maxlen=4, attributes={"a": 1}, immutable=False, max_value_len=None)
        if not (isinstance(bounded._dict, dict) and hasattr(bounded._lock, "__enter__") and bounded._immutable is False
                and hasattr(bounded, "maxlen") and hasattr(bounded, "max_value_len")):
            return False
        span = ReadableSpan(name="probe", attributes={"a": 1})
        return "_attributes" in span.__dict__ and (span.attributes or {}).get("a") == 1
    except Exception:  # noqa: BLE001 - any surprise means: use the public API
        return False


FAST = (
    os.environ.get("RUNMETER_SDK_FAST_PATHS", "1").strip().lower() not in ("0", "false", "no", "off")
    and KNOWN[0] <= _version(SDK_VERSION) <= KNOWN[1]
    and _probe()
)

_facts_elsewhere: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def attributes_of(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes as a mapping (never changed by the caller).

    Fast: an SDK span keeps them in a ``BoundedAttributes`` (a lock per lookup) behind a mapping
    proxy; its inner dict is read directly, safe for an ended span (immutable) and for single
    dict reads under the GIL, and ~5x faster."""
    if FAST:
        held = getattr(span, "_attributes", None)
        if type(held) is dict:  # a plain dict: a copy runmeter made, or a span constructed with one
            return held
        inner = getattr(held, "_dict", None)
        if isinstance(inner, dict):
            return inner
    return dict(span.attributes or {})


def _clean(value: Any, max_len: int | None) -> bool:
    """True when the SDK would store ``value`` unchanged: a short str, an int, float or bool, or a tuple of short str."""
    t = type(value)
    if t is str:
        return max_len is None or len(value) <= max_len
    if t is int or t is float or t is bool:
        return True
    return t is tuple and all(type(v) is str and (max_len is None or len(v) <= max_len) for v in value)


def stamp(span: Any, values: Mapping[str, Any], *, typed: bool = False) -> None:
    """Add attributes runmeter made (already in the form the SDK stores) to a live span.

    Public path: ``set_attributes``, which cleans and copies each value and takes the lock per
    key. Fast: when the span's ``BoundedAttributes`` has room, one update of its dict under its
    lock. ``typed``: the caller built every value as a str, int, float, bool or tuple of str, so
    only string lengths are checked, and only under a limit."""
    if FAST:
        bounded = getattr(span, "_attributes", None)
        if type(bounded) is BoundedAttributes and not bounded._immutable:  # the SDK's live span
            max_value_len = bounded.max_value_len
            if (typed and max_value_len is None) or all(_clean(v, max_value_len) for v in values.values()):
                with bounded._lock:
                    inner = bounded._dict
                    if bounded.maxlen is None or len(inner) + len(values) <= bounded.maxlen:
                        inner.update(values)
                        return
    span.set_attributes(values)


def copy_with(span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
    """A ``ReadableSpan`` like ``span`` with these attributes (an ended span cannot be changed)."""
    if FAST and type(span) is ReadableSpan:  # the SDK's own: every field as it is, the attributes replaced
        out = _blank(ReadableSpan)
        fields = out.__dict__
        fields.update(span.__dict__)
        fields["_attributes"] = attributes
        fields.pop(FACTS_SLOT, None)  # the original's facts, if any, are remembered again
        return out
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def add_in_place(span: ReadableSpan, added: dict[str, Any]) -> bool:
    """Add ``added`` to the attributes of a span nobody else holds (a None value removes one), when
    they are a plain dict of an SDK ``ReadableSpan`` (as the collector's spans are); False: not done."""
    if FAST and type(span) is ReadableSpan:
        attrs = span.__dict__.get("_attributes")
        if type(attrs) is dict:
            attrs.update(added)
            if None in added.values():
                for key, value in added.items():
                    if value is None:
                        del attrs[key]
            return True
    return False


def remember_facts(span: Any, facts: Any) -> None:
    """Keep ``facts`` with the span runmeter forwards, for the exporter downstream."""
    if FAST:
        try:
            setattr(span, FACTS_SLOT, facts)
            return
        except AttributeError:
            pass
    try:
        _facts_elsewhere[span] = facts
    except TypeError:
        pass  # neither room nor a weak reference: the exporter reads the span again


def known_facts(span: Any) -> Any:
    """The facts remembered with ``span``, or None."""
    if FAST:
        known = getattr(span, FACTS_SLOT, None)
        if known is not None:
            return known
    try:
        return _facts_elsewhere.get(span)
    except TypeError:
        return None


# ReadableSpan.__init__ assigns these and nothing else (SDK 1.39-1.45); the probe below checks it.
_SPAN_FIELDS = frozenset((
    "_name", "_context", "_kind", "_instrumentation_info", "_instrumentation_scope", "_parent", "_start_time", "_end_time",
    "_attributes", "_events", "_links", "_resource", "_status",
))


def _probe_new() -> bool:
    try:
        span = ReadableSpan(name="probe", resource=Resource({}))
        ctx = SpanContext(1, 2, True, TraceFlags(1), None)
        fast = tuple.__new__(SpanContext, (1, 2, True, TraceFlags(1), DEFAULT_TRACE_STATE, True))
        return set(span.__dict__) == _SPAN_FIELDS and fast == ctx and fast.is_valid and fast.span_id == 2
    except Exception:  # noqa: BLE001 - any surprise means: use the public API
        return False


FAST_NEW = FAST and _probe_new()


def span_fields(span: Any) -> dict[str, Any] | None:
    """A ``ReadableSpan``'s own fields (its ``__dict__``: ``_name``, ``_context``, ``_attributes`` ...)
    where the probe above found the SDK's layout; None for any other span (a subclass, another SDK)."""
    if FAST_NEW and type(span) is ReadableSpan:
        return span.__dict__
    return None


def span_context(trace_id: int, span_id: int, is_remote: bool, flags: TraceFlags, state: TraceState | None = None) -> SpanContext:
    """A valid SpanContext (the caller checked that both ids are non-zero and in range)."""
    if FAST_NEW:
        return tuple.__new__(SpanContext, (trace_id, span_id, is_remote, flags, state or DEFAULT_TRACE_STATE, True))
    return SpanContext(trace_id, span_id, is_remote=is_remote, trace_flags=flags, trace_state=state)


def readable_span(
    name: str, context: SpanContext, parent: SpanContext | None, resource: Resource, attributes: dict[str, Any],
    events: list[Any], links: list[Any], kind: SpanKind, status: Status, start_time: int, end_time: int, scope: Any,
) -> ReadableSpan:
    """A ``ReadableSpan`` of these fields, as its constructor makes it."""
    if FAST_NEW:
        out = _blank(ReadableSpan)
        out.__dict__.update(
            _name=name, _context=context, _kind=kind, _instrumentation_info=None, _instrumentation_scope=scope, _parent=parent,
            _start_time=start_time, _end_time=end_time, _attributes=attributes, _events=events, _links=links, _resource=resource,
            _status=status,
        )
        return out
    return ReadableSpan(
        name=name, context=context, parent=parent, resource=resource, attributes=attributes, events=events, links=links,
        kind=kind, status=status, start_time=start_time, end_time=end_time, instrumentation_scope=scope,
    )
