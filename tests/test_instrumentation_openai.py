"""The real openai SDK against the simulator on 127.0.0.1; dollar amounts worked out by hand."""

from __future__ import annotations

import asyncio
import gc

import openai
import pytest
from wrapt import FunctionWrapper

import runmeter
from runmeter import Budget, BudgetExceeded
from runmeter.testing import Reply, ToolCall
from tests.instrumented import SECRET, Rig, all_attribute_text

MSG = [{"role": "user", "content": "Summarize the inbox."}]
# gpt-5.5: 25 uncached x $5/M + 32 cached x $0.50/M + 21 out x $30/M = 0.000125 + 0.000016 + 0.00063
GPT55_COST = 0.000771


def _one(rig: Rig):  # type: ignore[no-untyped-def]
    (span,) = rig.llm_spans()
    return span


def check_chat_span(span, model="gpt-5.5"):  # type: ignore[no-untyped-def]
    a = span.attributes
    assert span.name == f"chat {model}"
    assert span.kind.name == "CLIENT"
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == model and a["gen_ai.response.model"] == model
    assert a["server.address"] == "127.0.0.1" and isinstance(a["server.port"], int)
    assert a["gen_ai.usage.input_tokens"] == 57 and isinstance(a["gen_ai.usage.input_tokens"], int)
    assert a["gen_ai.usage.output_tokens"] == 21
    assert a["gen_ai.usage.cache_read.input_tokens"] == 32
    assert a["runmeter.cost.usd"] == pytest.approx(GPT55_COST, abs=1e-12)
    assert isinstance(a["runmeter.cost.usd"], float)
    assert a["runmeter.cost.source"] == "genai-prices@0.2.3"
    assert a["gen_ai.usage.cost.amount"] == pytest.approx(GPT55_COST, abs=1e-12)
    assert a["gen_ai.usage.cost.currency"] == "USD"
    assert isinstance(a["runmeter.llm.input_hash"], str) and len(a["runmeter.llm.input_hash"]) == 16


def usage_reply(**kw):  # type: ignore[no-untyped-def]
    return Reply(text="Three unread, one urgent.", input_tokens=57, output_tokens=21, cached_tokens=32, **kw)


def test_chat_sync(rig: Rig) -> None:
    rig.sim.queue(usage_reply())
    resp = rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG, temperature=0.2, max_tokens=100)
    assert resp.choices[0].message.content == "Three unread, one urgent."
    span = _one(rig)
    check_chat_span(span)
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert span.attributes["gen_ai.request.temperature"] == 0.2 and span.attributes["gen_ai.request.max_tokens"] == 100
    assert "runmeter.cost.estimated" not in span.attributes


def test_chat_async(rig: Rig) -> None:
    rig.sim.queue(usage_reply())

    async def go() -> None:
        async with rig.async_openai() as client:
            await client.chat.completions.create(model="gpt-5.5", messages=MSG)

    asyncio.run(go())
    check_chat_span(_one(rig))


@pytest.mark.parametrize("is_async", [False, True])
def test_chat_stream_with_usage(rig: Rig, is_async: bool) -> None:
    rig.sim.queue(usage_reply())
    if is_async:
        async def go() -> str:
            async with rig.async_openai() as client:
                stream = await client.chat.completions.create(model="gpt-5.5", messages=MSG, stream=True, stream_options={"include_usage": True})
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        text = asyncio.run(go())
    else:
        stream = rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG, stream=True, stream_options={"include_usage": True})
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Three unread, one urgent."
    span = _one(rig)
    check_chat_span(span)
    assert "runmeter.cost.estimated" not in span.attributes


def test_chat_stream_without_usage_is_estimated_and_request_unchanged(rig: Rig) -> None:
    rig.sim.queue(Reply(text="x" * 40))
    stream = rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG, stream=True)
    for _ in stream:
        pass
    assert "stream_options" not in rig.sim.requests[-1].body  # never change the user's request
    a = _one(rig).attributes
    assert a["runmeter.cost.estimated"] is True
    # Estimated: input = len('Summarize the inbox.') // 4 = 5, output = 40 // 4 = 10
    assert a["gen_ai.usage.input_tokens"] == 5 and a["gen_ai.usage.output_tokens"] == 10
    assert a["runmeter.cost.usd"] == pytest.approx(5 * 5e-6 + 10 * 30e-6)


def test_stream_dropped_unread_ends_the_span_once(rig: Rig) -> None:
    rig.sim.queue(usage_reply())
    stream = rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG, stream=True)
    assert rig.llm_spans() == []  # not ended while the stream lives
    del stream
    gc.collect()
    assert len(rig.llm_spans()) == 1


def test_stream_close_and_context_exit_end_once(rig: Rig) -> None:
    rig.sim.queue(usage_reply(), usage_reply())
    client = rig.openai()
    stream = client.chat.completions.create(model="gpt-5.5", messages=MSG, stream=True)
    next(iter(stream))
    stream.close()
    stream.close()
    with client.chat.completions.create(model="gpt-5.5", messages=MSG, stream=True) as s2:
        next(iter(s2))
    del stream, s2
    gc.collect()
    assert len(rig.llm_spans()) == 2


def test_stream_cut_midway_records_the_error(rig: Rig) -> None:
    rig.sim.queue(Reply(text="a long answer that will be cut " * 3, cut_after_chunks=3))
    stream = rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG, stream=True)
    with pytest.raises(Exception) as info:
        for _ in stream:
            pass
    span = _one(rig)
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == type(info.value).__qualname__


@pytest.mark.parametrize(("status", "exc_type"), [(429, openai.RateLimitError), (500, openai.InternalServerError)])
def test_http_errors_are_recorded_and_reraised_unchanged(rig: Rig, status: int, exc_type: type) -> None:
    rig.sim.queue(Reply(status=status, retry_after="1"))
    with pytest.raises(exc_type) as info:
        rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG)
    span = _one(rig)
    assert span.attributes["error.type"] == exc_type.__qualname__
    assert span.status.status_code.name == "ERROR"
    assert info.value.status_code == status
    durations = rig.metrics()["gen_ai.client.operation.duration"].data.data_points
    assert any(p.attributes.get("error.type") == exc_type.__qualname__ for p in durations)


def test_reasoning_tokens_are_in_output(rig: Rig) -> None:
    rig.sim.queue(Reply(input_tokens=10_000, output_tokens=1_000, reasoning_tokens=200))
    rig.openai().chat.completions.create(model="gpt-5.4", messages=MSG)
    a = _one(rig).attributes
    assert a["gen_ai.usage.reasoning.output_tokens"] == 200 and a["gen_ai.usage.output_tokens"] == 1_000
    # 10,000 x $2.50/M + 1,000 x $15/M = 0.025 + 0.015
    assert a["runmeter.cost.usd"] == pytest.approx(0.04)


@pytest.mark.parametrize("mode", ["plain", "stream", "async"])
def test_responses(rig: Rig, mode: str) -> None:
    rig.sim.queue(usage_reply())
    if mode == "plain":
        r = rig.openai().responses.create(model="gpt-5.5", input="Summarize the inbox.", instructions="Be brief.")
        assert r.output_text == "Three unread, one urgent."
    elif mode == "stream":
        for _ in rig.openai().responses.create(model="gpt-5.5", input="Summarize the inbox.", stream=True):
            pass
    else:
        async def go() -> None:
            async with rig.async_openai() as client:
                await client.responses.create(model="gpt-5.5", input="Summarize the inbox.")

        asyncio.run(go())
    check_chat_span(_one(rig))


@pytest.mark.parametrize("stream", [False, True])
def test_responses_web_search_calls_are_priced_per_search(rig: Rig, stream: bool) -> None:
    """The Responses API's built-in web search: each web_search_call output item is a search billed
    $10 per 1,000 beside the tokens. gpt-4o-mini: 1,000 in x $0.15/M + 100 out x $0.60/M + 2
    searches x $0.01 = $0.02021 (the tokens alone: $0.00021)."""
    rig.sim.queue(Reply(text="Found it.", input_tokens=1_000, output_tokens=100, web_searches=2))
    result = rig.openai().responses.create(model="gpt-4o-mini", input="Latest release?", tools=[{"type": "web_search"}], stream=stream)
    for _ in result if stream else ():
        pass
    a = _one(rig).attributes
    assert a["runmeter.cost.web_searches"] == 2
    assert a["runmeter.cost.usd"] == pytest.approx(0.02021, abs=1e-12)


def test_responses_file_search_calls_are_priced_per_search(rig: Rig) -> None:
    """The file search tool: $2.50 per 1,000 calls (genai-prices' storage_searches). gpt-4o-mini:
    1,000 in x $0.15/M + 100 out x $0.60/M + 1 web search x $0.01 + 4 file searches x $0.0025 = $0.02021."""
    rig.sim.queue(Reply(text="Found it.", input_tokens=1_000, output_tokens=100, web_searches=1, file_searches=4))
    rig.openai().responses.create(model="gpt-4o-mini", input="Policy?", tools=[{"type": "file_search", "vector_store_ids": ["vs_1"]}])
    a = _one(rig).attributes
    assert (a["runmeter.cost.web_searches"], a["runmeter.cost.file_searches"]) == (1, 4)
    assert a["runmeter.cost.usd"] == pytest.approx(0.02021, abs=1e-12)


def test_embeddings(rig: Rig) -> None:
    rig.sim.queue(Reply(input_tokens=1_000))
    rig.openai().embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    span = _one(rig)
    assert span.name == "embeddings text-embedding-3-small"
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert span.attributes["runmeter.cost.usd"] == pytest.approx(0.00002)  # 1,000 x $0.02/M


def test_with_raw_response(rig: Rig) -> None:
    rig.sim.queue(usage_reply())
    raw = rig.openai().chat.completions.with_raw_response.create(model="gpt-5.5", messages=MSG)
    assert raw.http_response.status_code == 200
    assert raw.parse().choices[0].message.content == "Three unread, one urgent."
    check_chat_span(_one(rig))


def test_requested_tool_calls_are_hashed_not_recorded(rig: Rig) -> None:
    rig.sim.queue(Reply(tool_calls=[ToolCall("read_file", {"path": "/etc/secret-plan.txt"})], input_tokens=57, output_tokens=21))
    rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG)
    a = _one(rig).attributes
    (requested,) = a["runmeter.tool.requested"]
    assert requested.startswith("read_file#") and len(requested) == len("read_file#") + 16
    assert "secret-plan" not in all_attribute_text(rig.spans())


def test_no_content_and_no_key_by_default(rig: Rig) -> None:
    rig.sim.queue(usage_reply())
    rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG)
    text = all_attribute_text(rig.spans())
    assert "Summarize" not in text and "Three unread" not in text
    assert SECRET not in text and "Bearer" not in text
    assert "gen_ai.input.messages" not in _one(rig).attributes


@pytest.mark.parametrize("rig", ["SPAN_ONLY"], indirect=True)
def test_content_capture_on_span(rig: Rig) -> None:
    rig.sim.queue(usage_reply())
    rig.openai().chat.completions.create(model="gpt-5.5", messages=[{"role": "system", "content": "Be brief."}, *MSG])
    import json

    a = _one(rig).attributes
    assert json.loads(a["gen_ai.input.messages"]) == [{"role": "user", "parts": [{"type": "text", "content": "Summarize the inbox."}]}]
    assert json.loads(a["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    out = json.loads(a["gen_ai.output.messages"])
    assert out[0]["parts"][0]["content"] == "Three unread, one urgent." and out[0]["finish_reason"] == "stop"
    assert SECRET not in all_attribute_text(rig.spans())


@pytest.mark.parametrize("rig", ["EVENT_ONLY"], indirect=True)
def test_content_capture_as_event(rig: Rig) -> None:
    rig.sim.queue(usage_reply())
    rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG)
    span = _one(rig)
    assert "gen_ai.input.messages" not in span.attributes
    (event,) = [e for e in span.events if e.name == "gen_ai.client.inference.operation.details"]
    assert "Summarize the inbox." in event.attributes["gen_ai.input.messages"]


def test_metrics(rig: Rig) -> None:
    rig.sim.queue(usage_reply())
    with runmeter.run("m", owner="ana", project="sales", tracer_provider=rig.tracer_provider):
        rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG)
    m = rig.metrics()
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in m["gen_ai.client.token.usage"].data.data_points}
    assert tokens == {"input": 57, "output": 21}
    (cost,) = m["runmeter.client.cost"].data.data_points
    assert cost.value == pytest.approx(GPT55_COST)
    assert cost.attributes["runmeter.run.owner"] == "ana" and cost.attributes["gen_ai.request.model"] == "gpt-5.5"


def test_budget_stop_raises_before_the_request(rig: Rig) -> None:
    rig.sim.responder = lambda req: usage_reply()
    client = rig.openai()
    with pytest.raises(BudgetExceeded) as info:
        with runmeter.run("capped", budget=Budget(max_cost_usd=0.0015), tracer_provider=rig.tracer_provider) as run:
            for _ in range(5):
                client.chat.completions.create(model="gpt-5.5", messages=MSG)
    # 0.000771 x 2 = 0.001542 >= 0.0015: the third call is stopped before it is sent
    assert rig.sim.count("/chat/completions") == 2
    assert info.value.limit == "max_cost_usd" and info.value.run_id == run.run_id
    assert run.outcome == "failed"
    rig.processor.force_flush()
    (record,) = rig.sink.runs
    assert record.llm_calls == 2 and [b.limit for b in record.breaches] == ["max_cost_usd"]
    assert record.breaches[0].action == "stop" and record.outcome == "failed"


def test_budget_warn_goes_on(rig: Rig) -> None:
    rig.sim.responder = lambda req: usage_reply()
    client = rig.openai()
    with runmeter.run("warned", budget=Budget(max_llm_calls=1, action="warn"), tracer_provider=rig.tracer_provider) as run:
        for _ in range(3):
            client.chat.completions.create(model="gpt-5.5", messages=MSG)
        run.accept()
    assert rig.sim.count("/chat/completions") == 3
    rig.processor.force_flush()
    (record,) = rig.sink.runs
    assert [(b.limit, b.action) for b in record.breaches] == [("max_llm_calls", "warn")]
    assert record.outcome == "accepted" and record.llm_calls == 3


def test_uninstrument_restores_everything(rig: Rig) -> None:
    from openai.resources.chat.completions import Completions

    assert isinstance(Completions.__dict__["create"], FunctionWrapper)
    runmeter.instrumentation.OpenAIInstrumentor().uninstrument()
    assert not isinstance(Completions.__dict__["create"], FunctionWrapper)
    rig.sim.queue(usage_reply())
    rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG)
    assert rig.llm_spans() == []
    runmeter.instrumentation.OpenAIInstrumentor().instrument(tracer_provider=rig.tracer_provider, prices=runmeter.PriceBook(), providers={})


def test_runmeter_failure_never_breaks_the_call(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNMETER_SUPPRESS_INTERNAL_ERRORS", "1")
    monkeypatch.setattr(runmeter.PriceBook, "price", lambda *a, **k: 1 / 0)
    rig.sim.queue(usage_reply())
    resp = rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG)
    assert resp.choices[0].message.content == "Three unread, one urgent."
    assert len(rig.llm_spans()) == 1  # the span still ends


def test_configured_provider_for_a_compatible_server(rig: Rig) -> None:
    from runmeter.instrumentation import OpenAIInstrumentor

    OpenAIInstrumentor().uninstrument()
    OpenAIInstrumentor().instrument(tracer_provider=rig.tracer_provider, prices=runmeter.PriceBook(), providers={rig.sim.url: "vllm"})
    rig.sim.queue(usage_reply())
    rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG)
    assert _one(rig).attributes["gen_ai.provider.name"] == "vllm"


def test_bad_instrument_arguments_raise(rig: Rig) -> None:
    from runmeter.instrumentation import OpenAIInstrumentor

    OpenAIInstrumentor().uninstrument()
    with pytest.raises(ValueError, match="capture_content"):
        OpenAIInstrumentor().instrument(capture_content="LOUD", prices=runmeter.PriceBook(), providers={})
    with pytest.raises(ValueError, match="PriceBook"):
        OpenAIInstrumentor().instrument(prices={"gpt": 1}, providers={})
    OpenAIInstrumentor().instrument(tracer_provider=rig.tracer_provider, prices=runmeter.PriceBook(), providers={})


def test_another_instrumentation_already_wrapping_is_left_alone(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """As when the official openai-v2 instrumentation is loaded first: runmeter does not wrap again."""
    import wrapt
    from openai.resources.chat.completions import Completions

    from runmeter.instrumentation import OpenAIInstrumentor

    OpenAIInstrumentor().uninstrument()
    calls = []
    wrapt.wrap_function_wrapper(Completions, "create", lambda wrapped, inst, args, kwargs: calls.append(1) or wrapped(*args, **kwargs))
    try:
        with caplog.at_level("WARNING"):
            OpenAIInstrumentor().instrument(tracer_provider=rig.tracer_provider, prices=runmeter.PriceBook(), providers={})
            OpenAIInstrumentor().uninstrument()
            OpenAIInstrumentor().instrument(tracer_provider=rig.tracer_provider, prices=runmeter.PriceBook(), providers={})
        assert sum("already instrumented by another library" in r.message for r in caplog.records) == 1  # said once
        rig.sim.queue(usage_reply())
        rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG)
        assert calls == [1] and rig.llm_spans() == []  # one wrapper only: the other library's
    finally:
        OpenAIInstrumentor().uninstrument()
        Completions.create = Completions.__dict__["create"].__wrapped__  # the other library's wrapper, taken off
        OpenAIInstrumentor().instrument(tracer_provider=rig.tracer_provider, prices=runmeter.PriceBook(), providers={})


def test_a_key_quoted_back_in_an_error_is_not_recorded(rig: Rig) -> None:
    """A 401 whose message repeats the API key: the span's status and exception event keep the
    message without the key."""
    rig.sim.queue(Reply(status=401))
    with pytest.raises(openai.AuthenticationError) as caught:
        rig.openai().chat.completions.create(model="gpt-5.5", messages=MSG)
    assert SECRET in str(caught.value)  # the SDK's error does quote it
    span = _one(rig)
    event = next(e for e in span.events if e.name == "exception")
    recorded = [span.status.description, event.attributes["exception.message"], event.attributes["exception.stacktrace"]]
    assert all(SECRET not in text and "[REDACTED]" in text for text in recorded), recorded
    assert "Incorrect API key provided" in span.status.description


def test_capture_settings_from_the_environment_warn_on_bad_values(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """What a real call records under each environment setting; a value that means nothing warns."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from runmeter.instrumentation import OpenAIInstrumentor
    from runmeter.processor import PriceBook
    from runmeter.testing import Simulator

    def recorded(**env: str) -> tuple[bool, bool]:
        """(content on the span, content as an event) for one chat call."""
        for k in ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        exporter = InMemorySpanExporter()
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(exporter))
        inst = OpenAIInstrumentor()
        inst.instrument(tracer_provider=tp, prices=PriceBook(), providers={})
        try:
            with Simulator() as sim:
                sim.queue(usage_reply())
                with openai.OpenAI(base_url=sim.openai_url, api_key=SECRET, max_retries=0) as client:
                    client.chat.completions.create(model="gpt-5.5", messages=MSG)
        finally:
            inst.uninstrument()
        (span,) = exporter.get_finished_spans()
        return "gen_ai.input.messages" in span.attributes, any("gen_ai.input.messages" in (e.attributes or {}) for e in span.events)

    with caplog.at_level("WARNING"):
        assert recorded() == (False, False)
        assert recorded(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="span_and_event") == (True, True)
        assert recorded(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_AND_EVENT",
                        OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT="false") == (True, False)
        assert not [r for r in caplog.records if r.name.startswith("runmeter")]
        assert recorded(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="everything") == (False, False)
    assert "'everything' is not one of" in caplog.text


def test_a_client_calling_another_counts_the_call_once(rig: Rig) -> None:
    """A MethodSpec with suppress_inner (LiteLLM's) turns the inner client's instrumentation off for
    the call: a wrapper around openai's create, instrumented like LiteLLM, makes one span, not two."""
    from typing import Any

    import wrapt

    from runmeter.instrumentation._core import CaptureMode, GenAIHandler, Invocation
    from runmeter.instrumentation._wrap import MethodSpec, sync_wrapper
    from runmeter.processor import PriceBook, TokenUsage

    def build(instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
        return Invocation(operation="chat", provider="openai", request_model=kwargs["model"])

    def read(inv: Invocation, resp: Any) -> None:
        inv.response_model = resp.model
        inv.usage = TokenUsage.from_openai(resp.usage.prompt_tokens, resp.usage.completion_tokens)

    rig.sim.responder = lambda req: Reply(input_tokens=1_000, output_tokens=20)
    client = rig.openai()
    handler = GenAIHandler(rig.tracer_provider, rig.meter_provider, PriceBook(), CaptureMode.NO_CONTENT, "test")
    for suppress, spans in ((True, 1), (False, 2)):
        outer = wrapt.FunctionWrapper(lambda **kw: client.chat.completions.create(**kw),
                                      sync_wrapper(handler, MethodSpec("outer", build, read, suppress_inner=suppress)))
        rig.exporter.clear()
        outer(model="gpt-4o-mini", messages=MSG)
        assert len(rig.llm_spans()) == spans
