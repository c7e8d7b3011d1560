"""The real google-genai SDK against the simulator's Gemini wire format (JSON and its SSE stream)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import runmeter
from runmeter.testing import Reply, ToolCall
from tests.instrumented import SECRET, Rig, all_attribute_text

FLASH = "gemini-2.5-flash"
# gemini-2.5-flash: (1,000 prompt - 400 cached) x $0.30/M + 400 cached x $0.03/M
#                   + (200 candidates + 100 thoughts) x $2.50/M
FLASH_COST = 600 * 0.30e-6 + 400 * 0.03e-6 + 300 * 2.50e-6  # $0.000942


def reply(**kw: Any) -> Reply:
    return Reply(text="Two tickets are urgent.", input_tokens=1_000, cached_tokens=400, output_tokens=200, reasoning_tokens=100, **kw)


def check(span: Any) -> None:
    a = span.attributes
    assert span.name == f"generate_content {FLASH}"
    assert a["gen_ai.provider.name"] == "gcp.gemini" and a["gen_ai.operation.name"] == "generate_content"
    assert a["gen_ai.usage.input_tokens"] == 1_000  # the prompt count, cached content included
    assert a["gen_ai.usage.cache_read.input_tokens"] == 400
    assert a["gen_ai.usage.output_tokens"] == 300  # candidates + thoughts, both billed as output
    assert a["gen_ai.usage.reasoning.output_tokens"] == 100
    assert a["runmeter.cost.usd"] == pytest.approx(FLASH_COST, abs=1e-12)
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert "runmeter.cost.estimated" not in a


def test_generate_content_sync(rig: Rig) -> None:
    rig.sim.queue(reply())
    client = rig.gemini()
    response = client.models.generate_content(model=FLASH, contents="Triage these tickets.",
                                              config={"temperature": 0.2, "max_output_tokens": 500, "system_instruction": "Be terse."})
    assert response.text == "Two tickets are urgent."
    (span,) = rig.llm_spans()
    check(span)
    assert span.attributes["gen_ai.request.temperature"] == 0.2 and span.attributes["gen_ai.request.max_tokens"] == 500
    assert span.attributes["gen_ai.response.model"] == FLASH and span.attributes["server.address"] == "127.0.0.1"
    assert SECRET not in all_attribute_text(rig.spans())  # the API key is never recorded


def test_generate_content_async(rig: Rig) -> None:
    rig.sim.queue(reply())

    async def go() -> None:
        async with rig.gemini().aio as aio:
            await aio.models.generate_content(model=f"models/{FLASH}", contents="Triage these tickets.")

    asyncio.run(go())
    check(*rig.llm_spans())


@pytest.mark.parametrize("is_async", [False, True])
def test_stream_overwrites_the_running_usage(rig: Rig, is_async: bool) -> None:
    rig.sim.queue(reply())
    client = rig.gemini()
    if is_async:
        async def go() -> str:
            text = ""
            async with client.aio as aio:
                async for chunk in await aio.models.generate_content_stream(model=FLASH, contents="Triage these tickets."):
                    text += chunk.text or ""
            return text
        text = asyncio.run(go())
    else:
        text = "".join(chunk.text or "" for chunk in client.models.generate_content_stream(model=FLASH, contents="Triage these tickets."))
    assert text == "Two tickets are urgent."
    (span,) = rig.llm_spans()
    check(span)  # each chunk repeats the prompt count: 1,000 once, not once per chunk


def test_chat_session_counts_each_message(rig: Rig) -> None:
    rig.sim.queue(reply(), reply())
    chat = rig.gemini().chats.create(model=FLASH)
    chat.send_message("First ticket?")
    chat.send_message("And the second?")
    spans = rig.llm_spans()
    assert len(spans) == 2
    for span in spans:
        check(span)
    # the second message carries the first exchange: a different input, no loop signal
    assert spans[0].attributes["runmeter.llm.input_hash"] != spans[1].attributes["runmeter.llm.input_hash"]


def test_automatic_function_calling_counts_every_hop(rig: Rig) -> None:
    """The SDK calls the model, runs the Python tool, and calls it again inside one
    generate_content: two requests, two priced calls (wrapping the public method would see one)."""
    calls: list[str] = []

    def lookup_ticket(ticket_id: str) -> str:
        """Look a ticket up."""
        calls.append(ticket_id)
        return "urgent"

    rig.sim.queue(Reply(tool_calls=[ToolCall("lookup_ticket", {"ticket_id": "T-1"})], input_tokens=1_000, output_tokens=20), reply())
    with runmeter.run("afc-triage", tracer_provider=rig.tracer_provider):
        response = rig.gemini().models.generate_content(model=FLASH, contents="Is T-1 urgent?", config={"tools": [lookup_ticket]})
    assert response.text == "Two tickets are urgent." and calls == ["T-1"]
    spans = rig.llm_spans()
    assert len(spans) == 2 and rig.sim.count(":generateContent") == 2
    first = 1_000 * 0.30e-6 + 20 * 2.50e-6  # $0.00035
    assert spans[0].attributes["runmeter.cost.usd"] == pytest.approx(first, abs=1e-12)
    (requested,) = spans[0].attributes["runmeter.tool.requested"]
    assert requested.startswith("lookup_ticket#")  # the function call the model asked for
    rig.processor.force_flush()
    (record,) = [r for r in rig.sink.runs if r.name == "afc-triage"]
    assert record.llm_calls == 2
    assert float(record.cost_usd) == pytest.approx(first + FLASH_COST, abs=1e-12)


def test_long_context_is_priced_at_its_tier(rig: Rig) -> None:
    rig.sim.queue(Reply(text="Summary.", input_tokens=300_000, output_tokens=1_000))
    rig.gemini().models.generate_content(model="gemini-2.5-pro", contents="A very long document.")
    (span,) = rig.llm_spans()
    # above 200k prompt tokens: $2.50/M in and $15/M out (below it would be $1.25 and $10)
    assert span.attributes["runmeter.cost.usd"] == pytest.approx(300_000 * 2.5e-6 + 1_000 * 15e-6, abs=1e-12)


def test_an_error_is_recorded_and_raised_unpriced(rig: Rig) -> None:
    from google.genai import errors

    rig.sim.queue(Reply(status=429))
    with pytest.raises(errors.ClientError):
        rig.gemini().models.generate_content(model=FLASH, contents="hi")
    (span,) = rig.llm_spans()
    assert span.status.status_code.name == "ERROR" and "runmeter.cost.usd" not in span.attributes
