"""Tool calls a zero-code agent runs itself are counted, from their results going back to the model.

Each test is an agent loop written as the providers' own docs show it (the real SDKs, against the
simulator on 127.0.0.1): the model asks for tools, the agent runs them with no runmeter code and
sends the results back. The expected counts are what the agent did, counted by the test itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import runmeter
from runmeter import Budget, BudgetExceeded
from runmeter.conventions import load_dialects
from runmeter.instrumentation import OpenAIInstrumentor
from runmeter.processor import PriceBook, assemble, read_span
from runmeter.testing import Reply, Simulator, ToolCall
from tests.instrumented import SECRET, Rig

ASK = [{"role": "user", "content": "Fix the failing test."}]


def tool_spans(rig: Rig) -> list[Any]:
    return [s for s in rig.spans() if (s.attributes or {}).get("gen_ai.operation.name") == "execute_tool"]


def counted(spans: list[Any]) -> list[Any]:
    return [s for s in spans if not (s.attributes or {}).get("runmeter.cost.duplicate")]


def run_tool(name: str, args: dict[str, Any]) -> str:
    return f"{name} ran with {json.dumps(args, sort_keys=True)}"


def chat_loop(client: Any, tool: Any = None) -> int:
    """The OpenAI function-calling loop of the docs; returns how many tools the agent ran."""
    messages: list[Any] = list(ASK)
    ran = 0
    while True:
        resp = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        msg = resp.choices[0].message
        if not msg.tool_calls:
            return ran
        messages.append(msg)  # the SDK's own message object, as the docs do
        for tc in msg.tool_calls:
            args = json.loads(tc.function.arguments)
            if tool is not None:
                with tool(tc.function.name, args=args):
                    out = run_tool(tc.function.name, args)
            else:
                out = run_tool(tc.function.name, args)
            ran += 1
            messages.append({"role": "tool", "tool_call_id": tc.id, "content": out})


def queue_agent(rig: Rig) -> None:
    """Three turns of tools (two at once, then one, then the same again), then the answer."""
    rig.sim.queue(
        Reply(tool_calls=[ToolCall("read_file", {"path": "app.py"}, "call_a"), ToolCall("grep", {"q": "def main"}, "call_b")],
              input_tokens=100, output_tokens=20),
        Reply(tool_calls=[ToolCall("read_file", {"path": "app.py"}, "call_c")], input_tokens=150, output_tokens=10),
        Reply(tool_calls=[ToolCall("read_file", {"path": "app.py"}, "call_d")], input_tokens=170, output_tokens=10),
        Reply(text="Fixed.", input_tokens=190, output_tokens=5),
    )


def test_a_zero_code_agents_tool_calls_are_counted_in_its_run(rig: Rig) -> None:
    queue_agent(rig)
    with runmeter.run("fix-test", tracer_provider=rig.tracer_provider) as run:
        ran = chat_loop(rig.openai())
    assert ran == 4
    tools = tool_spans(rig)
    assert sorted(s.attributes["gen_ai.tool.name"] for s in tools) == ["grep", "read_file", "read_file", "read_file"]
    assert sorted(s.attributes["gen_ai.tool.call.id"] for s in tools) == ["call_a", "call_b", "call_c", "call_d"]
    assert all(s.attributes["runmeter.tool.inferred"] is True for s in tools)
    root = next(s for s in rig.spans() if (s.attributes or {}).get("runmeter.run.root"))
    assert all(s.parent.span_id == root.context.span_id for s in tools)
    # Each ran between the response that asked for it and the request that answered it.
    llm = sorted(rig.llm_spans(), key=lambda s: s.start_time)
    a = next(s for s in tools if s.attributes["gen_ai.tool.call.id"] == "call_a")
    assert llm[0].start_time <= a.start_time <= llm[0].end_time and a.end_time <= llm[1].start_time
    # The arguments are hashed, never recorded; the same arguments give the same hash.
    hashes = {s.attributes["runmeter.tool.args_hash"] for s in tools if s.attributes["gen_ai.tool.name"] == "read_file"}
    assert len(hashes) == 1 and "app.py" not in str([dict(s.attributes) for s in tools])
    rig.processor.force_flush()
    (record,) = rig.sink.runs
    assert record.run_id == run.run_id
    assert record.tool_calls == {"grep": 1, "read_file": 3}
    assert record.llm_calls == 4
    # read_file(app.py) three times: the identical-tool-call loop signal, as with runmeter.tool().
    assert [(s.kind, s.count) for s in record.loop_signals if s.kind == "identical_tool_call"] == [("identical_tool_call", 3)]


def test_a_retried_request_or_a_history_sent_again_counts_each_tool_once(rig: Rig) -> None:
    rig.sim.queue(
        Reply(tool_calls=[ToolCall("read_file", {"path": "a"}, "call_1")], input_tokens=10, output_tokens=2),
        Reply(text="partial", input_tokens=10, output_tokens=2),
        Reply(text="again", input_tokens=10, output_tokens=2),
        Reply(text="more", input_tokens=10, output_tokens=2),
    )
    client = rig.openai()
    with runmeter.run("retry", tracer_provider=rig.tracer_provider):
        messages: list[Any] = list(ASK)
        msg = client.chat.completions.create(model="gpt-4o-mini", messages=messages).choices[0].message
        messages += [msg, {"role": "tool", "tool_call_id": "call_1", "content": "text"}]
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # the user's own retry
        messages += [{"role": "assistant", "content": "partial"}, {"role": "user", "content": "go on"}]
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # the history again
    assert len(tool_spans(rig)) == 1
    rig.processor.force_flush()
    assert rig.sink.runs[0].tool_calls == {"read_file": 1}


def test_runmeter_tool_around_the_tool_is_one_call_not_two(rig: Rig) -> None:
    queue_agent(rig)
    with runmeter.run("fix-test", tracer_provider=rig.tracer_provider):
        ran = chat_loop(rig.openai(), tool=lambda name, args: runmeter.tool(name, args=args, tracer_provider=rig.tracer_provider))
    tools = tool_spans(rig)
    # runmeter.tool()'s span for each call; the inferred one of the same call is not exported (it
    # would only say that call again in every trace view).
    assert len(tools) == ran == 4
    assert all(s.attributes.get("runmeter.tool.inferred") is None for s in tools)
    rig.processor.force_flush()
    assert rig.sink.runs[0].tool_calls == {"grep": 1, "read_file": 3}


def test_a_frameworks_tool_span_covers_the_call_and_its_other_tools_still_count(rig: Rig) -> None:
    """A framework (another instrumentation's tracer) makes tool spans for the tools it runs, named
    as the model called them; a tool it does not trace is still counted, from its result."""
    tracer = rig.tracer_provider.get_tracer("some.framework")
    queue_agent(rig)

    def framework(name: str, args: Any) -> Any:
        if name == "grep":
            return _nothing()
        return tracer.start_as_current_span(f"{name}.tool", attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name})

    with runmeter.run("fix-test", tracer_provider=rig.tracer_provider):
        chat_loop(rig.openai(), tool=framework)
    names = sorted(s.attributes["gen_ai.tool.name"] for s in counted(tool_spans(rig)))
    assert names == ["grep", "read_file", "read_file", "read_file"]
    rig.processor.force_flush()
    assert rig.sink.runs[0].tool_calls == {"grep": 1, "read_file": 3}


def test_tool_limits_stop_the_next_model_call(rig: Rig) -> None:
    """The tools ran before any check could see them; the run is stopped before the next LLM call."""
    rig.sim.queue(
        Reply(tool_calls=[ToolCall("grep", {"q": str(i)}, f"call_{i}") for i in range(3)], input_tokens=10, output_tokens=2),
        Reply(text="never sent", input_tokens=10, output_tokens=2),
    )
    with pytest.raises(BudgetExceeded) as stopped:
        with runmeter.run("bounded", budget=Budget(max_tool_calls=2), tracer_provider=rig.tracer_provider):
            chat_loop(rig.openai())
    assert stopped.value.breach.limit == "max_tool_calls" and stopped.value.breach.value == 3
    assert rig.sim.count("/chat/completions") == 1


def test_a_tool_outside_the_allowed_ones_stops_the_next_model_call(rig: Rig) -> None:
    rig.sim.queue(
        Reply(tool_calls=[ToolCall("delete_repo", {}, "call_x")], input_tokens=10, output_tokens=2),
        Reply(text="never sent", input_tokens=10, output_tokens=2),
    )
    with pytest.raises(BudgetExceeded) as stopped:
        with runmeter.run("bounded", budget=Budget(allowed_tools=("grep",)), tracer_provider=rig.tracer_provider):
            chat_loop(rig.openai())
    assert stopped.value.breach.limit == "allowed_tools"
    assert rig.sim.count("/chat/completions") == 1


def test_outside_every_span_no_tool_is_made_up(rig: Rig) -> None:
    queue_agent(rig)
    chat_loop(rig.openai())
    assert tool_spans(rig) == []


def test_responses_api_with_previous_response_id(rig: Rig) -> None:
    """Only the outputs are sent; the calls are in the stored response: named from what it said."""
    rig.sim.queue(
        Reply(tool_calls=[ToolCall("lookup", {"id": 7}, "call_r1"), ToolCall("lookup", {"id": 8}, "call_r2")], input_tokens=10, output_tokens=2),
        Reply(text="Done.", input_tokens=10, output_tokens=2),
    )
    client = rig.openai()
    with runmeter.run("resp", tracer_provider=rig.tracer_provider):
        first = client.responses.create(model="gpt-4o-mini", input="Look both up.")
        outputs = [{"type": "function_call_output", "call_id": item.call_id, "output": "ok"} for item in first.output if item.type == "function_call"]
        client.responses.create(model="gpt-4o-mini", previous_response_id=first.id, input=outputs)
    assert sorted(s.attributes["gen_ai.tool.call.id"] for s in tool_spans(rig)) == ["call_r1", "call_r2"]
    rig.processor.force_flush()
    assert rig.sink.runs[0].tool_calls == {"lookup": 2}


def test_responses_api_with_the_whole_history(rig: Rig) -> None:
    rig.sim.queue(
        Reply(tool_calls=[ToolCall("lookup", {"id": 7}, "call_h1")], input_tokens=10, output_tokens=2),
        Reply(tool_calls=[ToolCall("lookup", {"id": 8}, "call_h2")], input_tokens=10, output_tokens=2),
        Reply(text="Done.", input_tokens=10, output_tokens=2),
    )
    client = rig.openai()
    with runmeter.run("resp", tracer_provider=rig.tracer_provider):
        items: list[Any] = [{"role": "user", "content": "Look them up."}]
        while True:
            resp = client.responses.create(model="gpt-4o-mini", input=items)
            calls = [item for item in resp.output if item.type == "function_call"]
            if not calls:
                break
            items += resp.output
            items += [{"type": "function_call_output", "call_id": c.call_id, "output": "ok"} for c in calls]
    assert sorted(s.attributes["gen_ai.tool.call.id"] for s in tool_spans(rig)) == ["call_h1", "call_h2"]


def test_anthropic_tool_results(rig: Rig) -> None:
    rig.sim.queue(
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, "toolu_1"), ToolCall("get_time", {"tz": "CET"}, "toolu_2")],
              input_tokens=10, output_tokens=2),
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Bergen"}, "toolu_3")], input_tokens=10, output_tokens=2),
        Reply(text="Cold.", input_tokens=10, output_tokens=2),
    )
    client = rig.anthropic()
    with runmeter.run("weather", tracer_provider=rig.tracer_provider):
        messages: list[Any] = [{"role": "user", "content": "Weather?"}]
        while True:
            msg = client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=messages)
            uses = [b for b in msg.content if b.type == "tool_use"]
            if not uses:
                break
            messages.append({"role": "assistant", "content": msg.content})  # the SDK's blocks, as the docs do
            messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": "ok"} for u in uses]})
    assert sorted((s.attributes["gen_ai.tool.name"], s.attributes["gen_ai.tool.call.id"]) for s in tool_spans(rig)) == [
        ("get_time", "toolu_2"), ("get_weather", "toolu_1"), ("get_weather", "toolu_3")]
    rig.processor.force_flush()
    assert rig.sink.runs[0].tool_calls == {"get_time": 1, "get_weather": 2}


def test_gemini_function_responses_without_ids(rig: Rig) -> None:
    from google.genai import types

    rig.sim.queue(
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"})], input_tokens=10, output_tokens=2),
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"})], input_tokens=10, output_tokens=2),
        Reply(text="Cold.", input_tokens=10, output_tokens=2),
    )
    client = rig.gemini()
    with runmeter.run("weather", tracer_provider=rig.tracer_provider):
        contents: list[Any] = [types.Content(role="user", parts=[types.Part(text="Weather in Oslo?")])]
        for _ in range(3):
            resp = client.models.generate_content(model="gemini-2.5-flash", contents=contents)
            calls = resp.function_calls or []
            if not calls:
                break
            contents.append(resp.candidates[0].content)
            contents.append(types.Content(role="user", parts=[
                types.Part.from_function_response(name=c.name, response={"result": "cold"}) for c in calls]))
    tools = tool_spans(rig)
    assert [s.attributes["gen_ai.tool.name"] for s in tools] == ["get_weather", "get_weather"]
    rig.processor.force_flush()
    assert rig.sink.runs[0].tool_calls == {"get_weather": 2}


def test_bedrock_converse_tool_results(rig: Rig) -> None:
    rig.sim.queue(
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, "tooluse_1")], input_tokens=10, output_tokens=2),
        Reply(text="Cold.", input_tokens=10, output_tokens=2),
    )
    client = rig.bedrock()
    model = "anthropic.claude-3-5-haiku-20241022-v1:0"
    with runmeter.run("weather", tracer_provider=rig.tracer_provider):
        messages: list[Any] = [{"role": "user", "content": [{"text": "Weather?"}]}]
        out = client.converse(modelId=model, messages=messages)["output"]["message"]
        messages.append(out)
        uses = [b["toolUse"] for b in out["content"] if "toolUse" in b]
        messages.append({"role": "user", "content": [{"toolResult": {"toolUseId": u["toolUseId"], "content": [{"text": "cold"}]}} for u in uses]})
        client.converse(modelId=model, messages=messages)
    assert [(s.attributes["gen_ai.tool.name"], s.attributes["gen_ai.tool.call.id"]) for s in tool_spans(rig)] == [("get_weather", "tooluse_1")]


def test_assembly_counts_each_tool_once_as_local_mode_does() -> None:
    """An agent that sends its spans elsewhere (a collector assembles them): the inferred calls and
    runmeter.tool()'s spans meet only in assembly, which counts each call once."""
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=tp, prices=PriceBook(), providers={})
    try:
        with Simulator() as sim:
            import openai

            sim.queue(
                Reply(tool_calls=[ToolCall("read_file", {"path": "a"}, "c1"), ToolCall("grep", {"q": "b"}, "c2")], input_tokens=10, output_tokens=2),
                Reply(tool_calls=[ToolCall("read_file", {"path": "c"}, "c3")], input_tokens=10, output_tokens=2),
                Reply(text="Done.", input_tokens=10, output_tokens=2),
            )
            client = openai.OpenAI(base_url=sim.openai_url, api_key=SECRET, max_retries=0)
            wrapped = {"read_file"}  # the agent wraps one of its two tools in runmeter.tool()
            with runmeter.run("remote", tracer_provider=tp):
                chat_loop(client, tool=lambda name, args: runmeter.tool(name, args=args, tracer_provider=tp) if name in wrapped else _nothing())
            client.close()
    finally:
        OpenAIInstrumentor().uninstrument()
    spans = exporter.get_finished_spans()
    assert sum(1 for s in spans if (s.attributes or {}).get("runmeter.tool.inferred")) == 3
    dialects, prices = load_dialects(), PriceBook()
    facts = [read_span(s, dialects, prices)[0] for s in spans]
    (record,) = assemble(facts).records
    assert record.tool_calls == {"grep": 1, "read_file": 2}


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def test_requests_of_odd_shapes_count_no_tool_and_the_call_still_counts(rig: Rig) -> None:
    """Tool messages with no id or a number for one, a tool message with no assistant turn before
    it, 500 tool results at once: the call is priced as always, the tools counted are the ones the
    request can name, and at most 128 from one request."""
    rig.sim.responder = lambda req: Reply(text="ok", input_tokens=10, output_tokens=2)
    client = rig.openai()
    many = [{"role": "tool", "tool_call_id": f"call_{i}", "content": "x"} for i in range(500)]
    calls = [{"id": f"call_{i}", "type": "function", "function": {"name": "grep", "arguments": "{}"}} for i in range(500)]
    with runmeter.run("odd", tracer_provider=rig.tracer_provider):
        client.chat.completions.create(model="gpt-4o-mini", messages=[*ASK, {"role": "tool", "tool_call_id": "call_unknown", "content": "x"}])
        client.chat.completions.create(model="gpt-4o-mini", messages=[
            *ASK, {"role": "assistant", "content": None, "tool_calls": [{"id": "call_n", "type": "function", "function": {"name": "grep", "arguments": "{}"}}]},
            {"role": "tool", "content": "no id"}, {"role": "tool", "tool_call_id": 42, "content": "a number"}])
        client.chat.completions.create(model="gpt-4o-mini", messages=[*ASK, {"role": "assistant", "content": None, "tool_calls": calls}, *many])
    assert len(rig.llm_spans()) == 3 and all("runmeter.cost.usd" in s.attributes for s in rig.llm_spans())
    tools = tool_spans(rig)
    assert len(tools) == 128 and {s.attributes["gen_ai.tool.name"] for s in tools} == {"grep"}


def test_a_reader_that_fails_counts_nothing_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNMETER_SUPPRESS_INTERNAL_ERRORS", "1")  # as outside the tests: counted, not raised
    from runmeter.core import internal_error_counts
    from runmeter.instrumentation._tools import answers_in, chat_answers

    class Hostile:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("no attributes here")

    before = internal_error_counts().get("tools.answers", 0)
    assert answers_in(chat_answers, [Hostile()]) == []
    assert internal_error_counts()["tools.answers"] == before + 1


def test_a_handoff_to_another_agent_is_no_tool_call(rig: Rig) -> None:
    """The OpenAI Agents SDK and LangGraph's supervisor name their handoff tools transfer_to_<agent>."""
    rig.sim.queue(
        Reply(tool_calls=[ToolCall("transfer_to_fixer", {}, "call_h")], input_tokens=10, output_tokens=2),
        Reply(tool_calls=[ToolCall("grep", {"q": "add"}, "call_g")], input_tokens=10, output_tokens=2),
        Reply(text="Fixed.", input_tokens=10, output_tokens=2),
    )
    with runmeter.run("handoff", tracer_provider=rig.tracer_provider):
        chat_loop(rig.openai())
    assert [s.attributes["gen_ai.tool.name"] for s in tool_spans(rig)] == ["grep"]
