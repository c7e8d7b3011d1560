"""The bug-fixing agent of ``agent.py`` on the Anthropic SDK (tool_use / tool_result blocks).

    ANTHROPIC_API_KEY=... opentelemetry-instrument python examples/anthropic_agent.py --model claude-haiku-4-5
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anthropic

sys.path.insert(0, str(Path(__file__).parent))

import runmeter  # noqa: E402
from agent import SYSTEM, TOOLS, conclude, make_repo, run_tasks, run_tool  # noqa: E402
from runmeter import Budget  # noqa: E402

CLAUDE_TOOLS = [{"name": t["function"]["name"], "description": t["function"]["description"],
                 "input_schema": t["function"]["parameters"]} for t in TOOLS]


def solve(client: anthropic.Anthropic, model: str, task: str, task_id: str, owner: str, project: str, budget: Budget) -> str:
    root = make_repo()
    with runmeter.run("fix-bug", owner=owner, project=project, task_id=task_id, budget=budget) as run:
        messages: list[Any] = [{"role": "user", "content": task}]
        answer = ""
        for _ in range(12):
            msg = client.messages.create(model=model, max_tokens=1024, system=SYSTEM, tools=CLAUDE_TOOLS, messages=messages)
            uses = [b for b in msg.content if b.type == "tool_use"]
            if not uses:
                answer = "".join(b.text for b in msg.content if b.type == "text")
                break
            messages.append({"role": "assistant", "content": [b.model_dump() for b in msg.content]})
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": b.id, "content": run_tool(root, b.name, dict(b.input))} for b in uses
            ]})
        return conclude(run, task, answer, root)


def main() -> None:
    run_tasks("A bug-fixing agent on Claude, measured by runmeter.", "claude-haiku-4-5", "bo", anthropic.Anthropic(max_retries=1), solve)


if __name__ == "__main__":
    main()
