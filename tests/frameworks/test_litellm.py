"""LiteLLM, the real package, against the simulator: each call once, priced from list prices.

LiteLLM speaks to Anthropic with its own HTTP code (no client instrumentation saw those calls) and
to OpenAI through the openai SDK's client (whose instrumentation must then not count the call again).
Prices by hand: claude-haiku-4-5 $1/M in, $5/M out, cache reads $0.10/M, 5-minute writes $1.25/M,
1-hour writes $2/M; gpt-4o-mini $0.15/M in, $0.60/M out.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # its price map from the package, not the network

import runmeter
from runmeter.processor import PriceBook
from runmeter.testing import Reply, ToolCall
from tests.instrumented import SECRET, Rig

# LiteLLM's own doings, not runmeter's (litellm 1.110): its stream models warn as pydantic builds
# them, and after an OpenAI call and an async call in one process it leaves an event loop of its
# own unclosed (collected in the fixture's teardown, below, so it is reported here and not later).
pytestmark = [
    pytest.mark.filterwarnings("ignore:Item .* on TypedDict class .* is using the `ReadOnly` qualifier:UserWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

# 100 uncached + 20 read + 20 written for 5 minutes + 10 for an hour, 10 out
HAIKU = (100 * 1 + 20 * 0.10 + 20 * 1.25 + 10 * 2 + 10 * 5) / 1e6  # $0.000197
MINI = (1_000 * 0.15 + 20 * 0.60) / 1e6  # $0.000162


@pytest.fixture
def litellm(rig: Rig) -> Iterator[Any]:
    import litellm as module

    from runmeter.instrumentation import LiteLLMInstrumentor

    LiteLLMInstrumentor().instrument(tracer_provider=rig.tracer_provider, meter_provider=rig.meter_provider, prices=PriceBook(), providers={})
    yield module
    LiteLLMInstrumentor().uninstrument()
    cache = module.in_memory_llm_clients_cache  # the HTTP clients LiteLLM keeps between calls: closed, as a program's exit would
    for client in list(getattr(cache, "cache_dict", {}).values()):
        close = getattr(client, "close", None)
        if callable(close) and not asyncio.iscoroutinefunction(close):
            close()
    cache.flush_cache()
    gc.collect()


def _haiku_reply() -> Reply:
    return Reply(text="Urgent.", input_tokens=100, cached_tokens=20, cache_write_tokens=30, cache_write_1h_tokens=10, output_tokens=10)


def test_an_anthropic_call_through_litellm_is_priced_with_its_cache(rig: Rig, litellm: Any) -> None:
    rig.sim.queue(_haiku_reply())
    litellm.completion(model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "Urgent?"}],
                       api_base=rig.sim.anthropic_url, api_key=SECRET, max_tokens=50)
    (span,) = rig.llm_spans()
    a = span.attributes
    assert (span.name, a["gen_ai.provider.name"], a["gen_ai.request.model"]) == ("chat claude-haiku-4-5", "anthropic", "claude-haiku-4-5")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.cache_read.input_tokens"], a["gen_ai.usage.cache_creation.input_tokens"]) == (150, 20, 30)
    assert a["runmeter.cost.usd"] == pytest.approx(HAIKU, abs=1e-12)
    assert SECRET not in str(dict(a))


def test_an_openai_call_through_litellm_is_counted_once(rig: Rig, litellm: Any) -> None:
    """LiteLLM goes through the openai SDK's client (1.110 posts with ``client.post``; other versions
    and paths call ``chat.completions.create``, which runmeter instruments too - suppressed inside
    the LiteLLM call): one span, one cost."""
    rig.sim.queue(Reply(text="Hi.", input_tokens=1_000, output_tokens=20))
    with runmeter.run("mini", tracer_provider=rig.tracer_provider):
        litellm.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                           api_base=rig.sim.openai_url, api_key=SECRET)
    (span,) = rig.llm_spans()
    assert span.attributes["runmeter.cost.usd"] == pytest.approx(MINI, abs=1e-12)
    rig.processor.force_flush()
    (record,) = rig.sink.runs
    assert record.llm_calls == 1 and float(record.cost_usd) == pytest.approx(MINI, abs=1e-12)


@pytest.mark.parametrize("is_async", [False, True])
def test_a_streamed_call_through_litellm(rig: Rig, litellm: Any, is_async: bool) -> None:
    rig.sim.queue(_haiku_reply())
    kw: dict[str, Any] = dict(model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "Urgent?"}],
                              api_base=rig.sim.anthropic_url, api_key=SECRET, max_tokens=50, stream=True,
                              stream_options={"include_usage": True})
    if is_async:
        async def go() -> str:
            stream = await litellm.acompletion(**kw)
            out = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            await litellm.close_litellm_async_clients()  # bound to this loop: closed before it ends
            return out
        text = asyncio.run(go())
    else:
        text = "".join(c.choices[0].delta.content or "" for c in litellm.completion(**kw) if c.choices)
    assert text == "Urgent."
    (span,) = rig.llm_spans()
    assert span.attributes["runmeter.cost.usd"] == pytest.approx(HAIKU, abs=1e-12)
    assert "runmeter.cost.estimated" not in span.attributes


@pytest.mark.parametrize("is_async", [False, True])
def test_an_embedding_through_litellm_is_counted_once(rig: Rig, litellm: Any, is_async: bool) -> None:
    """LiteLLM's OpenAI embeddings go through the openai SDK's embeddings.create, which runmeter
    instruments too (suppressed inside the LiteLLM call): one span, 1,000 tokens x $0.02/M."""
    rig.sim.queue(Reply(input_tokens=1_000))
    kw: dict[str, Any] = dict(model="openai/text-embedding-3-small", input=["a", "b"], api_base=rig.sim.openai_url, api_key=SECRET)
    if is_async:
        async def go() -> None:
            await litellm.aembedding(**kw)
            await litellm.close_litellm_async_clients()
        asyncio.run(go())
    else:
        litellm.embedding(**kw)
    (span,) = rig.llm_spans()
    assert (span.name, span.attributes["gen_ai.provider.name"]) == ("embeddings text-embedding-3-small", "openai")
    assert span.attributes["runmeter.cost.usd"] == pytest.approx(1_000 * 0.02e-6, abs=1e-12)


@pytest.mark.parametrize(("is_async", "stream"), [(False, False), (False, True), (True, False), (True, True)])
def test_an_openai_responses_call_through_litellm_is_priced(rig: Rig, litellm: Any, is_async: bool, stream: bool) -> None:
    """litellm.responses goes to OpenAI's Responses API with LiteLLM's own HTTP code: before, no
    instrumentation saw it and the run cost $0. One span, 1,000 in and 20 out at gpt-4o-mini's prices."""
    rig.sim.queue(Reply(text="Hi.", input_tokens=1_000, output_tokens=20))
    kw: dict[str, Any] = dict(model="openai/gpt-4o-mini", input="Hi", api_base=rig.sim.openai_url, api_key=SECRET, stream=stream)

    def text_of(events: list[Any]) -> str:
        return "".join(getattr(e, "delta", "") or "" for e in events if getattr(e, "type", "") == "response.output_text.delta")

    with runmeter.run("mini", tracer_provider=rig.tracer_provider):
        if is_async:
            async def go() -> str:
                result = await litellm.aresponses(**kw)
                text = text_of([e async for e in result]) if stream else result.output[0].content[0].text
                await litellm.close_litellm_async_clients()
                return text
            text = asyncio.run(go())
        else:
            result = litellm.responses(**kw)
            text = text_of(list(result)) if stream else result.output[0].content[0].text
    assert text == "Hi."
    (span,) = rig.llm_spans()
    a = span.attributes
    assert (span.name, a["gen_ai.provider.name"], a["gen_ai.request.model"]) == ("chat gpt-4o-mini", "openai", "gpt-4o-mini")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (1_000, 20)
    assert a["runmeter.cost.usd"] == pytest.approx(MINI, abs=1e-12)
    rig.processor.force_flush()
    (record,) = rig.sink.runs
    assert record.llm_calls == 1 and float(record.cost_usd) == pytest.approx(MINI, abs=1e-12)


def test_an_anthropic_responses_call_through_litellm_is_counted_once(rig: Rig, litellm: Any) -> None:
    """To a provider without a Responses API LiteLLM goes through its own completion(), which
    runmeter instruments too: suppressed inside the call, one span. Priced from the usage LiteLLM
    answers with, in the Responses API's shape: 150 in of which 20 read from the cache and 30
    written to it, 10 out. That shape has no room for the 1-hour part of the writes (10 of the 30),
    so all 30 are priced as 5-minute writes: (100 x $1 + 20 x $0.10 + 30 x $1.25 + 10 x $5) / 1M."""
    rig.sim.queue(_haiku_reply())
    litellm.responses(model="anthropic/claude-haiku-4-5", input="Urgent?", api_base=rig.sim.anthropic_url, api_key=SECRET,
                      max_output_tokens=50)
    (span,) = rig.llm_spans()
    a = span.attributes
    assert (a["gen_ai.provider.name"], a["gen_ai.request.model"]) == ("anthropic", "claude-haiku-4-5")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.cache_read.input_tokens"], a["gen_ai.usage.cache_creation.input_tokens"]) == (150, 20, 30)
    assert a["runmeter.cost.usd"] == pytest.approx((100 * 1 + 20 * 0.10 + 30 * 1.25 + 10 * 5) / 1e6, abs=1e-12)


@pytest.mark.parametrize("stream", [False, True])
def test_litellms_own_opentelemetry_callback_beside_runmeter_counts_the_call_once(rig: Rig, litellm: Any, stream: bool) -> None:
    """LiteLLM's "otel" callback, on beside runmeter, writes its attributes (usage, its own cost
    figures) into the span current when the call ends - runmeter's call span, or, after a stream,
    the run's span - or makes spans of its own under it. The run still holds one call at the list
    price, not two."""
    from litellm.integrations.opentelemetry import OpenTelemetry

    litellm.callbacks = [OpenTelemetry(tracer_provider=rig.tracer_provider)]
    try:
        rig.sim.queue(_haiku_reply())
        with runmeter.run("haiku", tracer_provider=rig.tracer_provider):
            result = litellm.completion(model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "Urgent?"}],
                                        api_base=rig.sim.anthropic_url, api_key=SECRET, max_tokens=50, stream=stream,
                                        **({"stream_options": {"include_usage": True}} if stream else {}))
            if stream:
                list(result)
        # LiteLLM's callback ran: its attributes in a span of ours, or a span of its own (which, and
        # whether in the call or later on a thread of its own, depends on its earlier calls in the process).
        deadline = time.monotonic() + 10
        while not any("gen_ai.cost.total_cost" in (s.attributes or {}) or s.instrumentation_scope.name == "litellm" for s in rig.spans()):
            assert time.monotonic() < deadline, "LiteLLM's OpenTelemetry callback never ran"
            time.sleep(0.05)
    finally:
        litellm.callbacks = []
    rig.processor.force_flush()
    (record,) = rig.sink.runs
    assert record.llm_calls == 1 and float(record.cost_usd) == pytest.approx(HAIKU, abs=1e-12)


def test_a_tool_loop_through_litellm_counts_its_tools(rig: Rig, litellm: Any) -> None:
    rig.sim.queue(
        Reply(tool_calls=[ToolCall("read_file", {"path": "app.py"}, "toolu_1")], input_tokens=100, output_tokens=10),
        Reply(tool_calls=[ToolCall("read_file", {"path": "app.py"}, "toolu_2")], input_tokens=100, output_tokens=10),
        Reply(text="Fixed.", input_tokens=100, output_tokens=10),
    )
    with runmeter.run("fix", tracer_provider=rig.tracer_provider):
        messages: list[Any] = [{"role": "user", "content": "Fix app.py"}]
        while True:
            msg = litellm.completion(model="anthropic/claude-haiku-4-5", messages=messages, api_base=rig.sim.anthropic_url,
                                     api_key=SECRET, max_tokens=50,
                                     tools=[{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]).choices[0].message
            if not msg.tool_calls:
                break
            messages.append(msg)  # LiteLLM's own message object, as its docs do
            for tc in msg.tool_calls:
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": json.dumps({"text": "def add(a, b): ..."})})
    rig.processor.force_flush()
    (record,) = rig.sink.runs
    assert record.llm_calls == 3 and record.tool_calls == {"read_file": 2}
    assert float(record.cost_usd) == pytest.approx(3 * (100 * 1 + 10 * 5) / 1e6, abs=1e-12)


def test_the_litellm_example_zero_code(tmp_path: Any) -> None:
    """examples/litellm_agent.py under opentelemetry-instrument (its loader, run from this venv, where
    LiteLLM is): read app.py, fix it, say so - 3 calls, 2 tool calls with no runmeter code around
    them, the run accepted. claude-haiku-4-5: (500 + 600 + 700) in x $1/M + (20 + 30 + 10) out x $5/M."""
    import subprocess
    import sys
    from pathlib import Path

    from runmeter.testing import Simulator

    root = Path(__file__).resolve().parents[2]
    with Simulator() as sim:
        sim.queue(
            Reply(tool_calls=[ToolCall("read_file", {"path": "app.py"}, "toolu_1")], input_tokens=500, output_tokens=20),
            Reply(tool_calls=[ToolCall("edit_file", {"path": "app.py", "old": "a - b", "new": "a + b"}, "toolu_2")], input_tokens=600, output_tokens=30),
            Reply(text="Fixed add().", input_tokens=700, output_tokens=10),
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNMETER_", "PYTEST", "ANTHROPIC_"))}
        env.update(OTEL_TRACES_EXPORTER="console", ANTHROPIC_API_BASE=sim.anthropic_url, ANTHROPIC_API_KEY="zero-code-secret",
                   LITELLM_LOCAL_MODEL_COST_MAP="True")
        loader = "import sys; from opentelemetry.instrumentation.auto_instrumentation import run; sys.argv[0] = 'opentelemetry-instrument'; run()"
        proc = subprocess.run([sys.executable, "-c", loader, sys.executable, str(root / "examples" / "litellm_agent.py")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    dec, spans, i = json.JSONDecoder(), [], 0
    while (j := proc.stdout.find("{", i)) >= 0:
        obj, i = dec.raw_decode(proc.stdout, j)
        spans.append(obj)
    calls = [s for s in spans if s["attributes"].get("runmeter.cost.usd") is not None]
    tools = [s["attributes"]["gen_ai.tool.name"] for s in spans if s["attributes"].get("gen_ai.operation.name") == "execute_tool"]
    assert len(calls) == 3 and tools == ["read_file", "edit_file"]
    assert sum(s["attributes"]["runmeter.cost.usd"] for s in calls) == pytest.approx((1_800 * 1 + 60 * 5) / 1e6, abs=1e-12)
    (run,) = [s for s in spans if s["name"] == "invoke_agent fix-bug"]
    assert run["attributes"].get("runmeter.run.outcome") == "accepted"
    assert "zero-code-secret" not in proc.stdout
