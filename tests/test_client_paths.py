"""One call = one counted call, on every public method of both SDKs that calls a model.

Each path makes exactly one request to the simulator on 127.0.0.1 and must give exactly one
counted runmeter LLM span with the usage the response reported, priced by hand:
- OpenAI gpt-5.5: 57 in (32 cached) + 21 out = 25 x $5/M + 32 x $0.50/M + 21 x $30/M = $0.000771.
- Anthropic claude-haiku-4-5: 40 uncached + 1,000 read + 200 written + 30 out
  = $0.00004 + $0.0001 + $0.00025 + $0.00015 = $0.000540.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pydantic
import pytest

import runmeter
from runmeter.testing import Reply
from tests.instrumented import Rig

MSG = [{"role": "user", "content": "Summarize the inbox."}]
GPT55 = Decimal("0.000771")
HAIKU = Decimal("0.000540")


class Summary(pydantic.BaseModel):
    text: str


def openai_reply() -> Reply:
    return Reply(text='{"text": "Three unread."}', input_tokens=57, output_tokens=21, cached_tokens=32)


def anthropic_reply() -> Reply:
    return Reply(text='{"text": "ok"}', input_tokens=40, output_tokens=30, cached_tokens=1_000, cache_write_tokens=200)


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


async def _adrain(stream: Any) -> None:
    async for _ in stream:
        pass


OPENAI_SYNC = {
    "chat.create": lambda c: c.chat.completions.create(model="gpt-5.5", messages=MSG),
    "chat.create(stream)": lambda c: _drain(c.chat.completions.create(model="gpt-5.5", messages=MSG, stream=True,
                                                                       stream_options={"include_usage": True})),
    "chat.parse": lambda c: c.chat.completions.parse(model="gpt-5.5", messages=MSG, response_format=Summary),
    "chat.stream()": lambda c: _chat_stream_helper(c),
    "chat.with_raw_response.create": lambda c: c.chat.completions.with_raw_response.create(model="gpt-5.5", messages=MSG).parse(),
    "chat.with_raw_response.create(stream)": lambda c: _drain(c.chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=MSG, stream=True, stream_options={"include_usage": True}).parse()),
    "chat.with_streaming_response.create": lambda c: _streaming_response(c),
    "responses.create": lambda c: c.responses.create(model="gpt-5.5", input="Summarize the inbox."),
    "responses.create(stream)": lambda c: _drain(c.responses.create(model="gpt-5.5", input="Summarize.", stream=True)),
    "responses.parse": lambda c: c.responses.parse(model="gpt-5.5", input="Summarize.", text_format=Summary),
    "responses.stream()": lambda c: _responses_stream_helper(c),
}


def _chat_stream_helper(c: Any) -> None:
    with c.chat.completions.stream(model="gpt-5.5", messages=MSG, stream_options={"include_usage": True}) as s:
        s.get_final_completion()


def _responses_stream_helper(c: Any) -> None:
    with c.responses.stream(model="gpt-5.5", input="Summarize.") as s:
        s.get_final_response()


def _streaming_response(c: Any) -> None:
    with c.chat.completions.with_streaming_response.create(model="gpt-5.5", messages=MSG) as r:
        r.parse()


async def _achat_stream_helper(c: Any) -> None:
    async with c.chat.completions.stream(model="gpt-5.5", messages=MSG, stream_options={"include_usage": True}) as s:
        await s.get_final_completion()


async def _aresponses_stream_helper(c: Any) -> None:
    async with c.responses.stream(model="gpt-5.5", input="Summarize.") as s:
        await s.get_final_response()


async def _araw_stream(c: Any) -> None:
    raw = await c.chat.completions.with_raw_response.create(model="gpt-5.5", messages=MSG, stream=True,
                                                             stream_options={"include_usage": True})
    stream = raw.parse()
    await _adrain(await stream if asyncio.iscoroutine(stream) else stream)


async def _astreaming_response(c: Any) -> None:
    async with c.chat.completions.with_streaming_response.create(model="gpt-5.5", messages=MSG) as r:
        await r.parse()


OPENAI_ASYNC = {
    "chat.create": lambda c: c.chat.completions.create(model="gpt-5.5", messages=MSG),
    "chat.create(stream)": lambda c: _aawait_drain(c.chat.completions.create(model="gpt-5.5", messages=MSG, stream=True,
                                                                              stream_options={"include_usage": True})),
    "chat.parse": lambda c: c.chat.completions.parse(model="gpt-5.5", messages=MSG, response_format=Summary),
    "chat.stream()": _achat_stream_helper,
    "chat.with_raw_response.create": lambda c: _aparse(c.chat.completions.with_raw_response.create(model="gpt-5.5", messages=MSG)),
    "chat.with_raw_response.create(stream)": _araw_stream,
    "chat.with_streaming_response.create": _astreaming_response,
    "responses.create": lambda c: c.responses.create(model="gpt-5.5", input="Summarize the inbox."),
    "responses.create(stream)": lambda c: _aawait_drain(c.responses.create(model="gpt-5.5", input="Summarize.", stream=True)),
    "responses.parse": lambda c: c.responses.parse(model="gpt-5.5", input="Summarize.", text_format=Summary),
    "responses.stream()": _aresponses_stream_helper,
}


async def _aawait_drain(coro: Any) -> None:
    await _adrain(await coro)


async def _aparse(coro: Any) -> None:
    parsed = (await coro).parse()  # openai's async raw response parses at once, anthropic's in a coroutine
    if asyncio.iscoroutine(parsed):
        await parsed


def _check(rig: Rig, expected_cost: Decimal) -> None:
    rig.processor.force_flush()
    ours = rig.llm_spans()
    assert len(ours) == 1, [s.name for s in rig.spans()]
    a = ours[0].attributes
    assert "runmeter.cost.estimated" not in a, dict(a)
    assert Decimal(str(a["runmeter.cost.usd"])) == expected_cost
    (record,) = rig.sink.runs
    assert record.llm_calls == 1 and record.cost_usd == expected_cost and record.pricing == "priced"


@pytest.mark.parametrize("path", list(OPENAI_SYNC))
def test_openai_sync_path(rig: Rig, path: str) -> None:
    rig.sim.queue(openai_reply())
    with runmeter.run("paths", tracer_provider=rig.tracer_provider):
        OPENAI_SYNC[path](rig.openai())
    assert len(rig.sim.requests) == 1
    _check(rig, GPT55)


@pytest.mark.parametrize("path", list(OPENAI_ASYNC))
def test_openai_async_path(rig: Rig, path: str) -> None:
    rig.sim.queue(openai_reply())

    async def go() -> None:
        async with rig.async_openai() as client:
            await OPENAI_ASYNC[path](client)

    with runmeter.run("paths", tracer_provider=rig.tracer_provider):
        asyncio.run(go())
    assert len(rig.sim.requests) == 1
    _check(rig, GPT55)


KW = {"model": "claude-haiku-4-5", "max_tokens": 300, "messages": MSG}


def _a_stream_helper(resource: Any) -> None:
    with resource.stream(**KW) as s:
        s.get_final_message()


def _a_streaming_response(c: Any) -> None:
    with c.messages.with_streaming_response.create(**KW) as r:
        r.parse()


ANTHROPIC_SYNC = {
    "messages.create": lambda c: c.messages.create(**KW),
    "messages.create(stream)": lambda c: _drain(c.messages.create(stream=True, **KW)),
    "messages.stream()": lambda c: _a_stream_helper(c.messages),
    "messages.parse": lambda c: c.messages.parse(output_format=Summary, **KW),
    "messages.with_raw_response.create": lambda c: c.messages.with_raw_response.create(**KW).parse(),
    "messages.with_raw_response.create(stream)": lambda c: _drain(c.messages.with_raw_response.create(stream=True, **KW).parse()),
    "messages.with_streaming_response.create": _a_streaming_response,
    "beta.messages.create": lambda c: c.beta.messages.create(**KW),
    "beta.messages.create(stream)": lambda c: _drain(c.beta.messages.create(stream=True, **KW)),
    "beta.messages.stream()": lambda c: _a_stream_helper(c.beta.messages),
    "beta.messages.parse": lambda c: c.beta.messages.parse(output_format=Summary, **KW),
}


async def _aa_stream_helper(resource: Any) -> None:
    async with resource.stream(**KW) as s:
        await s.get_final_message()


async def _aa_raw_stream(c: Any) -> None:
    raw = await c.messages.with_raw_response.create(stream=True, **KW)
    await _adrain(await raw.parse())


async def _aa_streaming_response(c: Any) -> None:
    async with c.messages.with_streaming_response.create(**KW) as r:
        await r.parse()


ANTHROPIC_ASYNC = {
    "messages.create": lambda c: c.messages.create(**KW),
    "messages.create(stream)": lambda c: _aawait_drain(c.messages.create(stream=True, **KW)),
    "messages.stream()": lambda c: _aa_stream_helper(c.messages),
    "messages.parse": lambda c: c.messages.parse(output_format=Summary, **KW),
    "messages.with_raw_response.create": lambda c: _aparse(c.messages.with_raw_response.create(**KW)),
    "messages.with_raw_response.create(stream)": _aa_raw_stream,
    "messages.with_streaming_response.create": _aa_streaming_response,
    "beta.messages.create": lambda c: c.beta.messages.create(**KW),
    "beta.messages.create(stream)": lambda c: _aawait_drain(c.beta.messages.create(stream=True, **KW)),
    "beta.messages.stream()": lambda c: _aa_stream_helper(c.beta.messages),
    "beta.messages.parse": lambda c: c.beta.messages.parse(output_format=Summary, **KW),
}


def _check_anthropic(rig: Rig) -> None:
    _check(rig, HAIKU)
    sdk = [s for s in rig.spans() if s.instrumentation_scope.name != "runmeter.instrumentation"
           and (s.attributes or {}).get("gen_ai.operation.name") == "chat"]
    for s in sdk:  # the SDK's own span, when it makes one, is the same call: no cost of its own
        assert s.attributes.get("runmeter.cost.duplicate") is True and "runmeter.cost.usd" not in s.attributes


@pytest.mark.parametrize("path", list(ANTHROPIC_SYNC))
def test_anthropic_sync_path(rig: Rig, path: str) -> None:
    rig.sim.queue(anthropic_reply())
    with runmeter.run("paths", tracer_provider=rig.tracer_provider):
        ANTHROPIC_SYNC[path](rig.anthropic())
    assert len(rig.sim.requests) == 1
    _check_anthropic(rig)


@pytest.mark.parametrize("path", list(ANTHROPIC_ASYNC))
def test_anthropic_async_path(rig: Rig, path: str) -> None:
    rig.sim.queue(anthropic_reply())

    async def go() -> None:
        async with rig.async_anthropic() as client:
            await ANTHROPIC_ASYNC[path](client)

    with runmeter.run("paths", tracer_provider=rig.tracer_provider):
        asyncio.run(go())
    assert len(rig.sim.requests) == 1
    _check_anthropic(rig)


# --- the price depends on more than model and tokens -----------------------------------------

@pytest.mark.parametrize("tier, expected", [
    # gpt-5, 1,000 in + 200 out. default: 1,000 x $1.25/M + 200 x $10/M = $0.00125 + $0.002 = $0.00325;
    # priority (genai-prices 0.2.3: $2.50/$20): $0.0025 + $0.004 = $0.0065; flex ($0.625/$5): $0.0016250
    ("default", "0.00325"), ("priority", "0.0065"), ("flex", "0.001625"),
])
@pytest.mark.parametrize("api", ["chat", "responses", "chat(stream)"])
def test_a_call_is_priced_at_the_service_tier_its_response_reports(rig: Rig, tier: str, expected: str, api: str) -> None:
    rig.sim.queue(Reply(text="ok", model="gpt-5", input_tokens=1_000, output_tokens=200, service_tier=tier))
    client = rig.openai()
    if api == "chat":
        client.chat.completions.create(model="gpt-5", messages=MSG)
    elif api == "responses":
        client.responses.create(model="gpt-5", input="hi")
    else:
        _drain(client.chat.completions.create(model="gpt-5", messages=MSG, stream=True, stream_options={"include_usage": True}))
    (span,) = rig.llm_spans()
    assert span.attributes["openai.response.service_tier"] == tier
    assert Decimal(str(span.attributes["runmeter.cost.usd"])) == Decimal(expected)


def test_a_priority_span_from_another_instrumentation_is_priced_at_priority() -> None:
    from tests.spans import llm, run_root
    from tests.test_run_assembly import feed

    spans = [run_root("r", 1, end_ms=100),
             llm(2, 1, "gpt-5", 1_000, 200, start_ms=1, extra={"openai.response.service_tier": "priority"})]
    records, _ = feed(spans)
    (r,) = records.values()
    assert r.cost_usd == Decimal("0.0065")


def test_openai_cache_writes_are_read_and_priced(rig: Rig) -> None:
    # OpenAI's newer usage reports cache writes: 1,000 in, of which 300 written to the cache. gpt-5 has
    # no cache-write price in genai-prices 0.2.3, so a write costs as input: 1,000 x $1.25/M + 200 x $10/M.
    rig.sim.queue(Reply(text="ok", model="gpt-5", input_tokens=1_000, output_tokens=200, cache_write_tokens=300))
    rig.openai().chat.completions.create(model="gpt-5", messages=MSG)
    (span,) = rig.llm_spans()
    assert span.attributes["gen_ai.usage.cache_creation.input_tokens"] == 300
    assert span.attributes["gen_ai.usage.input_tokens"] == 1_000
    assert Decimal(str(span.attributes["runmeter.cost.usd"])) == Decimal("0.00325")
