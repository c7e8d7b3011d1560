"""Each dialect read from a span shaped exactly as that library emits it.

The attribute sets are copied from each library's source or docs (named in
conventions/dialects.yaml); numbers are chosen so the price can be checked by hand.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from runmeter.conventions import load_dialects
from runmeter.processor import PriceBook, read_span
from tests.spans import (
    LANGFUSE_OPENAI_GENERATION,
    MLFLOW_CHAT,
    OPENINFERENCE_AGENT,
    OPENINFERENCE_LLM,
    OPENINFERENCE_TOOL,
    OPENLIT_CHAT,
    OPENLLMETRY_OPENAI_CHAT,
    OPENLLMETRY_TOOL,
    OPENLLMETRY_WORKFLOW,
    llm,
    make_span,
    run_root,
)
from tests.test_run_assembly import feed

D = load_dialects()


def test_current_official_openai_v2_span() -> None:
    f = D.read({
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 80,
        "server.address": "api.openai.com",
        "server.port": 443,
    })
    assert (f.dialect, f.operation, f.provider, f.model) == ("otel-genai", "chat", "openai", "gpt-4o-mini-2024-07-18")
    assert (f.input_tokens, f.output_tokens) == (1200, 80)


def test_deprecated_official_names() -> None:
    f = D.read({
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.prompt_tokens": 500,
        "gen_ai.usage.completion_tokens": 25,
    })
    assert (f.dialect, f.operation, f.provider) == ("otel-genai-deprecated", "chat", "openai")
    assert (f.input_tokens, f.output_tokens) == (500, 25)


def test_openllmetry_openai_and_anthropic_and_workflow() -> None:
    chat = D.read(OPENLLMETRY_OPENAI_CHAT)
    assert (chat.dialect, chat.operation, chat.input_tokens, chat.output_tokens) == ("openllmetry", "chat", 900, 40)
    claude = D.read({
        "llm.request.type": "chat",
        "gen_ai.system": "Anthropic",
        "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.usage.input_tokens": 3000,  # OpenLLMetry includes the cache in input
        "gen_ai.usage.output_tokens": 31,
        "gen_ai.usage.cache_read_input_tokens": 2000,
        "gen_ai.usage.cache_creation_input_tokens": 500,
        "llm.usage.total_tokens": 3031,
    })
    assert (claude.provider, claude.cache_read_tokens, claude.cache_write_tokens, claude.input_tokens) == ("anthropic", 2000, 500, 3000)
    # Strands Agents' (and many hand-written spans') name for the cache write, beside the same read name
    strands = D.read({"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-haiku-4-5", "gen_ai.usage.input_tokens": 3000,
                      "gen_ai.usage.output_tokens": 31, "gen_ai.usage.cache_read_input_tokens": 2000,
                      "gen_ai.usage.cache_write_input_tokens": 500})
    assert (strands.cache_read_tokens, strands.cache_write_tokens) == (2000, 500)
    tool = D.read(OPENLLMETRY_TOOL)
    assert (tool.operation, tool.tool_name) == ("execute_tool", "search")
    workflow = D.read(OPENLLMETRY_WORKFLOW)
    assert workflow.operation is None


def test_openinference_llm_tool_agent() -> None:
    f = D.read(OPENINFERENCE_LLM)
    assert (f.dialect, f.operation, f.provider, f.model) == ("openinference", "chat", "openai", "gpt-4o-mini-2024-07-18")
    assert (f.input_tokens, f.output_tokens, f.cache_read_tokens, f.reasoning_tokens) == (412, 27, 256, 10)
    assert f.external_cost_usd == 0.0001
    t = D.read(OPENINFERENCE_TOOL)
    assert (t.operation, t.tool_name, t.tool_arguments) == ("execute_tool", "read_file", '{"path": "a.py"}')
    assert D.read(OPENINFERENCE_AGENT).operation == "invoke_agent"
    assert D.read({"openinference.span.kind": "CHAIN"}).operation is None


def test_pydantic_ai_cache_and_reasoning_details_are_priced() -> None:
    """Pydantic AI (and Logfire) put the cache and the model's details under gen_ai.usage.details.*,
    input including the cache. Claude Sonnet 4.5, 10,000 in of which 8,000 cache reads and 1,000
    cache writes, 500 out: 1,000 x $3/M + 8,000 x $0.30/M + 1,000 x $3.75/M + 500 x $15/M =
    $0.01665 (read as plain input it would be 10,000 x $3/M + 500 x $15/M = $0.0375)."""
    chat = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 10_000,
        "gen_ai.usage.output_tokens": 500,
        "gen_ai.usage.details.cache_read_tokens": 8_000,
        "gen_ai.usage.details.cache_write_tokens": 1_000,
        "operation.cost": 0.01665,
        "model_request_parameters": "{}",
    }
    f = D.read(chat)
    assert (f.input_tokens, f.cache_read_tokens, f.cache_write_tokens, f.external_cost_usd) == (10_000, 8_000, 1_000, 0.01665)
    o1 = D.read({"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "o3",
                 "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 900, "gen_ai.usage.details.reasoning_tokens": 800})
    assert (o1.output_tokens, o1.reasoning_tokens) == (900, 800)
    records, _ = feed([run_root("pydantic", 1, end_ms=100), make_span("chat claude-sonnet-4-5", 2, 1, start_ms=1, attrs=chat)])
    (run,) = records.values()
    assert run.cost_usd == Decimal("0.01665") and run.external_cost_usd == Decimal("0.01665")


def test_a_cache_write_kept_for_an_hour_is_read_and_priced_from_any_span() -> None:
    """runmeter.cost.cache_write_1h_tokens (the 1-hour part of the cache write) on a span from any
    process or language: claude-haiku-4-5, 1,000 fresh x $1/M + 1,000 5-minute writes x $1.25/M +
    2,000 1-hour writes x $2/M + 500 out x $5/M = $0.00875."""
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-haiku-4-5",
             "gen_ai.usage.input_tokens": 4_000, "gen_ai.usage.cache_creation.input_tokens": 3_000,
             "runmeter.cost.cache_write_1h_tokens": 2_000, "gen_ai.usage.output_tokens": 500}
    assert D.read(attrs).cache_write_1h_tokens == 2_000
    records, _ = feed([run_root("cached", 1, end_ms=100), make_span("chat claude-haiku-4-5", 2, 1, start_ms=1, attrs=attrs)])
    (run,) = records.values()
    assert run.cost_usd == Decimal("0.00875")


def test_web_searches_on_a_span_from_any_process_are_priced() -> None:
    """runmeter.cost.web_searches on a span from another process or language: claude-haiku-4-5,
    1,000 in x $1/M + 100 out x $5/M + 3 searches x $0.01 = $0.0315."""
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-haiku-4-5",
             "gen_ai.usage.input_tokens": 1_000, "gen_ai.usage.output_tokens": 100, "runmeter.cost.web_searches": 3}
    assert D.read(attrs).web_searches == 3
    (run,) = feed([run_root("r", 1, end_ms=100), make_span("chat claude-haiku-4-5", 2, 1, start_ms=1, attrs=attrs)])[0].values()
    assert run.cost_usd == Decimal("0.0315")


def test_openlit_cost_is_read_as_external() -> None:
    f = D.read(OPENLIT_CHAT)
    assert (f.dialect, f.operation, f.external_cost_usd) == ("openlit", "chat", 0.000021)


def test_vercel_ai_sdk_v4_and_v5() -> None:
    root = D.read({
        "ai.operationId": "ai.generateText",
        "ai.model.id": "gpt-4o-mini",
        "ai.model.provider": "openai.chat",
        "ai.usage.promptTokens": 300,
        "ai.usage.completionTokens": 30,
    })
    assert root.operation is None  # the outer span sums its steps: not a call
    step = D.read({
        "ai.operationId": "ai.generateText.doGenerate",
        "ai.model.id": "gpt-4o-mini",
        "ai.model.provider": "openai.chat",
        "ai.usage.promptTokens": 300,
        "ai.usage.completionTokens": 30,
        "gen_ai.system": "openai.chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 300,
        "gen_ai.usage.output_tokens": 30,
    })
    assert (step.dialect, step.operation, step.provider, step.input_tokens) == ("vercel-ai", "chat", "openai", 300)
    v5 = D.read({
        "ai.operationId": "ai.streamText.doStream",
        "ai.model.id": "claude-haiku-4-5",
        "ai.model.provider": "anthropic.messages",
        "ai.usage.inputTokens": 200,  # Anthropic-style: without the cache
        "ai.usage.outputTokens": 50,
        "ai.usage.cachedInputTokens": 1000,
        "ai.usage.reasoningTokens": 20,
    })
    assert (v5.provider, v5.input_tokens, v5.cache_read_tokens, v5.reasoning_tokens) == ("anthropic", 1200, 1000, 20)
    call = D.read({"ai.operationId": "ai.toolCall", "ai.toolCall.name": "weather", "ai.toolCall.id": "c1", "ai.toolCall.args": '{"city":"Oslo"}'})
    assert (call.operation, call.tool_name, call.tool_arguments) == ("execute_tool", "weather", '{"city":"Oslo"}')


def test_bad_values_are_ignored_not_fatal() -> None:
    f = D.read({"gen_ai.operation.name": 7, "gen_ai.usage.input_tokens": -5, "gen_ai.usage.output_tokens": "many", "gen_ai.request.model": ""})
    assert (f.operation, f.input_tokens, f.output_tokens, f.model) == (None, None, None, None)
    # Counts no store column can hold (or no real call has) are bad values too; so is a digit
    # that int() cannot read.
    huge = D.read({"gen_ai.usage.input_tokens": 2**70, "gen_ai.usage.output_tokens": "99999999999999999999",
                   "gen_ai.usage.cache_read.input_tokens": 1e30, "gen_ai.usage.reasoning.output_tokens": "\u00b2"})
    assert (huge.input_tokens, huge.output_tokens, huge.cache_read_tokens, huge.reasoning_tokens) == (None, None, None, None)
    assert D.read({"gen_ai.usage.input_tokens": "1200"}).input_tokens == 1200


def test_a_cost_that_is_not_finite_or_past_a_billion_dollars_is_not_read() -> None:
    """Another tool's cost is kept apart and summed per run: NaN, infinity or 1e308 would make
    every sum over it infinite. Such a figure is absent; the next name in rank order is read."""
    for bad in (float("nan"), float("inf"), 1e308, 10**400, "Infinity", "nan", "1e10", -0.5, True):
        assert D.read({"gen_ai.usage.cost": bad}).external_cost_usd is None, bad
    assert D.read({"gen_ai.usage.cost": float("inf"), "llm.cost.total": "0.25"}).external_cost_usd == 0.25
    assert D.read({"llm.cost.total": 1e9}).external_cost_usd == 1e9
    assert D.read({"gen_ai.usage.cost": 3}).external_cost_usd == 3.0


def test_vercel_trace_counts_steps_not_the_sum() -> None:
    # gpt-4o-mini: step 1 (1,000 in, 100 out) = 0.00015 + 0.00006 = 0.00021; step 2 (2,000 in, 50 out) = 0.0003 + 0.00003 = 0.00033
    common = {"ai.model.id": "gpt-4o-mini", "ai.model.provider": "openai.chat"}
    spans = [
        make_span("ai.generateText", 1, attrs={**common, "ai.operationId": "ai.generateText", "ai.usage.promptTokens": 3000, "ai.usage.completionTokens": 150}, end_ms=100),
        make_span("ai.generateText.doGenerate", 2, 1, start_ms=1, kind=SpanKind.CLIENT,
                  attrs={**common, "ai.operationId": "ai.generateText.doGenerate", "ai.usage.promptTokens": 1000, "ai.usage.completionTokens": 100}),
        make_span("ai.toolCall", 3, 1, start_ms=20, attrs={"ai.operationId": "ai.toolCall", "ai.toolCall.name": "weather", "ai.toolCall.args": "{}"}),
        make_span("ai.generateText.doGenerate", 4, 1, start_ms=30, kind=SpanKind.CLIENT,
                  attrs={**common, "ai.operationId": "ai.generateText.doGenerate", "ai.usage.promptTokens": 2000, "ai.usage.completionTokens": 50}),
    ]
    records, _ = feed(spans)
    (r,) = records.values()
    assert r.implicit and r.llm_calls == 2 and r.tool_calls == {"weather": 1}
    assert r.cost_usd == Decimal("0.00054")


def test_anthropic_sdk_span_under_an_instrumentation_span_is_one_call() -> None:
    # Outer: an instrumentation's span (spec names, cache creation included).
    # Inner: the anthropic SDK's own span, as anthropic/_tracing.py writes it.
    # claude-haiku-4-5: 1,000 uncached x $1/M + 4,000 read x $0.10/M + 1,000 write x $1.25/M + 200 out x $5/M
    #                 = 0.001 + 0.0004 + 0.00125 + 0.001 = 0.00365
    outer = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.usage.input_tokens": 6000, "gen_ai.usage.output_tokens": 200,
        "gen_ai.usage.cache_read.input_tokens": 4000, "gen_ai.usage.cache_creation.input_tokens": 1000,
    }
    inner = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.response.model": "claude-haiku-4-5-20251001", "gen_ai.usage.input_tokens": 6000, "gen_ai.usage.output_tokens": 200,
        "gen_ai.usage.cache_read.input_tokens": 4000, "gen_ai.usage.cache_write.input_tokens": 1000,
        "server.address": "api.anthropic.com", "anthropic.message.stop_reason": "end_turn",
    }
    spans = [
        run_root("claude-run", 1, end_ms=100),
        make_span("chat claude-haiku-4-5", 2, 1, start_ms=1, end_ms=50, attrs=outer, kind=SpanKind.CLIENT),
        make_span("anthropic.messages.create", 3, 2, start_ms=2, end_ms=49, attrs=inner, kind=SpanKind.CLIENT),
        make_span("POST", 4, 3, start_ms=3, end_ms=48, kind=SpanKind.CLIENT),
    ]
    records, exported = feed(spans)
    (r,) = records.values()
    assert r.llm_calls == 1
    assert r.cost_usd == Decimal("0.00365")
    assert r.tokens.input == 6000 and r.tokens.cache_write == 1000
    by_id = {s.context.span_id: s for s in exported}
    assert by_id[3].attributes["runmeter.cost.duplicate"] is True
    assert "runmeter.cost.duplicate" not in by_id[2].attributes
    assert len(exported) == 4  # both spans kept


def test_two_instrumentations_of_one_client_count_once_even_without_tokens_outside() -> None:
    spans = [
        run_root("r", 1, end_ms=100),
        make_span("openai.chat", 2, 1, start_ms=1, attrs={"llm.request.type": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini"}),
        make_span("chat gpt-4o-mini", 3, 2, start_ms=2, attrs={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10_000, "gen_ai.usage.output_tokens": 1_000}),
    ]
    records, _ = feed(spans)
    (r,) = records.values()
    assert r.llm_calls == 1 and r.unpriced_calls == 0 and r.cost_usd == Decimal("0.0021")


def test_sequential_calls_in_one_run_are_not_duplicates() -> None:
    spans = [run_root("r", 1, end_ms=100)] + [
        make_span("chat", 10 + i, 1, start_ms=i * 10, attrs={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10_000, "gen_ai.usage.output_tokens": 1_000})
        for i in range(3)
    ]
    records, _ = feed(spans)
    (r,) = records.values()
    assert r.llm_calls == 3 and r.cost_usd == Decimal("0.0063")


def test_spans_with_the_same_attribute_names_are_read_each_with_its_own_values() -> None:
    # The second span has the names of the first (the compiled plan is reused) but a bad value
    # in the best-ranked token name: the next-ranked name that is valid is read instead.
    names = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
    first = D.read(dict(zip(names, ("chat", "openai", "gpt-4o-mini", 10, 11))))
    second = D.read(dict(zip(names, ("embeddings", "anthropic", "claude-haiku-4-5", "lots", 7))))
    assert (first.operation, first.provider, first.model, first.input_tokens) == ("chat", "openai", "gpt-4o-mini", 10)
    assert (second.operation, second.provider, second.model, second.input_tokens) == ("embeddings", "anthropic", "claude-haiku-4-5", 7)


# --- tool spans in each shape, and token counts that are not counts ---------------------------

GPT4O_MINI_100_10 = Decimal("0.000021")  # 100 in x $0.15/M + 10 out x $0.60/M


def _tool_run(tool_span):  # type: ignore[no-untyped-def]
    spans = [run_root("agent", 1, end_ms=100), llm(2, 1, "gpt-4o-mini", 100, 10, start_ms=1), tool_span]
    records, _ = feed(spans)
    (r,) = records.values()
    return r


def test_tool_spans_in_every_shape_are_tool_calls() -> None:
    shapes = {
        # util-genai 0.4: named for the operation, the tool named, no gen_ai.operation.name
        "util-genai": make_span("execute_tool read_file", 3, 1, start_ms=20, attrs={"gen_ai.tool.name": "read_file", "gen_ai.tool.call.id": "c1"}),
        # hand-written: the tool's attribute only, any span name
        "hand-written": make_span("read the file", 3, 1, start_ms=20, attrs={"gen_ai.tool.name": "read_file"}),
        # hand-written: the span name only
        "name-only": make_span("execute_tool read_file", 3, 1, start_ms=20, attrs={}),
        # the current conventions
        "semconv": make_span("execute_tool read_file", 3, 1, start_ms=20, attrs={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "read_file"}),
        "openinference": make_span("read_file", 3, 1, start_ms=20, attrs=OPENINFERENCE_TOOL),
    }
    for shape, span in shapes.items():
        r = _tool_run(span)
        assert r.tool_calls == {"read_file": 1}, shape
        assert r.llm_calls == 1 and r.cost_usd == GPT4O_MINI_100_10, shape


def test_a_span_with_a_tool_name_and_tokens_stays_an_llm_call() -> None:
    f = D.read({"gen_ai.tool.name": "x", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 1})
    assert f.operation == "chat"


def test_openllmetry_older_reasoning_tokens_are_read() -> None:
    f = D.read({**OPENLLMETRY_OPENAI_CHAT, "llm.usage.reasoning_tokens": 30})
    assert f.reasoning_tokens == 30


@pytest.mark.parametrize("bad", [-5, 2**63 - 1, "abc", float("nan"), float("inf"), True, 12.5])
def test_a_token_count_that_is_not_a_count_makes_the_call_unpriced(bad: object) -> None:
    """Priced at output-only cost, the call would look cheaper than it was: unpriced, with the reason."""
    from runmeter.core import bad_value_counts

    before = sum(bad_value_counts().values())
    bad_call = make_span("chat gpt-4o-mini", 3, 1, start_ms=30, kind=SpanKind.CLIENT, attrs={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": bad, "gen_ai.usage.output_tokens": 10})
    spans = [run_root("agent", 1, end_ms=100), llm(2, 1, "gpt-4o-mini", 100, 10, start_ms=1), bad_call]
    records, exported = feed(spans, many_too=False)  # read once: one bad value to count
    (r,) = records.values()
    assert r.llm_calls == 2 and r.unpriced_calls == 1 and r.pricing == "partially_priced"
    assert r.cost_usd == GPT4O_MINI_100_10  # the good call alone
    a = {s.context.span_id: s for s in exported}[3].attributes
    assert a["runmeter.cost.unpriced"] is True and a["runmeter.cost.unpriced_reason"] == "invalid_usage"
    assert "runmeter.cost.usd" not in a and "gen_ai.usage.cost.amount" not in a
    assert sum(bad_value_counts().values()) == before + 1


# --- shapes seen from the real frameworks (openinference/openllmetry versions in constraints-frameworks.txt) ---

def _langchain_tool(span_id: int, parent: int, step: int, start_ms: int) -> Any:
    """OpenLLMetry's LangChain tool span: the arguments wrapped with LangGraph's run metadata."""
    args = json.dumps({"input_str": "{'query': 'add'}", "tags": ["seq:step:1"],
                       "metadata": {"langgraph_step": step, "langgraph_checkpoint_ns": f"tools:{step:08x}"}, "inputs": {"query": "add"}})
    return make_span("execute_tool search", span_id, parent, start_ms=start_ms, attrs={
        "traceloop.span.kind": "tool", "traceloop.entity.name": "search", "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "search", "gen_ai.tool.call.arguments": args})


def test_a_framework_span_beside_the_client_span_is_one_call() -> None:
    """OpenLLMetry's ChatOpenAI.chat span and runmeter's chat span are siblings (not parent and
    child) that carry one response id: one call, counted once, whichever processor assembles it."""
    spans = [make_span("LangGraph", 1, None, end_ms=900, attrs=OPENLLMETRY_WORKFLOW)]
    for i, rid in enumerate(["chatcmpl-a", "chatcmpl-b"]):
        t = 10 + i * 100
        spans.append(make_span("RunnableSequence", 10 + i, 1, start_ms=t, end_ms=t + 60, attrs={"traceloop.span.kind": "task"}))
        spans.append(llm(20 + i, 10 + i, "gpt-4o-mini", 1_000, 20, start_ms=t + 1, end_ms=t + 50,
                         extra={"gen_ai.response.id": rid}))  # the client's call (runmeter's), ends first
        spans.append(llm(30 + i, 10 + i, "gpt-4o-mini", 1_000, 20, start_ms=t, end_ms=t + 55,
                         extra={"gen_ai.response.id": rid, "traceloop.span.kind": "llm"}))  # LangChain's, ends after
    records, _ = feed(spans)
    (record,) = records.values()
    assert record.llm_calls == 2  # not 4
    assert float(record.cost_usd) == pytest.approx(2 * (1_000 * 0.15e-6 + 20 * 0.60e-6), abs=1e-12)  # gpt-4o-mini list price


def test_langgraph_steps_do_not_hide_a_tool_loop() -> None:
    """The same search four times, each at another LangGraph step: identical calls, a loop signal."""
    spans = [make_span("LangGraph", 1, None, end_ms=900, attrs=OPENLLMETRY_WORKFLOW)]
    spans += [_langchain_tool(10 + i, 1, step=2 * i + 2, start_ms=10 + i * 50) for i in range(4)]
    (record,) = feed(spans)[0].values()
    assert [(s.kind, s.count) for s in record.loop_signals] == [("identical_tool_call", 4)]


def test_openinference_tool_arguments_and_handoffs() -> None:
    """OpenInference (Agents SDK): arguments are input.value, not the tool's schema; a handoff is
    not a tool call."""
    root = make_span("Agent workflow", 1, None, end_ms=900, attrs=OPENINFERENCE_AGENT)
    handoff = make_span("handoff to fixer", 2, 1, start_ms=10, attrs={"openinference.span.kind": "TOOL", "input.value": "triage"})
    calls = [make_span("read_file", 10 + i, 1, start_ms=20 + i * 10, attrs={**OPENINFERENCE_TOOL, "input.value": json.dumps({"path": p})})
             for i, p in enumerate(["a.py", "b.py", "c.py"])]
    (record,) = feed([root, handoff, *calls])[0].values()
    assert record.tool_calls == {"read_file": 3}  # the handoff is not one
    assert record.loop_signals == ()  # three different files, one schema: no loop


def test_runmeter_tool_inside_a_framework_tool_span_is_one_call() -> None:
    """As the collector sees it: OpenLLMetry's tool span with runmeter.tool()'s span of the same
    tool inside it is one tool call; a different tool inside it is another call."""
    root = make_span("LangGraph", 1, None, end_ms=900, attrs=OPENLLMETRY_WORKFLOW)
    outer = make_span("execute_tool search", 2, 1, start_ms=10, end_ms=60, attrs={**OPENLLMETRY_TOOL, "gen_ai.tool.name": "search"})
    ours = make_span("execute_tool search", 3, 2, start_ms=20, end_ms=50, scope="runmeter.instrumentation",
                     attrs={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search", "runmeter.tool.args_hash": "q"})
    other = make_span("execute_tool read_file", 4, 2, start_ms=30, end_ms=40, scope="runmeter.instrumentation",
                      attrs={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "read_file"})
    (record,) = feed([root, outer, ours, other])[0].values()
    assert record.tool_calls == {"search": 1, "read_file": 1}


def test_langfuse_openai_generation_is_priced_from_its_usage_details() -> None:
    """Langfuse's OpenAI integration passes OpenAI's usage on as JSON: prompt tokens include the
    cache. gpt-4o-mini: 976 fresh x $0.15/M + 1,024 cached x $0.075/M + 300 out x $0.60/M
    = 0.0001464 + 0.0000768 + 0.00018 = $0.0004032."""
    f = D.read(LANGFUSE_OPENAI_GENERATION)
    assert (f.dialect, f.operation, f.model) == ("langfuse", "chat", "gpt-4o-mini-2024-07-18")
    assert (f.input_tokens, f.output_tokens, f.cache_read_tokens, f.reasoning_tokens) == (2000, 300, 1024, 0)
    records, _ = feed([run_root("lf", 1, end_ms=100), make_span("OpenAI-generation", 2, 1, start_ms=1, attrs=LANGFUSE_OPENAI_GENERATION)])
    (run,) = records.values()
    assert run.llm_calls == 1 and run.unpriced_calls == 0 and run.cost_usd == Decimal("0.0004032")


def test_langfuse_own_usage_keys_count_input_and_output_net_of_their_parts() -> None:
    """Langfuse's LangChain handler moves the cache and reasoning out of input and output
    (input_cache_read, output_reasoning). ChatAnthropic, claude-haiku-4-5: LangChain's 10,000 input
    of which 8,000 cache reads and 1,000 writes, 500 output of which 300 reasoning, arrive as
    input 1,000 + input_cache_read 8,000 + input_cache_creation 1,000, output 200 + output_reasoning 300.
    Price: 1,000 x $1/M + 8,000 x $0.10/M + 1,000 x $1.25/M + 500 x $5/M = $0.00555."""
    usage = {"input": 1000, "input_cache_read": 8000, "input_cache_creation": 1000, "output": 200, "output_reasoning": 300, "total": 10500}
    attrs = {"langfuse.observation.type": "generation", "langfuse.observation.model.name": "claude-haiku-4-5",
             "langfuse.observation.usage_details": json.dumps(usage),
             "langfuse.observation.cost_details": json.dumps({"input": 0.00305, "output": 0.0025})}
    f = D.read(attrs)
    assert (f.input_tokens, f.cache_read_tokens, f.cache_write_tokens) == (10_000, 8_000, 1_000)
    assert (f.output_tokens, f.reasoning_tokens) == (500, 300)
    assert f.external_cost_usd == 0.00555  # Langfuse's own figure, the parts summed as written
    records, _ = feed([run_root("lf", 1, end_ms=100), make_span("ChatAnthropic", 2, 1, start_ms=1, attrs=attrs)])
    (run,) = records.values()
    assert run.cost_usd == Decimal("0.00555") and run.tokens.input == 10_000 and run.tokens.output == 500
    # The keys a user types by hand (Langfuse's docs): input and output alone.
    plain = D.read({**attrs, "langfuse.observation.usage_details": json.dumps({"input": 120, "output": 30, "total": 150})})
    assert (plain.input_tokens, plain.output_tokens, plain.cache_read_tokens) == (120, 30, None)


def test_langfuse_agent_tool_and_generation_observations_make_a_run() -> None:
    """A Langfuse-instrumented agent: an agent observation with a generation and three tool
    observations, two of them the same call (a loop signal from their JSON input)."""
    spans = [
        make_span("support-agent", 1, None, end_ms=900, attrs={"langfuse.observation.type": "agent"}),
        make_span("OpenAI-generation", 2, 1, start_ms=10, attrs=LANGFUSE_OPENAI_GENERATION),
        *[make_span("search_docs", 3 + i, 1, start_ms=100 + 10 * i, attrs={
            "langfuse.observation.type": "tool", "langfuse.observation.input": json.dumps({"args": [], "kwargs": {"q": q}})})
          for i, q in enumerate(["refund policy", "refund policy", "refund policy", "shipping"])],
    ]
    (run,) = feed(spans)[0].values()
    assert run.name == "support-agent" and not run.implicit
    assert run.llm_calls == 1 and run.tool_calls == {"search_docs": 4}
    assert run.cost_usd == Decimal("0.0004032")
    assert [(s.kind, s.count) for s in run.loop_signals] == [("identical_tool_call", 3)]


def test_mlflow_spans_are_read_through_their_json_encoding() -> None:
    """MLflow JSON-encodes every attribute value: the model arrives as '"gpt-4o-mini"', the span
    type as '"CHAT_MODEL"'. Two calls of gpt-4o-mini, each 1,000 in x $0.15/M + 100 out x $0.60/M
    = $0.00021: $0.00042, and a tool call."""
    f = D.read(MLFLOW_CHAT)
    assert (f.dialect, f.operation, f.provider, f.model, f.input_tokens, f.output_tokens) == ("mlflow", "chat", "openai", "gpt-4o-mini", 1000, 100)
    cost = D.read({**MLFLOW_CHAT, "mlflow.llm.cost": json.dumps({"input_cost": 0.00015, "output_cost": 0.00006})})
    assert cost.external_cost_usd == 0.00021
    # Anthropic through MLflow: input includes the cache (MLflow normalizes it), the 1-hour writes
    # apart. claude-haiku-4-5: 1,000 fresh x $1/M + 1,000 5-minute writes x $1.25/M + 2,000 1-hour
    # writes x $2/M + 500 out x $5/M = $0.00875.
    cached = {**MLFLOW_CHAT, "mlflow.llm.model": json.dumps("claude-haiku-4-5"), "mlflow.llm.provider": json.dumps("anthropic"),
              "mlflow.chat.tokenUsage": json.dumps({"input_tokens": 4000, "output_tokens": 500, "total_tokens": 4500,
                                                    "cache_creation_input_tokens": 3000, "cache_creation_input_tokens_above_1hr": 2000})}
    f = D.read(cached)
    assert (f.input_tokens, f.cache_write_tokens, f.cache_write_1h_tokens) == (4000, 3000, 2000)
    (run,) = feed([run_root("r", 1, end_ms=100), make_span("Messages", 2, 1, start_ms=1, attrs=cached)])[0].values()
    assert run.cost_usd == Decimal("0.00875")
    spans = [
        make_span("agent", 1, None, end_ms=900, attrs={"mlflow.spanType": json.dumps("AGENT")}),
        make_span("Completions", 2, 1, start_ms=10, attrs=MLFLOW_CHAT),
        make_span("get_weather", 3, 1, start_ms=50, attrs={"mlflow.spanType": json.dumps("TOOL"), "mlflow.spanInputs": json.dumps({"city": "Lisbon"})}),
        make_span("Completions", 4, 1, start_ms=60, attrs=MLFLOW_CHAT),
        make_span("parse", 5, 1, start_ms=70, attrs={"mlflow.spanType": json.dumps("PARSER")}),
    ]
    (run,) = feed(spans)[0].values()
    assert run.name == "agent" and run.llm_calls == 2 and run.tool_calls == {"get_weather": 1}
    assert run.cost_usd == Decimal("0.00042")


@pytest.mark.parametrize("doc", [
    "[" * 100_000,                          # nested past the JSON parser's depth (a RecursionError)
    "{" + '"a": 1, ' * 5000 + '"b": 2}',    # far longer than any usage
    "{not json", "null", "[]", '"text"', "12",
])
def test_a_json_attribute_that_is_not_a_usage_is_ignored(doc: str) -> None:
    f = D.read({"langfuse.observation.type": "generation", "langfuse.observation.model.name": "gpt-4o-mini",
                "langfuse.observation.usage_details": doc, "langfuse.observation.cost_details": doc, "mlflow.chat.tokenUsage": doc})
    assert (f.operation, f.input_tokens, f.output_tokens, f.external_cost_usd, f.invalid_usage) == ("chat", None, None, None, None)


@pytest.mark.parametrize("usage", [{"prompt_tokens": -5, "completion_tokens": 1}, {"input": 10, "input_cache_read": 1e400, "output": 1},
                                   {"input": 10, "input_cache_read": 2.5, "output": 1}, {"input_tokens": True, "output_tokens": 3}])
def test_a_json_usage_with_a_count_that_is_not_a_count_makes_the_call_unpriced(usage: dict[str, Any]) -> None:
    attrs = {"langfuse.observation.type": "generation", "langfuse.observation.model.name": "gpt-4o-mini",
             "langfuse.observation.usage_details": json.dumps(usage)}
    assert D.read(attrs).invalid_usage is not None
    (run,) = feed([run_root("r", 1, end_ms=100), make_span("gen", 2, 1, start_ms=1, attrs=attrs)])[0].values()
    assert run.llm_calls == 1 and run.unpriced_calls == 1 and run.cost_usd == 0


def test_a_strands_agent_on_bedrock_is_priced_at_bedrock_rates() -> None:
    """Strands Agents (strands/telemetry/tracer.py) names itself as the provider and the model by its
    Bedrock id; input includes the cache. The agent span carries the run's accumulated usage, which
    is not a call. us.anthropic.claude-sonnet-4 on Bedrock: call 1, 1,200 fresh x $3/M + 2,000 cache
    writes x $3.75/M + 150 out x $15/M = $0.01335; call 2, 300 fresh x $3/M + 2,000 cache reads x
    $0.30/M + 80 out x $15/M = $0.0027; $0.01605 in all."""
    model = "us.anthropic.claude-sonnet-4-20250514-v1:0"
    common = {"gen_ai.system": "strands-agents", "gen_ai.request.model": model}
    agent = {**common, "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Strands Agents",
             "gen_ai.usage.input_tokens": 5500, "gen_ai.usage.output_tokens": 230, "gen_ai.usage.total_tokens": 5730,
             "gen_ai.usage.cache_read.input_tokens": 2000, "gen_ai.usage.cache_creation.input_tokens": 2000}

    def chat(inp: int, out: int, read: int, write: int) -> dict[str, Any]:
        usage = {"gen_ai.usage.prompt_tokens": inp, "gen_ai.usage.input_tokens": inp, "gen_ai.usage.completion_tokens": out,
                 "gen_ai.usage.output_tokens": out, "gen_ai.usage.total_tokens": inp + out}
        if read:
            usage |= {"gen_ai.usage.cache_read.input_tokens": read, "gen_ai.usage.cache_read_input_tokens": read}
        if write:
            usage |= {"gen_ai.usage.cache_creation.input_tokens": write, "gen_ai.usage.cache_write_input_tokens": write}
        return {**common, "gen_ai.operation.name": "chat", **usage}

    cycle = {"gen_ai.system": "strands-agents", "gen_ai.operation.name": "execute_event_loop_cycle"}
    spans = [
        make_span("invoke_agent Strands Agents", 1, None, end_ms=900, attrs=agent),
        make_span("execute_event_loop_cycle", 2, 1, start_ms=10, end_ms=400, attrs=cycle),
        make_span("chat", 3, 2, start_ms=11, end_ms=200, attrs=chat(3200, 150, 0, 2000)),
        make_span("execute_tool lookup_order", 4, 2, start_ms=210, end_ms=300, attrs={
            "gen_ai.system": "strands-agents", "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order"}),
        make_span("execute_event_loop_cycle", 5, 1, start_ms=410, end_ms=800, attrs=cycle),
        make_span("chat", 6, 5, start_ms=411, end_ms=700, attrs=chat(2300, 80, 2000, 0)),
    ]
    assert D.read(agent).provider is None  # the framework, not the model's provider
    records, exported = feed(spans)
    (run,) = records.values()
    assert run.name == "Strands Agents" and run.llm_calls == 2 and run.unpriced_calls == 0
    assert run.tool_calls == {"lookup_order": 1}
    assert run.cost_usd == Decimal("0.01605")
    assert run.tokens.input == 5500 and run.tokens.cache_read == 2000 and run.tokens.cache_write == 2000
    by_id = {s.context.span_id: s for s in exported}
    assert by_id[3].attributes["runmeter.cost.usd"] == 0.01335


def test_a_span_that_names_no_provider_is_priced_and_counted_under_the_one_that_lists_its_model() -> None:
    """Langfuse and MLflow spans name the model only: the provider whose price list has it is the
    call's provider (spend by provider), a Bedrock id Bedrock's."""
    for model, provider in [("gpt-4o-mini", "openai"), ("anthropic.claude-3-5-haiku-20241022-v1:0", "aws.bedrock"),
                            ("claude-haiku-4-5", "anthropic")]:
        attrs = {"langfuse.observation.type": "generation", "langfuse.observation.model.name": model,
                 "langfuse.observation.usage_details": json.dumps({"input": 100, "output": 10})}
        facts, _ = read_span(make_span("generation", 2, 1, attrs=attrs), D, PriceBook())
        assert (facts.provider, facts.cost is not None) == (provider, True), model


def test_a_google_adk_call_is_priced_and_counted_under_the_models_provider() -> None:
    """Google ADK's call_llm span names the framework (gcp.vertex.agent) as gen_ai.system, with no
    operation; input includes the cache, output the thoughts (google/adk/telemetry/_token_usage.py).
    With the experimental conventions on, the native generate_content span of the same call sits
    inside it: one call. gemini-2.5-flash: 6,000 fresh x $0.30/M + 4,000 cached x $0.03/M + 600 out
    x $2.50/M = $0.00342."""
    usage = {"gen_ai.request.model": "gemini-2.5-flash", "gen_ai.usage.input_tokens": 10_000, "gen_ai.usage.output_tokens": 600,
             "gen_ai.usage.cache_read.input_tokens": 4_000, "gen_ai.usage.reasoning.output_tokens": 400}
    call_llm = {"gen_ai.system": "gcp.vertex.agent", **usage, "gcp.vertex.agent.invocation_id": "e-1", "gcp.vertex.agent.llm_request": "{}"}
    native = {"gen_ai.operation.name": "generate_content", "gen_ai.provider.name": "gcp.gemini", **usage}
    spans = [
        make_span("invoke_agent weather_agent", 1, None, end_ms=900, attrs={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "weather_agent"}),
        make_span("call_llm", 2, 1, start_ms=10, end_ms=400, attrs=call_llm),
        make_span("generate_content gemini-2.5-flash", 3, 2, start_ms=11, end_ms=390, attrs=native),
        make_span("execute_tool get_weather", 4, 1, start_ms=410, end_ms=450, attrs={
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather", "gen_ai.tool.call.id": "t1"}),
    ]
    assert D.read(call_llm).provider is None and D.read(call_llm).operation == "chat"
    facts, _ = read_span(spans[1], D, PriceBook())
    assert facts.provider == "gcp.gemini"
    (run,) = feed(spans)[0].values()
    assert run.name == "weather_agent" and run.llm_calls == 1 and run.tool_calls == {"get_weather": 1}
    assert run.cost_usd == Decimal("0.00342")


def test_langsmith_otel_spans_count_model_calls_only_and_read_the_cache_from_token_details() -> None:
    """LangSmith's OpenTelemetry export (langsmith/_internal/otel/_otel_exporter.py) sets
    gen_ai.operation.name "chat" on prompt-template runs and "embeddings" on retrievers; its run type
    (langsmith.span.kind) says which spans are model calls. The cache is in LangChain's
    input_token_details, written with str(). claude-haiku-4-5: 1,000 fresh x $1/M + 8,000 cache
    reads x $0.10/M + 1,000 writes x $1.25/M + 500 out x $5/M = $0.00555."""
    def ls(kind: str, **attrs: Any) -> dict[str, Any]:
        op = {"llm": "chat", "prompt": "chat", "retriever": "embeddings", "tool": "execute_tool"}.get(kind, kind)
        return {"langsmith.span.kind": kind, "gen_ai.operation.name": op, "gen_ai.system": "langchain", "langsmith.trace.session_name": "default", **attrs}

    llm_attrs = ls("llm", **{"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-haiku-4-5", "gen_ai.response.model": "claude-haiku-4-5-20251001",
                             "gen_ai.usage.input_tokens": 10_000, "gen_ai.usage.output_tokens": 500, "gen_ai.usage.total_tokens": 10_500,
                             "gen_ai.usage.input_token_details": "{'cache_read': 8000, 'cache_creation': 1000}",
                             "gen_ai.usage.output_token_details": "{}"})
    spans = [
        make_span("RunnableSequence", 1, None, end_ms=900, attrs=ls("chain")),
        make_span("ChatPromptTemplate", 2, 1, start_ms=10, end_ms=20, attrs=ls("prompt")),
        make_span("VectorStoreRetriever", 3, 1, start_ms=20, end_ms=40, attrs=ls("retriever")),
        make_span("ChatAnthropic", 4, 1, start_ms=50, end_ms=400, attrs=llm_attrs),
        make_span("lookup_order", 5, 1, start_ms=410, end_ms=450, attrs=ls("tool", **{"gen_ai.tool.name": "lookup_order"})),
        make_span("StrOutputParser", 6, 1, start_ms=460, end_ms=470, attrs=ls("parser")),
    ]
    assert D.read(spans[1].attributes).operation is None  # a prompt template is not a call
    f = D.read(llm_attrs)
    assert (f.cache_read_tokens, f.cache_write_tokens) == (8_000, 1_000)
    (run,) = feed(spans)[0].values()
    assert run.llm_calls == 1 and run.unpriced_calls == 0 and run.tool_calls == {"lookup_order": 1}
    assert run.cost_usd == Decimal("0.00555")


@pytest.mark.parametrize("doc", ["{'a': __import__('os').getcwd()}", "{'cache_read': 10 ** 10 ** 10}", "{'" + "a" * 9000 + "': 1}",
                                 "{'cache_read': " + "[" * 5000 + "]" * 5000 + "}", "{'cache_read': -3}"])
def test_a_python_literal_detail_that_is_not_a_count_is_not_read_or_run(doc: str) -> None:
    """Python-literal details are read by pattern (names to counts): names, calls and operators are not read, let alone run."""
    f = D.read({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 1, "gen_ai.usage.input_token_details": doc})
    assert f.cache_read_tokens is None and f.input_tokens == 10


def test_vercel_ai_sdk_6_input_already_includes_the_cache() -> None:
    """From AI SDK 6 inputTokens is the total with the cache for Anthropic too (the anthropic
    provider's convertAnthropicUsage), its parts beside it; adding the cache as for v5 would price
    it twice. claude-haiku-4-5: 1,000 fresh x $1/M + 8,000 cache reads x $0.10/M + 1,000 writes x
    $1.25/M + 500 out x $5/M = $0.00555 (read as v5: 18,000 in, $0.01355)."""
    attrs = {
        "ai.operationId": "ai.streamText.doStream", "ai.model.id": "claude-haiku-4-5", "ai.model.provider": "anthropic.messages",
        "ai.usage.inputTokens": 10_000, "ai.usage.inputTokenDetails.noCacheTokens": 1_000,
        "ai.usage.inputTokenDetails.cacheReadTokens": 8_000, "ai.usage.inputTokenDetails.cacheWriteTokens": 1_000,
        "ai.usage.outputTokens": 500, "ai.usage.outputTokenDetails.textTokens": 500, "ai.usage.totalTokens": 10_500,
        "ai.usage.cachedInputTokens": 8_000,
        "gen_ai.system": "anthropic.messages", "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.usage.input_tokens": 10_000, "gen_ai.usage.output_tokens": 500,
    }
    f = D.read(attrs)
    assert (f.dialect, f.provider, f.input_tokens, f.cache_read_tokens, f.cache_write_tokens) == ("vercel-ai-6", "anthropic", 10_000, 8_000, 1_000)
    (run,) = feed([run_root("r", 1, end_ms=100), make_span("ai.streamText.doStream", 2, 1, start_ms=1, attrs=attrs)])[0].values()
    assert run.cost_usd == Decimal("0.00555")


def test_litellm_cost_is_kept_as_another_tools_and_the_call_priced_from_its_usage() -> None:
    """LiteLLM's OpenTelemetry callback: the provider as LiteLLM names it, a routed model, its own
    cost breakdown under gen_ai.cost.*. gpt-4o-mini: 1,000 in x $0.15/M + 100 out x $0.60/M = $0.00021."""
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "openai/gpt-4o-mini",
             "llm.request.type": "acompletion", "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100,
             "gen_ai.usage.total_tokens": 1100, "gen_ai.cost.input_cost": 0.00015, "gen_ai.cost.output_cost": 0.00006,
             "gen_ai.cost.total_cost": 0.00021, "litellm.cache_hit": False}
    f = D.read(attrs)
    assert (f.operation, f.provider, f.external_cost_usd) == ("chat", "openai", 0.00021)
    (run,) = feed([run_root("r", 1, end_ms=100), make_span("litellm_request", 2, 1, start_ms=1, attrs=attrs)])[0].values()
    assert run.cost_usd == Decimal("0.00021") and run.external_cost_usd == Decimal("0.00021")


def test_openlit_gemini_output_is_its_candidates_with_the_thoughts_apart() -> None:
    """OpenLIT reports a Gemini call's output as the candidates alone and the thoughts apart
    (gen_ai.usage.reasoning_tokens; its ADK spans under another name); both are billed as output.
    gemini-2.5-flash: 1,000 in x $0.30/M + (500 candidates + 200 thoughts) x $2.50/M = $0.00205
    (read as thoughts within the output: $0.00155)."""
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "gcp.gemini", "gen_ai.request.model": "gemini-2.5-flash",
             "gen_ai.usage.input_tokens": 1_000, "gen_ai.usage.output_tokens": 500, "gen_ai.usage.reasoning_tokens": 200,
             "gen_ai.usage.cost": 0.00205, "gen_ai.usage.cache_read.input_tokens": 0}
    adk = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "gcp.vertex_ai", "gen_ai.request.model": "gemini-2.5-flash",
           "gen_ai.usage.input_tokens": 1_000, "gen_ai.usage.output_tokens": 500,
           "gen_ai.usage.completion_tokens_details.reasoning_tokens": 200}
    for shape in (attrs, adk):
        f = D.read(shape)
        assert (f.output_tokens, f.reasoning_tokens) == (700, 200), f.dialect
        (run,) = feed([run_root("r", 1, end_ms=100), make_span("generate_content gemini-2.5-flash", 2, 1, start_ms=1, attrs=shape)])[0].values()
        assert run.cost_usd == Decimal("0.00205"), f.dialect
    # OpenAI through OpenLIT: completion tokens include the reasoning, as OpenAI counts them
    o = D.read({**OPENLIT_CHAT, "gen_ai.usage.output_tokens": 500, "gen_ai.usage.reasoning_tokens": 200})
    assert o.output_tokens == 500


def test_openllmetry_gemini_thoughts_are_the_total_less_input_and_output() -> None:
    """OpenLLMetry's Gemini spans (gen_ai.system "Google") report candidates_token_count as the
    completion and total_token_count as the total, which also counts the thoughts: the difference is
    billed as output. gemini-2.5-flash: 1,000 in x $0.30/M + (500 + 200 thoughts) x $2.50/M =
    $0.00205 ($0.00155 without the thoughts). A total that is not a count changes nothing."""
    attrs = {"gen_ai.system": "Google", "llm.request.type": "completion", "gen_ai.request.model": "gemini-2.5-flash",
             "gen_ai.response.model": "gemini-2.5-flash", "gen_ai.usage.prompt_tokens": 1_000,
             "gen_ai.usage.completion_tokens": 500, "llm.usage.total_tokens": 1_700}
    f = D.read(attrs)
    assert (f.dialect, f.provider, f.output_tokens, f.reasoning_tokens) == ("openllmetry", "gcp.gen_ai", 700, 200)
    (run,) = feed([run_root("r", 1, end_ms=100), make_span("gemini.generate_content", 2, 1, start_ms=1, attrs=attrs)])[0].values()
    assert run.cost_usd == Decimal("0.00205") and run.unpriced_calls == 0
    bad = D.read({**attrs, "llm.usage.total_tokens": "n/a"})
    assert (bad.output_tokens, bad.invalid_usage) == (500, None)
    # OpenLLMetry's OpenAI spans: the total is input + output, nothing is added
    assert D.read({**OPENLLMETRY_OPENAI_CHAT, "llm.usage.total_tokens": 10**6}).output_tokens == OPENLLMETRY_OPENAI_CHAT["gen_ai.usage.completion_tokens"]


def test_runmeters_own_flags_are_read_only_when_true_and_inferred_only_on_a_tool_span() -> None:
    """runmeter's flags (run root, estimated, duplicate, implicit run, inferred tool call) are read in
    the dialect map's pass: each only when the attribute is the boolean True (a string "true", a 1
    from another SDK are not), and an inferred call only on a tool span (on an LLM span it would
    give up the call's cost to a tool span that covers it)."""
    flags = {"runmeter.run.root": "explicit_root", "runmeter.cost.estimated": "estimated", "runmeter.cost.duplicate": "duplicate",
             "runmeter.run.implicit": "implicit_run"}
    book = PriceBook()
    for attribute, slot in flags.items():
        for value, expected in ((True, True), ("true", False), (1, False), (False, False)):
            facts, _ = read_span(llm(2, 1, "gpt-4o-mini", 100, 10, extra={attribute: value}), D, book)
            assert getattr(facts, slot) is expected, (attribute, value)
    tool_attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search", "runmeter.tool.inferred": True}
    assert read_span(make_span("execute_tool search", 3, 1, attrs=tool_attrs), D, book)[0].inferred is True
    assert read_span(make_span("execute_tool search", 3, 1, attrs={**tool_attrs, "runmeter.tool.inferred": "true"}), D, book)[0].inferred is False
    on_llm, _ = read_span(llm(4, 1, "gpt-4o-mini", 100, 10, extra={"runmeter.tool.inferred": True}), D, book)
    assert on_llm.inferred is False and on_llm.cost is not None
