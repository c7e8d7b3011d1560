"""Hand-built spans for processor tests: shaped exactly as an exporter would receive them."""

from __future__ import annotations

import json
import time
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
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
    scope: str | None = None,
) -> ReadableSpan:
    """A finished span; ``scope`` names the instrumentation that made it (runmeter's: "runmeter.instrumentation")."""
    return ReadableSpan(
        name=name,
        context=ctx(trace_id, span_id),
        parent=ctx(trace_id, parent) if parent is not None else None,
        resource=RESOURCE,
        attributes=dict(attrs or {}),  # a copy: callers share attribute sets
        events=[Event(n, a, timestamp=BASE_NS + start_ms * MS) for n, a in (events or [])],
        kind=kind,
        status=Status(StatusCode.ERROR) if error else Status(StatusCode.UNSET),
        start_time=BASE_NS + start_ms * MS,
        end_time=BASE_NS + (end_ms if end_ms is not None else start_ms + 10) * MS,
        instrumentation_scope=InstrumentationScope(scope) if scope else None,
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


# Attribute sets as other instrumentations emit them (names from each library's source or docs,
# listed in conventions/dialects.yaml); read by the dialect tests and sent to the collector.
OPENLLMETRY_OPENAI_CHAT: dict[str, Any] = {
    "llm.request.type": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.prompt_tokens": 900,
    "gen_ai.usage.completion_tokens": 40,
    "llm.usage.total_tokens": 940,
    "gen_ai.openai.api_base": "https://api.openai.com/v1/",
}
OPENLLMETRY_TOOL: dict[str, Any] = {"traceloop.span.kind": "tool", "traceloop.entity.name": "search", "traceloop.workflow.name": "triage"}
OPENLLMETRY_WORKFLOW: dict[str, Any] = {"traceloop.span.kind": "workflow", "traceloop.entity.name": "triage"}
OPENINFERENCE_LLM: dict[str, Any] = {
    "openinference.span.kind": "LLM",
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.provider": "openai",
    "llm.system": "openai",
    "llm.token_count.prompt": 412,
    "llm.token_count.completion": 27,
    "llm.token_count.total": 439,
    "llm.token_count.prompt_details.cache_read": 256,
    "llm.token_count.completion_details.reasoning": 10,
    "llm.cost.total": 0.0001,
    "input.mime_type": "application/json",
}
# As openinference-instrumentation-openai-agents 2.6 writes a tool span: the call's arguments in
# input.value, the tool's JSON schema (the same for every call) in tool.parameters.
OPENINFERENCE_TOOL: dict[str, Any] = {
    "openinference.span.kind": "TOOL", "tool.name": "read_file", "input.value": '{"path": "a.py"}',
    "input.mime_type": "application/json",
    "tool.parameters": '{"properties": {"path": {"title": "Path", "type": "string"}}, "required": ["path"]}',
}
OPENINFERENCE_AGENT: dict[str, Any] = {"openinference.span.kind": "AGENT", "agent.name": "triager"}
OPENLIT_CHAT: dict[str, Any] = {
    "gen_ai.system": "openai",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": 100,
    "gen_ai.usage.output_tokens": 10,
    "gen_ai.usage.total_tokens": 110,
    "gen_ai.usage.cost": 0.000021,
}
# As the Langfuse Python SDK (v3) writes a generation from its OpenAI integration: the model, and
# OpenAI's usage passed on as it came (langfuse/openai.py _parse_usage), JSON-encoded.
LANGFUSE_OPENAI_GENERATION: dict[str, Any] = {
    "langfuse.observation.type": "generation",
    "langfuse.observation.model.name": "gpt-4o-mini-2024-07-18",
    "langfuse.observation.model.parameters": json.dumps({"temperature": 0, "max_tokens": "Infinity"}),
    "langfuse.observation.usage_details": json.dumps({
        "prompt_tokens": 2000, "completion_tokens": 300, "total_tokens": 2300,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }),
    "langfuse.observation.completion_start_time": json.dumps("2026-11-26T05:00:00.412000+00:00"),
}
# As MLflow Tracing (3.x) writes a chat model span: every value JSON-encoded (mlflow/entities/span.py).
MLFLOW_CHAT: dict[str, Any] = {
    "mlflow.traceRequestId": json.dumps("tr-5f1c"),
    "mlflow.spanType": json.dumps("CHAT_MODEL"),
    "mlflow.spanFunctionName": json.dumps("create"),
    "mlflow.llm.model": json.dumps("gpt-4o-mini"),
    "mlflow.llm.provider": json.dumps("openai"),
    "mlflow.chat.tokenUsage": json.dumps({"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100}),
    "mlflow.message.format": json.dumps("openai"),
}
