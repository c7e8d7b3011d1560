"""What one finished span says, read once: :class:`SpanFacts`, and the attributes to add.

Reading goes through the dialect map, so spans from any instrumentation give
the same facts. Pricing happens here too: a span with tokens but no runmeter
cost is priced with the PriceBook; a span that already has a runmeter cost
keeps it; another tool's cost is kept apart as ``runmeter.cost.external_usd``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from runmeter.conventions import LLM_OPERATIONS, MAX_CALL_USD, DialectMap, GenAIFields
from runmeter.conventions import attributes as A
from runmeter.processor._budget import Breach, Budget
from runmeter.processor._live import INSTRUMENTATION_SCOPE
from runmeter.processor._sdk import attributes_of, known_facts, remember_facts, span_fields, stamp
from runmeter.core import IdentityCache, bad_value
from runmeter.processor.pricing import (
    UNPRICED_INVALID_USAGE, UNPRICED_NO_PRICE, UNPRICED_NO_USAGE, PriceBook, TokenUsage, write_cost_attributes,
)

__all__ = [
    "KIND_AGENT", "KIND_LLM", "KIND_OTHER", "KIND_TOOL", "SpanFacts", "facts_of", "mark_duplicate", "read_span", "remember", "short_hash",
]

KIND_OTHER, KIND_LLM, KIND_TOOL, KIND_AGENT = 0, 1, 2, 3
_TOOL_SPAN_PREFIX = "execute_tool "
_SERVICE_NAME = "service.name"


def short_hash(data: str | bytes) -> str:
    """A 16-hex-digit BLAKE2b digest: enough to tell repeats apart, and reveals nothing."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=8).hexdigest()


@dataclass(slots=True)
class SpanFacts:
    trace_id: int
    span_id: int
    parent_id: int | None
    name: str
    start_ns: int
    end_ns: int
    error: bool
    service: str
    kind: int
    operation: str | None = None
    provider: str | None = None
    model: str | None = None
    usage: TokenUsage | None = None
    cost: Decimal | None = None
    cost_source: str = ""
    estimated: bool = False
    external_cost: float | None = None
    tool_name: str | None = None
    args_hash: str | None = None
    resource: str | None = None
    input_hash: str | None = None
    explicit_root: bool = False
    run_id: str | None = None
    run_name: str | None = None
    owner: str | None = None
    project: str | None = None
    task_id: str | None = None
    outcome: str | None = None
    outcome_reason: str | None = None
    agent_name: str | None = None
    budget: Budget | None = None
    breaches: tuple[Breach, ...] = ()
    duplicate: bool = False
    implicit_run: bool = False  # run_id names the implicit run of its trace's top span, not a run made elsewhere
    response_id: str | None = None  # the provider's id of an LLM call's response
    ours: bool = False  # made by runmeter's own instrumentation
    inferred: bool = False  # a tool call runmeter told from its result going back to the model

    @property
    def unpriced(self) -> bool:
        return self.kind == KIND_LLM and self.cost is None and not self.duplicate


_RUNMETER_STRINGS = {
    A.RUNMETER_RUN_ID: "run_id",
    A.RUNMETER_RUN_NAME: "run_name",
    A.RUNMETER_RUN_OWNER: "owner",
    A.RUNMETER_RUN_PROJECT: "project",
    A.RUNMETER_TASK_ID: "task_id",
    A.RUNMETER_RUN_OUTCOME: "outcome",
    A.RUNMETER_RUN_OUTCOME_REASON: "outcome_reason",
    A.RUNMETER_TOOL_RESOURCE: "resource",
    A.RUNMETER_LLM_INPUT_HASH: "input_hash",
    A.RUNMETER_TOOL_ARGS_HASH: "args_hash",
}


# runmeter's own flags, read in the dialect map's pass (True when the attribute is True).
_RUNMETER_FLAGS = {
    A.RUNMETER_RUN_ROOT: "explicit_root",
    A.RUNMETER_COST_ESTIMATED: "estimated",
    A.RUNMETER_COST_DUPLICATE: "duplicate",
    A.RUNMETER_RUN_IMPLICIT: "implicit_run",
    A.RUNMETER_TOOL_INFERRED: "inferred",  # a tool span's only (see read_span)
}


def _str(attrs: Mapping[str, Any], key: str) -> str | None:
    v = attrs.get(key)
    return v if isinstance(v, str) and v else None


def _usage(f: GenAIFields) -> TokenUsage:
    inp = f.input_tokens or 0
    out = f.output_tokens or 0
    read = f.cache_read_tokens or 0
    write = f.cache_write_tokens or 0
    reasoning = f.reasoning_tokens or 0
    if read + write > inp:
        inp += read + write  # reported Anthropic-style, cache apart from input
    if reasoning > out:
        out += reasoning  # reasoning reported apart from output
    return TokenUsage(inp, out, read, write, reasoning, f.cache_write_1h_tokens or 0, f.web_searches or 0, f.file_searches or 0)


_MAX_COST = Decimal(repr(MAX_CALL_USD))


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() and 0 <= d <= _MAX_COST else None  # past the bound: not a cost (priced from usage instead)


_SERVICES: IdentityCache[str] = IdentityCache()  # resource -> its service.name


def _service_of(resource: Any) -> str:
    """The resource's ``service.name``, read once per resource (there are few, and lookups take a lock)."""
    if resource is None:
        return ""
    known = _SERVICES.get(resource)
    if known is not None:
        return known
    return _SERVICES.put(resource, str(resource.attributes.get(_SERVICE_NAME, "")))


# The spans read one after another mostly share their resource and scope (a request's, a process's):
# the last pair's service name and whether the scope is runmeter's own, kept in one tuple (replaced
# whole, so a thread reads a consistent one; it holds the two objects, so their ids are not reused).
_last_origin: tuple[Any, Any, str, bool] = (None, None, "", False)


def _origin(resource: Any, scope: Any) -> tuple[Any, Any, str, bool]:
    global _last_origin
    _last_origin = (resource, scope, _service_of(resource), scope is not None and scope.name == INSTRUMENTATION_SCOPE)
    return _last_origin


# A duplicate span (an SDK's own span under an instrumentation's, one call seen twice) carries no
# cost of its own, so a sum over spans in any tool counts the call once. None removes an attribute
# from the span's copy (see ``RunProcessor._copy``).
_PRICE_ATTRIBUTES = (
    A.RUNMETER_COST_USD, A.RUNMETER_COST_SOURCE, A.RUNMETER_COST_ESTIMATED,
    A.GEN_AI_USAGE_COST_AMOUNT, A.GEN_AI_USAGE_COST_CURRENCY, A.GEN_AI_USAGE_COST_SOURCE,
)
_COST_ATTRIBUTES = (*_PRICE_ATTRIBUTES, A.RUNMETER_COST_UNPRICED, A.RUNMETER_COST_UNPRICED_REASON)


def mark_duplicate(facts: SpanFacts, added: dict[str, Any]) -> None:
    """Flag ``facts``' span as a duplicate of a counted call: its cost attributes go, its facts lose the cost."""
    facts.duplicate = True
    facts.cost = None
    facts.cost_source = ""
    facts.estimated = False
    for key in _COST_ATTRIBUTES:
        added[key] = None
    added[A.RUNMETER_COST_DUPLICATE] = True


def same_call(a: SpanFacts, b: SpanFacts) -> bool:
    """Two LLM spans of two instrumentations (one runmeter's, one not) that saw one call: the same
    parent, overlapping in time, the same input and output token counts. OpenInference's LangChain
    span and the client's own span are siblings like this and carry no shared response id."""
    return (
        a.ours != b.ours and a.parent_id == b.parent_id and a.usage is not None and b.usage is not None
        and a.usage.input_tokens == b.usage.input_tokens and a.usage.output_tokens == b.usage.output_tokens
        and a.start_ns <= b.end_ns and b.start_ns <= a.end_ns
    )


def remember(span: ReadableSpan, facts: SpanFacts) -> None:
    """Keep the facts the RunProcessor read with the span it forwards, so the exporter does not read
    (and price) the span twice."""
    remember_facts(span, facts)


def facts_of(span: ReadableSpan, dialects: DialectMap, prices: PriceBook) -> SpanFacts:
    """The span's facts: remembered by the processor that forwarded it, else read now."""
    known = known_facts(span)
    return known if isinstance(known, SpanFacts) else read_span(span, dialects, prices)[0]


def read_span(span: ReadableSpan, dialects: DialectMap, prices: PriceBook) -> tuple[SpanFacts, dict[str, Any]]:
    """The span's facts, and the attributes runmeter adds to its copy (empty if none)."""
    if not getattr(dialects, "_reads_runmeter", False):
        dialects.read_also(_RUNMETER_STRINGS, _RUNMETER_FLAGS)
        dialects._reads_runmeter = True  # type: ignore[attr-defined]
    attrs = attributes_of(span)
    own = span_fields(span)
    if own is not None:  # the SDK's own ReadableSpan (the collector's): its fields, not a property call each
        ctx, parent, name, start_time, end_time = own["_context"], own["_parent"], own["_name"], own["_start_time"], own["_end_time"]
        status, resource, events, scope = own["_status"], own["_resource"], own["_events"], own["_instrumentation_scope"]
    else:
        ctx, parent, name, start_time, end_time = span.context, span.parent, span.name, span.start_time, span.end_time
        status, resource, events, scope = span.status, span.resource, span.events, span.instrumentation_scope
    fields = dialects.read(attrs)
    op = fields.operation
    if op is None and name.startswith(_TOOL_SPAN_PREFIX) and not fields.has_tokens:
        op = fields.operation = "execute_tool"  # util-genai's tool spans name the operation only here
    if op in LLM_OPERATIONS:
        kind = KIND_LLM
    elif op == "execute_tool" and name.startswith(dialects.handoff_span_prefixes):
        kind = KIND_OTHER  # an agent handing over to another agent, not a tool call
    elif op == "execute_tool":
        kind = KIND_TOOL
    elif op == "invoke_agent":
        kind = KIND_AGENT
    else:
        kind = KIND_OTHER
    start = start_time or 0
    origin = _last_origin
    if origin[0] is not resource or origin[1] is not scope:
        origin = _origin(resource, scope)
    facts = SpanFacts(
        ctx.trace_id if ctx is not None else 0,
        ctx.span_id if ctx is not None else 0,
        parent.span_id if parent is not None else None,
        name,
        start,
        end_time or start,
        status.status_code is StatusCode.ERROR,
        origin[2],
        kind,
        op,
        fields.provider,
        fields.model,
    )
    # The rarer facts only when present: most spans have none of them.
    if fields.external_cost_usd is not None:
        facts.external_cost = fields.external_cost_usd
    if fields.tool_name is not None:
        facts.tool_name = fields.tool_name
    if fields.agent_name is not None:
        facts.agent_name = fields.agent_name
    if fields.own:  # runmeter's own string attributes and flags, collected in the same pass
        for slot, value in fields.own.items():
            setattr(facts, slot, value)
        if facts.inferred and kind != KIND_TOOL:
            facts.inferred = False  # only a tool call is inferred
    if facts.explicit_root or kind == KIND_AGENT:
        # Budgets and their breaches are recorded on the run's root span.
        facts.budget = Budget.from_attributes(attrs)
    if facts.budget is not None and events:
        breaches = []
        for ev in events:
            if ev.name == A.RUNMETER_BUDGET_EXCEEDED_EVENT and ev.attributes:
                b = Breach.from_attributes(ev.attributes)
                if b is not None:
                    breaches.append(b)
        facts.breaches = tuple(breaches)
    if kind == KIND_TOOL and facts.args_hash is None and fields.tool_arguments is not None:
        facts.args_hash = short_hash(dialects.tool_arguments(fields.tool_arguments))
    if kind == KIND_TOOL and facts.tool_name is None:
        facts.tool_name = name[len(_TOOL_SPAN_PREFIX):] or name if name.startswith(_TOOL_SPAN_PREFIX) else name

    if origin[3]:
        facts.ours = True
    added: dict[str, Any] = {}
    if kind != KIND_LLM:
        return facts, added
    if fields.response_id is not None:
        facts.response_id = fields.response_id
    if fields.has_tokens:
        facts.usage = _usage(fields)
    if facts.duplicate:
        return facts, added  # counted in another span: no cost of its own
    if fields.invalid_usage is not None:
        # Priced from the counts that are left, the call would look cheaper than it was.
        bad_value("span usage", f"a token count that is not a count ({fields.invalid_usage}) on {name!r}")
        facts.usage = None
        if attrs.get(A.RUNMETER_COST_UNPRICED) is not True:
            added[A.RUNMETER_COST_UNPRICED] = True
            added[A.RUNMETER_COST_UNPRICED_REASON] = UNPRICED_INVALID_USAGE
        if A.RUNMETER_COST_USD in attrs:  # another pass priced it from the same bad counts
            for key in _PRICE_ATTRIBUTES:
                added[key] = None
        return facts, added
    raw_cost = attrs.get(A.RUNMETER_COST_USD)
    own = _decimal(raw_cost) if raw_cost is not None else None
    if own is not None:
        facts.cost = own
        facts.cost_source = _str(attrs, A.RUNMETER_COST_SOURCE) or ""
    elif facts.usage is not None and attrs.get(A.RUNMETER_COST_UNPRICED) is not True:
        duration_s = max(0, facts.end_ns - facts.start_ns) / 1e9
        try:
            parts = prices.price_parts(
                dialects.price_provider(fields.provider), fields.model, facts.usage, at_ns=start or None, duration_s=duration_s,
                service_tier=fields.service_tier,
            )
        except ValueError:
            parts = None
            reason = UNPRICED_INVALID_USAGE
        else:
            reason = UNPRICED_NO_PRICE
        if parts is not None:
            total, _, _, source, _, provider_id = parts
            facts.cost = total
            facts.cost_source = source
            write_cost_attributes(added, total, source)
            if facts.provider is None and provider_id:
                # A span that names no provider (Langfuse, MLflow, Strands Agents): the one whose
                # price list has the model, so spend by provider has it.
                facts.provider = dialects.otel_provider(provider_id)
        else:
            added[A.RUNMETER_COST_UNPRICED] = True
            added[A.RUNMETER_COST_UNPRICED_REASON] = reason
    elif facts.usage is None and attrs.get(A.RUNMETER_COST_UNPRICED) is not True:
        added[A.RUNMETER_COST_UNPRICED] = True
        added[A.RUNMETER_COST_UNPRICED_REASON] = UNPRICED_NO_USAGE
    if facts.external_cost is not None and A.RUNMETER_COST_EXTERNAL_USD not in attrs:
        added[A.RUNMETER_COST_EXTERNAL_USD] = facts.external_cost
    return facts, added
