"""The shared GenAI core: one place that starts, prices, finishes and fails a model-call span.

A provider module (``openai.py``, ``anthropic.py``) only turns its SDK's request
and response objects into an :class:`Invocation`; everything else — span name
and attributes per the GenAI semantic conventions, pricing, metrics, the content
policy, the run budget check and the ledger — lives here.

Errors: runmeter's own failures are caught in their own ``try`` and never reach
the user's call (``internal_error``); the provider's exceptions are recorded on
the span and re-raised unchanged.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider, get_meter
from opentelemetry.semconv._incubating.attributes.openai_attributes import OPENAI_RESPONSE_SERVICE_TIER
from opentelemetry.semconv._incubating.metrics.gen_ai_metrics import GEN_AI_CLIENT_OPERATION_DURATION, GEN_AI_CLIENT_TOKEN_USAGE
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from runmeter.conventions import attributes as A
from runmeter.conventions import genai as G
from runmeter.conventions import load_dialects
from runmeter.processor import BudgetExceeded, PriceBook, TokenUsage, base_model, current_limits, current_run, redact, short_hash
from runmeter.processor import INSTRUMENTATION_SCOPE, LiveRun, stamp
from runmeter.core import bad_value, internal_error
from runmeter.instrumentation._frameworks import parent_context
from runmeter.instrumentation._tools import Answer, ToolBook

# Where the tier a response was served at is recorded: the upstream attribute where there is one.
_SERVICE_TIER_ATTRIBUTE = {"openai": OPENAI_RESPONSE_SERVICE_TIER}
from runmeter.processor.pricing import UNPRICED_INVALID_USAGE, UNPRICED_NO_USAGE

__all__ = ["CaptureMode", "GenAIHandler", "Invocation", "given", "hash_json", "openai_params", "parse_capture_mode", "request_tool"]

_log = logging.getLogger(__name__)

SCOPE = INSTRUMENTATION_SCOPE  # the processor leaves the ledger to us for spans of this scope
_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
_INFERENCE_DETAILS_EVENT = A.GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS_EVENT
# The parts of a call's usage written on its span when not zero (input and output always are).
_USAGE_PARTS = (
    (G.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, "cache_read_tokens"),
    (G.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, "cache_write_tokens"),
    (A.RUNMETER_COST_CACHE_WRITE_1H_TOKENS, "cache_write_1h_tokens"),
    (A.RUNMETER_COST_WEB_SEARCHES, "web_searches"),
    (A.RUNMETER_COST_FILE_SEARCHES, "file_searches"),
    (G.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, "reasoning_tokens"),
)


class CaptureMode(Enum):
    NO_CONTENT = "NO_CONTENT"
    SPAN_ONLY = "SPAN_ONLY"
    EVENT_ONLY = "EVENT_ONLY"
    SPAN_AND_EVENT = "SPAN_AND_EVENT"

    @property
    def on_span(self) -> bool:
        return self in (CaptureMode.SPAN_ONLY, CaptureMode.SPAN_AND_EVENT)

    @property
    def on_event(self) -> bool:
        return self in (CaptureMode.EVENT_ONLY, CaptureMode.SPAN_AND_EVENT)

    @property
    def any(self) -> bool:
        return self is not CaptureMode.NO_CONTENT


def parse_capture_mode(value: str | None) -> CaptureMode:
    """The official instrumentations' values, case-insensitive; ``true`` is legacy SPAN_ONLY; else NO_CONTENT."""
    if not value:
        return CaptureMode.NO_CONTENT
    v = value.strip().upper()
    if v == "TRUE":
        return CaptureMode.SPAN_ONLY
    try:
        return CaptureMode(v)
    except ValueError:
        _log.warning(
            "runmeter: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=%r is not one of %s (or true); "
            "no content is captured", value, ", ".join(m.value for m in CaptureMode),
        )
        return CaptureMode.NO_CONTENT


def events_allowed(value: str | None) -> bool:
    """``OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT``: unset or true, content events follow the capture
    mode; false turns them off (a mode with events then keeps its span part only)."""
    if value is None or not value.strip():
        return True
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v not in ("false", "0", "no", "off"):
        _log.warning("runmeter: OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT=%r is not true or false; events follow the capture mode", value)
        return True
    return False


def given(value: Any) -> bool:
    """True for an argument the caller passed (the SDKs mark the others NotGiven / Omit)."""
    return value is not None and type(value).__name__ not in ("NotGiven", "Omit")


# The OpenAI chat and Responses request parameters recorded as gen_ai.request.* (LiteLLM takes the same).
_OPENAI_REQUEST_PARAMS = {
    "temperature": G.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": G.GEN_AI_REQUEST_TOP_P,
    "max_tokens": G.GEN_AI_REQUEST_MAX_TOKENS,
    "max_completion_tokens": G.GEN_AI_REQUEST_MAX_TOKENS,
    "max_output_tokens": G.GEN_AI_REQUEST_MAX_TOKENS,
    "frequency_penalty": G.GEN_AI_REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": G.GEN_AI_REQUEST_PRESENCE_PENALTY,
    "seed": G.GEN_AI_REQUEST_SEED,
    "n": G.GEN_AI_REQUEST_CHOICE_COUNT,
}


def openai_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The numeric request parameters and stop sequences of an OpenAI-shaped call's keyword arguments."""
    out: dict[str, Any] = {}
    for key, attr in _OPENAI_REQUEST_PARAMS.items():
        v = kwargs.get(key)
        if v is not None and given(v) and isinstance(v, (int, float)) and not isinstance(v, bool):
            out[attr] = v
    stop = kwargs.get("stop")
    if stop is not None and given(stop):
        out[G.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop] if isinstance(stop, str) else [str(s) for s in stop]
    return out


def hash_json(value: Any) -> str:
    """A short hash of a request's messages or a tool's arguments: the same value built the same
    way gives the same hash, across calls and processes. ``repr`` (a few times faster than JSON on
    the call path) is deterministic for the dicts, lists, strings and models these are made of."""
    return short_hash(repr(value))


@dataclass(slots=True)
class Invocation:
    """One model call, provider-independent, in OpenTelemetry GenAI terms."""

    operation: str
    provider: str
    request_model: str | None
    server_address: str | None = None
    server_port: int | None = None
    params: dict[str, Any] = field(default_factory=dict)  # gen_ai.request.* attribute -> value
    stream: bool = False
    input_hash: str | None = None
    input_messages: list[dict[str, Any]] | None = None  # spec message parts; only kept when capture is on
    system_instructions: list[dict[str, Any]] | None = None
    input_chars: int = 0  # for estimating tokens when a stream reports no usage
    input_source: Any = None  # the request's messages, measured only when an estimate is needed
    # filled from the response
    response_model: str | None = None
    response_id: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    usage: TokenUsage | None = None
    output_text: list[str] = field(default_factory=list)
    output_messages: list[dict[str, Any]] | None = None  # spec message parts; only made when capture is on
    capture: bool = False  # content capture is on: readers build input/output messages
    requested_tools: list[str] = field(default_factory=list)  # name#args_hash
    tool_call_ids: list[tuple[str, str]] = field(default_factory=list)  # (call id, name#args_hash) of requested tools
    answers: list[Answer] = field(default_factory=list)  # tool results the request sends back (see _tools.py)
    service_tier: str | None = None  # as the response reports it: prices differ by tier


@dataclass(slots=True)
class _Call:
    span: Span
    inv: Invocation
    start: float
    owner: str
    project: str
    live: LiveRun | None


class GenAIHandler:
    """Configured once at ``instrument()`` time; shared by every wrapped method."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        prices: PriceBook,
        capture: CaptureMode,
        version: str,
    ) -> None:
        self.tracer = trace.get_tracer(SCOPE, version, tracer_provider=tracer_provider)
        meter = get_meter(SCOPE, version, meter_provider=meter_provider)
        self.token_usage = meter.create_histogram(
            GEN_AI_CLIENT_TOKEN_USAGE, unit="{token}", description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            GEN_AI_CLIENT_OPERATION_DURATION, unit="s", description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.cost = meter.create_counter(A.RUNMETER_CLIENT_COST_METRIC, unit=A.RUNMETER_CLIENT_COST_UNIT, description="Cost of model calls")
        self._attribute_sets: dict[tuple[Any, ...], tuple[dict[str, Any], ...]] = {}
        self.prices = prices
        self.capture = capture
        # Read on every call: plain attributes, not the enum's properties.
        self.capture_any, self.capture_on_span, self.capture_on_event = capture.any, capture.on_span, capture.on_event
        self._dialects = load_dialects()
        self.tools = ToolBook()

    def count_answered_tools(self, inv: Invocation) -> None:
        """One ``execute_tool`` span for each tool result the request sends back that no earlier
        request did: the agent ran that tool. Made before the budget check, so the run's tool
        limits see it. Only inside a span (a run, an agent's, the caller's): a call outside every
        span is a run of its own, and a tool between two such calls belongs to neither."""
        if not inv.answers:
            return
        ctx = parent_context()
        trace_id = trace.get_current_span(ctx).get_span_context().trace_id
        if not trace_id:
            return
        now = time.time_ns()
        for t in self.tools.new(trace_id, inv.answers, _answer_key, now):
            if t.name.startswith(self._dialects.handoff_tool_prefixes):
                continue  # an agent handing over (transfer_to_<agent>), not a tool call
            attrs: dict[str, Any] = {
                G.GEN_AI_OPERATION_NAME: "execute_tool", G.GEN_AI_TOOL_NAME: t.name, G.GEN_AI_TOOL_TYPE: "function",
                A.RUNMETER_TOOL_ARGS_HASH: t.key.rsplit("#", 1)[-1], A.RUNMETER_TOOL_INFERRED: True,
            }
            if t.call_id is not None:
                attrs[G.GEN_AI_TOOL_CALL_ID] = t.call_id
            span = self.tracer.start_span(f"execute_tool {t.name}", context=ctx, kind=SpanKind.INTERNAL, attributes=attrs, start_time=t.start_ns)
            span.end(end_time=now)

    # --- before the call -------------------------------------------------------------------------

    def check_budget(self, inv: Invocation) -> LiveRun | None:
        """Raise BudgetExceeded before the request when the current run's budget, or a spend limit
        (``[limits]``), says stop; the current run."""
        live = current_run()
        limits = current_limits()
        if limits is not None:
            try:
                breaches = limits.check(_limit_keys(live, inv.request_model), live.run_id if live is not None else "")
            except BudgetExceeded as exc:
                if live is not None:
                    live.note_breach(exc.breach)
                raise
            if live is not None:
                for b in breaches:
                    live.note_breach(b)
        if live is None or live.ledger.budget is None:
            return live
        try:
            breaches = live.ledger.check_llm_call(inv.input_hash)
        except BudgetExceeded as exc:
            live.note_breach(exc.breach)
            raise
        for b in breaches:
            live.note_breach(b)
        return live

    def start(self, inv: Invocation, live: LiveRun | None = None) -> _Call:
        model = inv.request_model or ""
        attrs: dict[str, Any] = {
            G.GEN_AI_OPERATION_NAME: inv.operation,
            G.GEN_AI_PROVIDER_NAME: inv.provider,
        }
        if inv.request_model:
            attrs[G.GEN_AI_REQUEST_MODEL] = inv.request_model
        if inv.server_address:
            attrs[G.SERVER_ADDRESS] = inv.server_address
        if inv.server_port:
            attrs[G.SERVER_PORT] = inv.server_port
        attrs.update(inv.params)
        span = self.tracer.start_span(f"{inv.operation} {model}".strip(), context=parent_context(), kind=SpanKind.CLIENT, attributes=attrs)
        owner = project = ""
        if live is not None:
            owner = str(live.stamp.get(A.RUNMETER_RUN_OWNER, ""))
            project = str(live.stamp.get(A.RUNMETER_RUN_PROJECT, ""))
        if self.capture_on_span and inv.input_messages is not None:
            span.set_attribute(G.GEN_AI_INPUT_MESSAGES, json.dumps(inv.input_messages, default=str))
            if inv.system_instructions:
                span.set_attribute(G.GEN_AI_SYSTEM_INSTRUCTIONS, json.dumps(inv.system_instructions, default=str))
        return _Call(span, inv, time.monotonic(), owner, project, live)

    # --- after the call ----------------------------------------------------------------------------

    def finish(self, call: _Call, estimated: bool = False) -> None:
        """Set response attributes, price the call, record metrics, feed the run ledger, end the span."""
        span, inv = call.span, call.inv
        duration = time.monotonic() - call.start
        try:
            attrs: dict[str, Any] = {}
            # Every value in the SDK's stored form (str, int, float, tuple of str): see stamp() below.
            if inv.input_hash:
                attrs[A.RUNMETER_LLM_INPUT_HASH] = inv.input_hash
            if inv.response_model:
                attrs[G.GEN_AI_RESPONSE_MODEL] = str(inv.response_model)
            if inv.response_id:
                attrs[G.GEN_AI_RESPONSE_ID] = str(inv.response_id)
            if inv.finish_reasons:
                attrs[G.GEN_AI_RESPONSE_FINISH_REASONS] = tuple(str(r) for r in inv.finish_reasons if r is not None)
            if inv.requested_tools:
                attrs[A.RUNMETER_TOOL_REQUESTED] = tuple(str(t) for t in inv.requested_tools)
            if inv.service_tier:
                attrs[_SERVICE_TIER_ATTRIBUTE.get(inv.provider, A.RUNMETER_COST_SERVICE_TIER)] = str(inv.service_tier)
            usage = inv.usage
            if usage is None and estimated:
                chars = inv.input_chars or _content_chars(inv.input_source)
                usage = TokenUsage(
                    input_tokens=max(1, chars // 4),
                    output_tokens=max(1, sum(len(t) for t in inv.output_text) // 4),
                )
            cost_usd = None
            problem = usage.problem() if usage is not None else None
            if problem is not None:  # priced from what is left, the call would look cheaper than it was
                bad_value(f"{inv.provider} usage", f"token counts that are not counts ({problem})")
                usage = None
                attrs[A.RUNMETER_COST_UNPRICED] = True
                attrs[A.RUNMETER_COST_UNPRICED_REASON] = UNPRICED_INVALID_USAGE
            elif usage is not None:
                attrs[G.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
                attrs[G.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
                for key, part in _USAGE_PARTS:
                    count = getattr(usage, part)
                    if count:
                        attrs[key] = count
                model = inv.response_model or inv.request_model
                cost = self.prices.price(
                    self._dialects.price_provider(inv.provider), model, usage, duration_s=duration, estimated=estimated,
                    service_tier=inv.service_tier,
                )
                if estimated:
                    attrs[A.RUNMETER_COST_ESTIMATED] = True
                cost_usd = cost.total
                cost.write_attributes(attrs)
            else:
                attrs[A.RUNMETER_COST_UNPRICED] = True
                attrs.setdefault(A.RUNMETER_COST_UNPRICED_REASON, UNPRICED_NO_USAGE)
            if self.capture_any and inv.output_messages is not None:
                out_json = json.dumps(inv.output_messages, default=str)
                if self.capture_on_span:
                    attrs[G.GEN_AI_OUTPUT_MESSAGES] = out_json
                if self.capture_on_event:
                    event: dict[str, Any] = {G.GEN_AI_OUTPUT_MESSAGES: out_json}
                    if inv.input_messages is not None:
                        event[G.GEN_AI_INPUT_MESSAGES] = json.dumps(inv.input_messages, default=str)
                    span.add_event(_INFERENCE_DETAILS_EVENT, event)
            stamp(span, attrs, typed=True)  # values made here, in the SDK's stored form: no per-value cleaning
            trace_id = span.get_span_context().trace_id
            if trace_id:  # where the tools it asked for start (see count_answered_tools)
                self.tools.asked(trace_id, time.time_ns(), inv.tool_call_ids)
            self._metrics(call, usage, cost_usd, duration, None)
            limits = current_limits()
            if limits is not None and cost_usd is not None:
                limits.record(_limit_keys(call.live, inv.response_model or inv.request_model), cost_usd)
            if call.live is not None:
                call.live.note_signals(call.live.ledger.record_llm_call(usage, cost_usd, inv.input_hash))
        except Exception as exc:
            internal_error("instrumentation.finish", exc)
        finally:
            span.end()

    def fail(self, call: _Call, exc: BaseException) -> None:
        """Record the provider's (or the user's) exception; the caller re-raises it."""
        span = call.span
        try:
            error_type = type(exc).__qualname__
            span.set_attribute(G.ERROR_TYPE, error_type)
            if call.inv.input_hash:
                span.set_attribute(A.RUNMETER_LLM_INPUT_HASH, call.inv.input_hash)
            record_error(span, exc)
            self._metrics(call, None, None, time.monotonic() - call.start, error_type)
        except Exception as own:
            internal_error("instrumentation.fail", own)
        finally:
            span.end()

    def _metrics(self, call: _Call, usage: TokenUsage | None, cost: Any, duration: float, error_type: str | None) -> None:
        inv = call.inv
        key = (inv.operation, inv.provider, inv.request_model, inv.response_model, inv.server_address, call.owner, call.project, error_type)
        sets = self._attribute_sets.get(key)
        if sets is None:
            sets = self._attribute_sets[key] = _metric_attributes(key)
            if len(self._attribute_sets) > 1024:
                self._attribute_sets.clear()
        duration_attrs, input_attrs, output_attrs, cost_attrs = sets
        self.duration.record(duration, duration_attrs)
        if error_type:
            return
        if usage is not None:
            self.token_usage.record(usage.input_tokens, input_attrs)
            self.token_usage.record(usage.output_tokens, output_attrs)
        if cost is not None:
            self.cost.add(float(cost), cost_attrs)


def request_tool(inv: Invocation, name: Any, arguments: Any, call_id: Any = None) -> None:
    """Note a tool call the model asked for in its response (its arguments hashed, never kept)."""
    key = f"{name}#{hash_json(arguments)}"
    inv.requested_tools.append(key)
    if isinstance(call_id, str) and call_id:
        inv.tool_call_ids.append((call_id, key))


def _answer_key(a: Answer) -> str:
    return f"{a.name}#{hash_json(a.arguments)}"


def _limit_keys(live: LiveRun | None, model: str | None) -> dict[str, str | None]:
    """What a call is, for the spend limits: its run's owner, project and task, and its model."""
    run = live.stamp if live is not None else {}
    return {
        "owner": run.get(A.RUNMETER_RUN_OWNER), "project": run.get(A.RUNMETER_RUN_PROJECT),
        "task_id": run.get(A.RUNMETER_TASK_ID), "model": base_model(model),
    }


def record_error(span: Span, exc: BaseException) -> None:
    """The exception on the span, as the SDK records it, with key-shaped strings removed from its
    message and stack trace: a provider's 401 may quote the request's key back."""
    text = redact(str(exc))
    span.set_status(Status(StatusCode.ERROR, text[:500]))
    span.record_exception(exc, attributes={
        "exception.message": text,
        "exception.stacktrace": redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))),
    })


def _metric_attributes(key: tuple[Any, ...]) -> tuple[dict[str, Any], ...]:
    """The attribute sets of one call's measurements. Built once per distinct call shape and shared:
    the SDK may keep a set it is given, and nothing changes these after they are made."""
    operation, provider, request_model, response_model, server_address, owner, project, error_type = key
    base: dict[str, Any] = {G.GEN_AI_OPERATION_NAME: operation, G.GEN_AI_PROVIDER_NAME: provider}
    if request_model:
        base[G.GEN_AI_REQUEST_MODEL] = request_model
    if response_model:
        base[G.GEN_AI_RESPONSE_MODEL] = response_model
    if server_address:
        base[G.SERVER_ADDRESS] = server_address
    duration = {**base, G.ERROR_TYPE: error_type} if error_type else base
    return (
        duration,
        {**base, G.GEN_AI_TOKEN_TYPE: "input"},
        {**base, G.GEN_AI_TOKEN_TYPE: "output"},
        {**base, A.RUNMETER_RUN_OWNER: owner, A.RUNMETER_RUN_PROJECT: project},
    )


def _content_chars(messages: Any) -> int:
    """Characters of text in a list of chat messages (the input of a token estimate)."""
    if isinstance(messages, str):
        return len(messages)
    if not isinstance(messages, list):
        return 0
    return sum(len(str(m.get("content") or "")) for m in messages if isinstance(m, dict))


def text_parts(role: str, content: Any) -> dict[str, Any]:
    """A spec message ({role, parts}) from OpenAI/Anthropic content (a string or a list of parts)."""
    parts: list[dict[str, Any]] = []
    if isinstance(content, str):
        parts.append({"type": "text", "content": content})
    elif isinstance(content, Sequence):
        for p in content:
            if isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text"):
                parts.append({"type": "text", "content": p.get("text", "")})
            elif isinstance(p, dict):
                parts.append({"type": str(p.get("type", "unknown"))})
    return {"role": role, "parts": parts}

