"""Agent frameworks as users run them, with runmeter's OpenAI instrumentation on as a user has it:
a real LangGraph graph (with OpenLLMetry's or OpenInference's LangChain instrumentation) and a real
OpenAI Agents SDK agent with a handoff (with OpenInference's), against the simulator.

Every call costs the same: gpt-4o-mini, 1,000 tokens in x $0.15/M + 20 out x $0.60/M = $0.000162.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from runmeter.processor import RunRecord
from runmeter.testing import Reply, ToolCall
from tests.instrumented import SECRET, Rig

CALL = 1_000 * 0.15e-6 + 20 * 0.60e-6  # $0.000162


def _tops(rig: Rig) -> list[RunRecord]:
    rig.processor.force_flush()
    return [r for r in rig.sink.runs if not r.parent_run_id]


def _loop_then_answer(rig: Rig) -> None:
    """The model searches for the same thing four times, reads the file, then answers."""
    for i in range(4):
        rig.sim.queue(Reply(tool_calls=[ToolCall("search", {"query": "add"}, id=f"call_{i}")], input_tokens=1_000, output_tokens=20))
    rig.sim.queue(Reply(tool_calls=[ToolCall("read_file", {"path": "app.py"}, id="call_r")], input_tokens=1_000, output_tokens=20))
    rig.sim.queue(Reply(text="Fixed add().", input_tokens=1_000, output_tokens=20))


def _graph(rig: Rig) -> Any:
    """A LangGraph graph: a model node and two tool nodes (search, read_file), in a loop until the
    model answers without a tool call."""
    @tool
    def search(query: str) -> str:
        """Search the repository."""
        return "app.py:2:     return a - b"

    @tool
    def read_file(path: str) -> str:
        """Read a file of the repository."""
        return "def add(a, b):\n    return a - b\n"

    model = ChatOpenAI(model="gpt-4o-mini", base_url=rig.sim.openai_url, api_key=SECRET, max_retries=0).bind_tools([search, read_file])

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        calls = last.tool_calls if isinstance(last, AIMessage) else []
        return str(calls[0]["name"]) if calls else END

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("search", ToolNode([search]))
    graph.add_node("read_file", ToolNode([read_file]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["search", "read_file", END])
    graph.add_edge("search", "agent")
    graph.add_edge("read_file", "agent")
    return graph.compile()


@pytest.fixture(params=["openllmetry", "openinference"])
def langchain_traced(request: pytest.FixtureRequest, rig: Rig) -> Iterator[str]:
    if request.param == "openllmetry":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor as Instrumentor
    else:
        from openinference.instrumentation.langchain import LangChainInstrumentor as Instrumentor  # type: ignore[no-redef]
    Instrumentor().instrument(tracer_provider=rig.tracer_provider)
    yield request.param
    Instrumentor().uninstrument()
    _unwrap_left_over()


def _unwrap_left_over() -> None:
    """OpenLLMetry's uninstrument() leaves its wrappers in place (opentelemetry-instrumentation's
    unwrap misses wrapt 2's bound wrappers, as runmeter's _base._unwrap notes): take them off, so
    the next test's spans are not made by a tracer of this one."""
    import langchain_core.callbacks as callbacks
    import langgraph.pregel as pregel
    import langgraph.prebuilt as prebuilt
    import langgraph.types as types
    from wrapt import FunctionWrapper

    for module in (callbacks, pregel, types, prebuilt):
        for owner in [module, *(v for v in vars(module).values() if isinstance(v, type))]:
            for attr, value in list(vars(owner).items()):
                if isinstance(value, FunctionWrapper):
                    setattr(owner, attr, value.__wrapped__)


def test_a_langgraph_invocation_is_one_run(rig: Rig, langchain_traced: str) -> None:
    graph = _graph(rig)
    for _ in range(2):
        _loop_then_answer(rig)
        out = graph.invoke({"messages": [("user", "Fix add().")]})
        assert out["messages"][-1].content == "Fixed add()."
    tops = _tops(rig)
    assert len(tops) == 2, [(r.name, r.llm_calls) for r in rig.sink.runs]  # one run per invocation, not one per call
    for run in tops:
        assert run.name == "LangGraph"
        assert run.llm_calls == 6  # each call once: the framework's span and the client's are one call
        assert float(run.cost_usd) == pytest.approx(6 * CALL, abs=1e-12)
        assert run.tool_calls == {"search": 4, "read_file": 1}
        # four identical searches, each at another graph step: a loop all the same
        assert [(s.kind, s.count) for s in run.loop_signals] == [("identical_tool_call", 4)]
    assert rig.sim.count("/chat/completions") == 12


@pytest.fixture
def agents_traced(rig: Rig) -> Iterator[None]:
    from agents import set_default_openai_api, set_trace_processors
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    set_default_openai_api("chat_completions")
    set_trace_processors([])  # the SDK's own exporter to OpenAI's servers is off; OpenInference's is added below
    OpenAIAgentsInstrumentor().instrument(tracer_provider=rig.tracer_provider)
    yield
    OpenAIAgentsInstrumentor().uninstrument()


def _run_agents(rig: Rig, task: str) -> Any:
    """A triage agent that hands bugs to a fixer agent with a search tool; run in one event loop
    with its client, closed at the end."""
    import asyncio

    import openai
    from agents import Agent, Runner, function_tool, set_default_openai_client

    @function_tool
    def search(query: str) -> str:
        """Search the repository."""
        return "app.py:2:     return a - b"

    fixer = Agent(name="fixer", instructions="Fix the bug.", model="gpt-4o-mini", tools=[search])
    triage = Agent(name="triage", instructions="Hand bugs to the fixer.", model="gpt-4o-mini", handoffs=[fixer])

    async def main() -> Any:
        async with openai.AsyncOpenAI(base_url=rig.sim.openai_url, api_key=SECRET, max_retries=0) as client:
            set_default_openai_client(client, use_for_tracing=False)
            return await Runner.run(triage, task)

    return asyncio.run(main())


def test_an_agents_sdk_run_with_a_handoff(rig: Rig, agents_traced: None) -> None:
    rig.sim.queue(Reply(tool_calls=[ToolCall("transfer_to_fixer", {}, id="h1")], input_tokens=1_000, output_tokens=20),
                  Reply(tool_calls=[ToolCall("search", {"query": "add"}, id="c1")], input_tokens=1_000, output_tokens=20),
                  Reply(text="Fixed add().", input_tokens=1_000, output_tokens=20))
    result = _run_agents(rig, "Fix add().")
    assert result.final_output == "Fixed add()."
    (top,) = _tops(rig)
    assert top.llm_calls == 3 and float(top.cost_usd) == pytest.approx(3 * CALL, abs=1e-12)
    assert top.tool_calls == {"search": 1}  # the handoff is not a tool call
    subs = {r.name: r for r in rig.sink.runs if r.parent_run_id == top.run_id}
    assert set(subs) == {"triage", "fixer"}  # nested agents are sub-runs
    assert subs["triage"].llm_calls == 1 and subs["fixer"].llm_calls == 2 and subs["fixer"].tool_calls == {"search": 1}


def test_an_agents_sdk_run_that_raises_is_failed(rig: Rig, agents_traced: None) -> None:
    import openai

    rig.sim.queue(Reply(status=500))
    with pytest.raises(openai.InternalServerError):
        _run_agents(rig, "Fix add().")
    (top,) = _tops(rig)
    assert top.outcome == "failed"


def _example(name: str) -> Any:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIX = [  # read the file, fix it, say so
    Reply(tool_calls=[ToolCall("read_file", {"path": "app.py"}, id="r")], input_tokens=1_000, output_tokens=20),
    Reply(tool_calls=[ToolCall("edit_file", {"path": "app.py", "old": "a - b", "new": "a + b"}, id="e")], input_tokens=1_000, output_tokens=20),
    Reply(text="Fixed add().", input_tokens=1_000, output_tokens=20),
]


# An example is a script: its client lives until the process exits, and here the process is pytest.
_SCRIPT_CLIENT = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")


@_SCRIPT_CLIENT
def test_the_langgraph_example(rig: Rig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from openinference.instrumentation.langchain import LangChainInstrumentor

    monkeypatch.setenv("OPENAI_BASE_URL", rig.sim.openai_url)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    rig.sim.queue(*FIX)
    LangChainInstrumentor().instrument(tracer_provider=rig.tracer_provider)
    try:
        _example("langgraph_agent").main()
    finally:
        LangChainInstrumentor().uninstrument()
    assert "(fixed)" in capsys.readouterr().out
    (top,) = _tops(rig)
    assert top.llm_calls == 3 and float(top.cost_usd) == pytest.approx(3 * CALL, abs=1e-12)
    assert top.tool_calls == {"read_file": 1, "edit_file": 1}
    gc.collect()  # the script's client goes here, under this test's warning filter


@_SCRIPT_CLIENT
def test_the_agents_sdk_example(rig: Rig, agents_traced: None, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    import openai
    from agents import set_default_openai_client

    handoff = Reply(tool_calls=[ToolCall("transfer_to_fixer", {}, id="h")], input_tokens=1_000, output_tokens=20)
    rig.sim.queue(handoff, *FIX)
    example = _example("agents_sdk_agent")

    async def main() -> None:
        async with openai.AsyncOpenAI(base_url=rig.sim.openai_url, api_key=SECRET, max_retries=0) as client:
            set_default_openai_client(client, use_for_tracing=False)
            await asyncio.to_thread(example.main)

    asyncio.run(main())
    assert "(fixed)" in capsys.readouterr().out
    (top,) = _tops(rig)
    assert top.llm_calls == 4 and float(top.cost_usd) == pytest.approx(4 * CALL, abs=1e-12)
    assert top.tool_calls == {"read_file": 1, "edit_file": 1}
    assert {r.name for r in rig.sink.runs if r.parent_run_id == top.run_id} == {"triage", "fixer"}
    gc.collect()  # the script's client and event loop go here, under this test's warning filter


def test_runmeter_tool_inside_a_framework_tool_is_one_call(rig: Rig, langchain_traced: str) -> None:
    """A tool whose body is marked with runmeter.tool() inside LangGraph's tool node: the framework's
    tool span and runmeter's are one tool call."""
    import runmeter

    @tool
    def search(query: str) -> str:
        """Search the repository."""
        with runmeter.tool("search", args={"query": query}, tracer_provider=rig.tracer_provider):
            return "app.py:2:     return a - b"

    model = ChatOpenAI(model="gpt-4o-mini", base_url=rig.sim.openai_url, api_key=SECRET, max_retries=0).bind_tools([search])

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        return "search" if isinstance(last, AIMessage) and last.tool_calls else END

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("search", ToolNode([search]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["search", END])
    graph.add_edge("search", "agent")
    rig.sim.queue(Reply(tool_calls=[ToolCall("search", {"query": "add"}, id="s1")], input_tokens=1_000, output_tokens=20),
                  Reply(tool_calls=[ToolCall("search", {"query": "sub"}, id="s2")], input_tokens=1_000, output_tokens=20),
                  Reply(text="Found it.", input_tokens=1_000, output_tokens=20))
    graph.compile().invoke({"messages": [("user", "Find add().")]})
    (top,) = _tops(rig)
    assert top.tool_calls == {"search": 2}  # not 4
    # runmeter told both calls from their results too; the framework's spans covered them: not exported
    assert not any((s.attributes or {}).get("runmeter.tool.inferred") for s in rig.spans())
    tool_spans = [s for s in rig.spans() if (s.attributes or {}).get("gen_ai.tool.name") == "search"
                  or s.name == "execute_tool search"]
    if langchain_traced == "openllmetry":  # OpenInference does not make its tool span current: no nesting to see
        assert sum(1 for s in tool_spans if (s.attributes or {}).get("runmeter.cost.duplicate") is True) == 2
