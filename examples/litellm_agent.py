"""The bug-fixing agent of ``agent.py`` on LiteLLM, with no runmeter code around its tools: runmeter
counts each tool call from its result going back to the model.

    ANTHROPIC_API_KEY=... opentelemetry-instrument python examples/litellm_agent.py --model anthropic/claude-haiku-4-5
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import litellm

sys.path.insert(0, str(Path(__file__).parent))

import runmeter  # noqa: E402
from agent import SYSTEM, TOOLS, conclude, make_repo, run_tasks, tool_result  # noqa: E402
from runmeter import Budget  # noqa: E402


def solve(client: Any, model: str, task: str, task_id: str, owner: str, project: str, budget: Budget) -> str:
    root = make_repo()
    with runmeter.run("fix-bug", owner=owner, project=project, task_id=task_id, budget=budget) as run:
        messages: list[Any] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}]
        answer = ""
        for _ in range(12):
            msg = litellm.completion(model=model, messages=messages, tools=TOOLS, max_tokens=1024).choices[0].message
            if not msg.tool_calls:
                answer = msg.content or ""
                break
            messages.append(msg)
            for tc in msg.tool_calls:
                result = tool_result(root, tc.function.name, json.loads(tc.function.arguments or "{}"))  # a plain function
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": result})
        return conclude(run, task, answer, root)


def main() -> None:
    run_tasks("A bug-fixing agent on LiteLLM, measured by runmeter.", "anthropic/claude-haiku-4-5", "cy", None, solve)


if __name__ == "__main__":
    main()
