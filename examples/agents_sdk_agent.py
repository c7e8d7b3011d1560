"""A triage agent handing bugs to a fixer agent, on the OpenAI Agents SDK.

    pip install openai-agents openinference-instrumentation-openai-agents
    OPENAI_API_KEY=... opentelemetry-instrument python examples/agents_sdk_agent.py

No runmeter code: the workflow is the run, triage and fixer are its sub-runs, the fixer's tool
calls are tool calls, the handoff is not one; if an agent raises, the run is recorded ``failed``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from agents import Agent, Runner, function_tool

sys.path.insert(0, str(Path(__file__).parent))

from agent import SYSTEM, check, make_repo, tool_result  # noqa: E402

ROOT = make_repo()


@function_tool
def search(query: str) -> str:
    """Find lines containing text in the repository."""
    return tool_result(ROOT, "search", {"query": query})


@function_tool
def read_file(path: str) -> str:
    """Read a file of the repository."""
    return tool_result(ROOT, "read_file", {"path": path})


@function_tool
def edit_file(path: str, old: str, new: str) -> str:
    """Replace text in a file."""
    return tool_result(ROOT, "edit_file", {"path": path, "old": old, "new": new})


def main() -> None:
    model = os.environ.get("AGENT_MODEL", "gpt-4o-mini")
    fixer = Agent(name="fixer", instructions=SYSTEM, model=model, tools=[search, read_file, edit_file])
    triage = Agent(name="triage", instructions="Hand every bug report to the fixer.", model=model, handoffs=[fixer])
    result = Runner.run_sync(triage, os.environ.get("AGENT_TASK", "fix add()"))
    print(result.final_output, "(fixed)" if check(ROOT) else "(not fixed)")


if __name__ == "__main__":
    main()
