"""runmeter beside the official OpenTelemetry instrumentations of the same clients: one call, once.

The official google-genai instrumentation makes one span per public ``generate_content``, around
automatic function calling; runmeter makes one per request inside it. runmeter's count (the
official span's usage is the last hop's alone). The official botocore instrumentation wraps
``_make_api_call`` first: runmeter steps aside and prices its Bedrock spans through the dialect.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runmeter.testing import Reply, ToolCall
from tests.instrumented import Rig

FLASH_HOP = 1_000 * 0.30e-6 + 20 * 2.50e-6  # the tool-call hop: $0.00035
FLASH_ANSWER = 600 * 0.30e-6 + 400 * 0.03e-6 + 300 * 2.50e-6  # 1,000 in (400 cached), 200 out + 100 thoughts: $0.000942


@pytest.fixture
def official_gemini(rig: Rig) -> Iterator[None]:
    from opentelemetry.instrumentation.google_genai import GoogleGenAiSdkInstrumentor

    # Its package pins google-genai < 3; the wrapped methods are the same in 3.x.
    GoogleGenAiSdkInstrumentor().instrument(tracer_provider=rig.tracer_provider, skip_dep_check=True)
    yield
    GoogleGenAiSdkInstrumentor().uninstrument()


def test_gemini_under_the_official_instrumentation(rig: Rig, official_gemini: None) -> None:
    def lookup_ticket(ticket_id: str) -> str:
        """Look a ticket up."""
        return "urgent"

    rig.sim.queue(Reply(tool_calls=[ToolCall("lookup_ticket", {"ticket_id": "T-1"})], input_tokens=1_000, output_tokens=20),
                  Reply(text="Urgent.", input_tokens=1_000, cached_tokens=400, output_tokens=200, reasoning_tokens=100))
    rig.gemini().models.generate_content(model="gemini-2.5-flash", contents="Is T-1 urgent?", config={"tools": [lookup_ticket]})
    rig.processor.force_flush()
    (run,) = rig.sink.runs
    assert run.llm_calls == 2  # each request once: not the official span's one, not three
    assert float(run.cost_usd) == pytest.approx(FLASH_HOP + FLASH_ANSWER, abs=1e-12)
    official = [s for s in rig.spans() if s.instrumentation_scope.name.startswith("opentelemetry.instrumentation.google_genai")
                and s.name.startswith("generate_content")]
    assert len(official) == 1 and official[0].attributes.get("runmeter.cost.duplicate") is True


def test_bedrock_under_the_official_botocore_instrumentation(rig: Rig) -> None:
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

    from runmeter.instrumentation import BedrockInstrumentor
    from runmeter.processor import PriceBook

    BedrockInstrumentor().uninstrument()  # as in a program where botocore's is loaded first
    BotocoreInstrumentor().instrument(tracer_provider=rig.tracer_provider)
    BedrockInstrumentor().instrument(tracer_provider=rig.tracer_provider, prices=PriceBook(), providers={})
    try:
        rig.sim.queue(Reply(text="Urgent.", input_tokens=1_000, output_tokens=200))
        rig.bedrock().converse(modelId="meta.llama3-3-70b-instruct-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
    finally:
        BotocoreInstrumentor().uninstrument()
    rig.processor.force_flush()
    (run,) = rig.sink.runs
    assert run.llm_calls == 1 and float(run.cost_usd) == pytest.approx(1_200 * 0.72e-6, abs=1e-12)  # Llama 3.3 70B


@pytest.mark.parametrize("with_runmeter", [False, True])
def test_bedrock_under_openllmetry(rig: Rig, with_runmeter: bool) -> None:
    """OpenLLMetry's Bedrock spans name the model without its vendor (llama3-3-70b-instruct-v1:0):
    priced all the same; beside runmeter's own span of the call, counted once."""
    from opentelemetry.instrumentation.bedrock import BedrockInstrumentor as OpenLLMetryBedrock

    from runmeter.instrumentation import BedrockInstrumentor

    if not with_runmeter:
        BedrockInstrumentor().uninstrument()
    OpenLLMetryBedrock().instrument(tracer_provider=rig.tracer_provider)
    try:
        rig.sim.queue(Reply(text="Urgent.", input_tokens=1_000, output_tokens=200))
        rig.bedrock().converse(modelId="meta.llama3-3-70b-instruct-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
    finally:
        OpenLLMetryBedrock().uninstrument()
    rig.processor.force_flush()
    (run,) = rig.sink.runs
    assert run.llm_calls == 1 and float(run.cost_usd) == pytest.approx(1_200 * 0.72e-6, abs=1e-12)
