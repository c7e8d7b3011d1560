"""Hand-built spans for processor tests: shaped exactly as an exporter would receive them."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

RESOURCE = Resource.create({"service.name": "agent-svc"})
MS = 1_000_000
# Span times are offsets from an hour ago (stores apply retention TTLs: 1970 would be dropped on insert).
BASE_NS = (int(time.time()) - 3600) * 1_000_000_000


def ctx(trace_id: int, span_id: int, remote: bool = False) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def make_span(
    name: str,
    span_id: int,
    parent: int | None = None,
    *,
    trace_id: int = 0xABC,
    start_ms: int = 0,
    end_ms: int | None = None,
    attrs: dict[str, Any] | None = None,
    events: list[tuple[str, dict[str, Any]]] | None = None,
    error: bool = False,
    kind: SpanKind = SpanKind.INTERNAL,
) -> ReadableSpan:
    return ReadableSpan(
        name=name,
        context=ctx(trace_id, span_id),
        parent=ctx(trace_id, parent) if parent is not None else None,
        resource=RESOURCE,
        attributes=attrs or {},
        events=[Event(n, a, timestamp=BASE_NS + start_ms * MS) for n, a in (events or [])],
        kind=kind,
        status=Status(StatusCode.ERROR) if error else Status(StatusCode.UNSET),
        start_time=BASE_NS + start_ms * MS,
        end_time=BASE_NS + (end_ms if end_ms is not None else start_ms + 10) * MS,
    )


def run_root(name: str, span_id: int, parent: int | None = None, **kw: Any) -> ReadableSpan:
    attrs = {"gen_ai.operation.name": "invoke_agent", "runmeter.run.root": True, "runmeter.run.name": name}
    attrs.update(kw.pop("attrs", {}))
    return make_span(f"invoke_agent {name}", span_id, parent, attrs=attrs, **kw)


def llm(span_id: int, parent: int | None, model: str, inp: int, out: int, *, provider: str = "openai", cached: int = 0, extra: dict[str, Any] | None = None, **kw: Any) -> ReadableSpan:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": inp,
        "gen_ai.usage.output_tokens": out,
    }
    if cached:
        attrs["gen_ai.usage.cache_read.input_tokens"] = cached
    attrs.update(extra or {})
    return make_span(f"chat {model}", span_id, parent, attrs=attrs, kind=SpanKind.CLIENT, **kw)


def tool(span_id: int, parent: int | None, name: str, *, args_hash: str | None = None, resource: str | None = None, **kw: Any) -> ReadableSpan:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
    if args_hash is not None:
        attrs["runmeter.tool.args_hash"] = args_hash
    if resource is not None:
        attrs["runmeter.tool.resource"] = resource
    return make_span(f"execute_tool {name}", span_id, parent, attrs=attrs, **kw)
