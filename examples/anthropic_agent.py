"""The bug-fixing agent of ``agent.py`` on the Anthropic SDK (tool_use / tool_result blocks).

    ANTHROPIC_API_KEY=... opentelemetry-instrument python examples/anthropic_agent.py --model claude-haiku-4-5
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import anthropic

sys.path.insert(0, str(Path(__file__).parent))

import runmeter  # noqa: E402
from agent import SYSTEM, TOOLS, check, make_repo, run_tool  # noqa: E402
from runmeter import Budget, BudgetExceeded  # noqa: E402

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
        if "[silent]" in task:
            return "ended without an outcome"
        if not answer or "cannot" in answer.lower():
            run.abandon("the agent gave up")
            return "abandoned"
        if check(root):
            run.accept()
            return "accepted"
        run.reject("add(2, 3) != 5 after the edit")
        return "rejected"


def main() -> None:
    parser = argparse.ArgumentParser(description="A bug-fixing agent on Claude, measured by runmeter.")
    parser.add_argument("--model", default=os.environ.get("AGENT_MODEL", "claude-haiku-4-5"))
    parser.add_argument("--tasks", default=os.environ.get("AGENT_TASKS", "fix add()"))
    parser.add_argument("--owner", default=os.environ.get("AGENT_OWNER", "bo"))
    parser.add_argument("--project", default=os.environ.get("AGENT_PROJECT", "calc"))
    parser.add_argument("--max-cost", type=float, default=float(os.environ.get("AGENT_MAX_COST", "0.50")))
    args = parser.parse_args()
    client = anthropic.Anthropic(max_retries=1)
    budget = Budget(max_cost_usd=args.max_cost, max_identical_repeats=3, max_tool_calls=30)
    for i, task in enumerate(t.strip() for t in args.tasks.split(";") if t.strip()):
        try:
            result = solve(client, args.model, task, f"{args.project}-{i % 4}", args.owner, args.project, budget)
        except BudgetExceeded as exc:
            result = f"stopped by budget: {exc.limit}"
        print(f"{args.model:>22}  {task[:40]:<40}  {result}")


if __name__ == "__main__":
    main()
