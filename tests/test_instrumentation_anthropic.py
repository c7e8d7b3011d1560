"""The real anthropic SDK against the simulator; its own spans counted once with ours."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import anthropic
import pytest

import runmeter
from runmeter.testing import Reply, ToolCall
from tests.instrumented import SECRET, Rig, all_attribute_text

MSG = [{"role": "user", "content": "Triage these tickets."}]
# claude-haiku-4-5: 1,000 uncached x $1/M + 4,000 read x $0.10/M + 1,000 written x $1.25/M + 200 out x $5/M
HAIKU_COST = 0.00365


def reply(**kw):  # type: ignore[no-untyped-def]
    return Reply(text="Two tickets are urgent.", input_tokens=1_000, output_tokens=200, cached_tokens=4_000, cache_write_tokens=1_000, **kw)


def ours(rig: Rig):  # type: ignore[no-untyped-def]
    (span,) = rig.llm_spans()
    return span


def check(span) -> None:  # type: ignore[no-untyped-def]
    a = span.attributes
    assert span.name == "chat claude-haiku-4-5"
    assert a["gen_ai.provider.name"] == "anthropic" and a["gen_ai.operation.name"] == "chat"
    # the spec's input_tokens include the cache: 1,000 + 4,000 + 1,000
    assert a["gen_ai.usage.input_tokens"] == 6_000
    assert a["gen_ai.usage.cache_read.input_tokens"] == 4_000
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 1_000
    assert a["gen_ai.usage.output_tokens"] == 200
    assert a["runmeter.cost.usd"] == pytest.approx(HAIKU_COST, abs=1e-12)
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)


def test_create_sync(rig: Rig) -> None:
    rig.sim.queue(reply())
    msg = rig.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=300, messages=MSG, system="Be terse.")
    assert msg.content[0].text == "Two tickets are urgent."
    check(ours(rig))
    assert ours(rig).attributes["gen_ai.request.max_tokens"] == 300


def test_create_async(rig: Rig) -> None:
    rig.sim.queue(reply())

    async def go() -> None:
        async with rig.async_anthropic() as client:
            await client.messages.create(model="claude-haiku-4-5", max_tokens=300, messages=MSG)

    asyncio.run(go())
    check(ours(rig))


@pytest.mark.parametrize("is_async", [False, True])
def test_create_stream_overwrites_cumulative_usage(rig: Rig, is_async: bool) -> None:
    rig.sim.queue(reply())
    if is_async:
        async def go() -> None:
            async with rig.async_anthropic() as client:
                stream = await client.messages.create(model="claude-haiku-4-5", max_tokens=300, messages=MSG, stream=True)
                async for _ in stream:
                    pass
        asyncio.run(go())
    else:
        for _ in rig.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=300, messages=MSG, stream=True):
            pass
    span = ours(rig)
    check(span)  # output is 200, not 201 (message_start's placeholder 1 is overwritten, never added)
    assert "runmeter.cost.estimated" not in span.attributes


@pytest.mark.parametrize("stream", [False, True])
def test_cache_writes_kept_for_an_hour_are_priced_at_their_own_rate(rig: Rig, stream: bool) -> None:
    """A 1-hour cache write costs 2x input, a 5-minute one 1.25x (claude-haiku-4-5: $2/M and
    $1.25/M). 1,000 uncached x $1/M + 1,000 written for 5 minutes x $1.25/M + 2,000 written for an
    hour x $2/M + 500 out x $5/M = $0.00875; priced as if all 3,000 were 5-minute writes it
    would be $0.00725."""
    rig.sim.queue(Reply(text="ok", input_tokens=1_000, output_tokens=500, cache_write_tokens=3_000, cache_write_1h_tokens=2_000))
    result = rig.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=600, messages=MSG, stream=stream)
    for _ in result if stream else ():
        pass
    a = ours(rig).attributes
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.cache_creation.input_tokens"]) == (4_000, 3_000)
    assert a["runmeter.cost.cache_write_1h_tokens"] == 2_000
    assert a["runmeter.cost.usd"] == pytest.approx(0.00875, abs=1e-12)


@pytest.mark.parametrize("stream", [False, True])
def test_web_searches_are_priced_per_search(rig: Rig, stream: bool) -> None:
    """The web search tool runs on Anthropic's side, billed $10 per 1,000 searches beside the tokens
    (usage.server_tool_use; on a stream the count comes with message_delta, message_start says 0).
    claude-haiku-4-5: 1,000 in x $1/M + 100 out x $5/M + 3 searches x $0.01 = $0.0315."""
    rig.sim.queue(Reply(text="ok", input_tokens=1_000, output_tokens=100, web_searches=3))
    result = rig.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=600, messages=MSG, stream=stream,
                                             tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}])
    for _ in result if stream else ():
        pass
    a = ours(rig).attributes
    assert a["runmeter.cost.web_searches"] == 3
    assert a["runmeter.cost.usd"] == pytest.approx(0.0315, abs=1e-12)


@pytest.mark.parametrize("is_async", [False, True])
def test_messages_stream_helper(rig: Rig, is_async: bool) -> None:
    rig.sim.queue(reply())
    if is_async:
        async def go() -> str:
            async with rig.async_anthropic() as client:
                async with client.messages.stream(model="claude-haiku-4-5", max_tokens=300, messages=MSG) as stream:
                    return "".join([t async for t in stream.text_stream])
        text = asyncio.run(go())
    else:
        with rig.anthropic().messages.stream(model="claude-haiku-4-5", max_tokens=300, messages=MSG) as stream:
            text = "".join(stream.text_stream)
    assert text == "Two tickets are urgent."
    check(ours(rig))


# claude-haiku-4-5, the run: 40 uncached x $1/M + 1,000 read x $0.10/M + 200 written x $1.25/M
# + 30 out x $5/M = $0.00004 + $0.0001 + $0.00025 + $0.00015 = $0.000540 a call.
SMALL_COST = Decimal("0.000540")


def small() -> Reply:
    return Reply(text="ok", input_tokens=40, output_tokens=30, cached_tokens=1_000, cache_write_tokens=200)


def _call(client, path: str) -> None:  # type: ignore[no-untyped-def]
    """One model call down one client path (sync)."""
    kw = {"model": "claude-haiku-4-5", "max_tokens": 300, "messages": MSG}
    if path == "create":
        client.messages.create(**kw)
    elif path == "create_stream":
        for _ in client.messages.create(stream=True, **kw):
            pass
    elif path == "stream_helper":
        with client.messages.stream(**kw) as stream:
            "".join(stream.text_stream)
    elif path == "stream_final_message":
        with client.messages.stream(**kw) as stream:
            stream.get_final_message()
    elif path == "raw_response":
        client.messages.with_raw_response.create(**kw).parse()


async def _acall(client, path: str) -> None:  # type: ignore[no-untyped-def]
    kw = {"model": "claude-haiku-4-5", "max_tokens": 300, "messages": MSG}
    if path == "create":
        await client.messages.create(**kw)
    elif path == "create_stream":
        async for _ in await client.messages.create(stream=True, **kw):
            pass
    elif path in ("stream_helper", "stream_final_message"):
        async with client.messages.stream(**kw) as stream:
            await stream.get_final_message()
    elif path == "raw_response":
        await (await client.messages.with_raw_response.create(**kw)).parse()


PATHS = ["create", "create_stream", "stream_helper", "stream_final_message", "raw_response"]


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("path", PATHS)
def test_one_call_is_counted_once_with_the_sdks_own_span(rig: Rig, path: str, is_async: bool) -> None:
    """anthropic 2.x emits its own ``anthropic.messages.create`` span: it nests under ours on every
    path, is flagged a duplicate and carries no cost, so a sum over spans counts the call once."""
    rig.sim.queue(small())
    rig.sim.queue(small())
    with runmeter.run("claude-run", tracer_provider=rig.tracer_provider):
        if is_async:
            async def go() -> None:
                async with rig.async_anthropic() as client:
                    await _acall(client, "create")
                    await _acall(client, path)
            asyncio.run(go())
        else:
            client = rig.anthropic()
            _call(client, "create")
            _call(client, path)
    rig.processor.force_flush()
    ours_ = rig.llm_spans()
    sdk = [s for s in rig.spans() if s.name == "anthropic.messages.create"]
    assert len(ours_) == 2 and len(sdk) == 2, "the anthropic SDK emits its own span per call"
    assert {s.parent.span_id for s in sdk} == {s.context.span_id for s in ours_}
    for s in sdk:
        assert s.attributes["runmeter.cost.duplicate"] is True
        assert not any("cost" in k and k != "runmeter.cost.duplicate" for k in s.attributes), dict(s.attributes)
    costed = [s.attributes["runmeter.cost.usd"] for s in rig.spans() if "runmeter.cost.usd" in s.attributes]
    assert sum(Decimal(str(c)) for c in costed) == 2 * SMALL_COST
    (record,) = rig.sink.runs
    assert record.llm_calls == 2
    assert record.cost_usd == 2 * SMALL_COST == Decimal("0.001080")


def test_rate_limit_error(rig: Rig) -> None:
    rig.sim.queue(Reply(status=429, retry_after="2"))
    with pytest.raises(anthropic.RateLimitError):
        rig.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MSG)
    assert ours(rig).attributes["error.type"] == "RateLimitError"


def test_tool_use_requested_is_hashed(rig: Rig) -> None:
    rig.sim.queue(Reply(tool_calls=[ToolCall("search", {"q": "confidential merger"})], input_tokens=10, output_tokens=5))
    rig.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MSG)
    (req,) = ours(rig).attributes["runmeter.tool.requested"]
    assert req.startswith("search#")
    text = all_attribute_text(rig.spans())
    assert "confidential" not in text and SECRET not in text and "Triage these" not in text


def test_dated_model_id_is_priced(rig: Rig) -> None:
    rig.sim.queue(reply(model="claude-haiku-4-5-20251001"))
    rig.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=300, messages=MSG)
    a = ours(rig).attributes
    assert a["gen_ai.response.model"] == "claude-haiku-4-5-20251001"
    assert a["runmeter.cost.usd"] == pytest.approx(HAIKU_COST, abs=1e-12)
