"""The bug-fixing agent of ``agent.py`` as a LangGraph graph: a model node and the tools node, in a loop.

    pip install langgraph langchain-openai opentelemetry-instrumentation-langchain langchain
    OPENAI_API_KEY=... opentelemetry-instrument python examples/langgraph_agent.py

No runmeter code: the graph invocation is the run (named after the graph), each tool node call a
tool call, each model call counted once although LangChain's instrumentation and runmeter's both
see it. With OpenInference instead (``openinference-instrumentation-langchain``) the same holds;
install one of the two. Record the outcome once someone has looked: ``runmeter outcome <run> accepted``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

sys.path.insert(0, str(Path(__file__).parent))

from agent import SYSTEM, check, make_repo, tool_result  # noqa: E402

ROOT = make_repo()


@tool
def search(query: str) -> str:
    """Find lines containing text in the repository."""
    return tool_result(ROOT, "search", {"query": query})


@tool
def read_file(path: str) -> str:
    """Read a file of the repository."""
    return tool_result(ROOT, "read_file", {"path": path})


@tool
def edit_file(path: str, old: str, new: str) -> str:
    """Replace text in a file."""
    return tool_result(ROOT, "edit_file", {"path": path, "old": old, "new": new})


TOOLS = [search, read_file, edit_file]


def build(model_name: str) -> Any:
    model = ChatOpenAI(model=model_name, max_retries=1).bind_tools(TOOLS)

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke([("system", SYSTEM), *state["messages"]])]}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(TOOLS))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile()


def main() -> None:
    graph = build(os.environ.get("AGENT_MODEL", "gpt-4o-mini"))
    result = graph.invoke({"messages": [("user", os.environ.get("AGENT_TASK", "fix add()"))]}, {"recursion_limit": 25})
    print(result["messages"][-1].content, "(fixed)" if check(ROOT) else "(not fixed)")

if __name__ == "__main__":
    main()
