"""A small but real tool-using agent on the OpenAI SDK, measured by runmeter.

It fixes a bug in a tiny repository: it searches, reads files, edits one, and
checks the fix; the run is accepted when the check passes and rejected when it
does not. Each task runs inside ``runmeter.run(...)`` with a budget, so a loop
or a runaway context is stopped before it spends more.

    OPENAI_API_KEY=... opentelemetry-instrument python examples/agent.py --model gpt-5.5
    OPENAI_BASE_URL=http://localhost:8000/v1 opentelemetry-instrument python examples/agent.py --model my-model

Runs unchanged against the real API, any OpenAI-compatible server, or the
runmeter simulator (what ``make demo`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any

import openai

import runmeter
from runmeter import Budget, BudgetExceeded

SYSTEM = "You fix bugs in small Python repositories. Use the tools; answer with one short sentence when done."
TOOLS = [
    {"type": "function", "function": {"name": "search", "description": "Find lines containing text in the repository.",
                                      "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}},
    {"type": "function", "function": {"name": "read_file", "description": "Read a file of the repository.",
                                      "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
    {"type": "function", "function": {"name": "edit_file", "description": "Replace text in a file.",
                                      "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "old": {"type": "string"},
                                                                                      "new": {"type": "string"}}, "required": ["path", "old", "new"]}}},
]
REPO = {"app.py": "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n", "README.md": "# calc\nadd() adds two numbers.\n"}


def make_repo() -> Path:
    root = Path(tempfile.mkdtemp(prefix="runmeter-agent-"))
    for name, text in REPO.items():
        (root / name).write_text(text)
    return root


def run_tool(root: Path, name: str, args: dict[str, Any]) -> str:
    """A tool call as a runmeter.tool span (name, argument hash, resource)."""
    with runmeter.tool(name, resource=args.get("path"), args=args):
        return tool_result(root, name, args)


def tool_result(root: Path, name: str, args: dict[str, Any]) -> str:
    """What a tool does (a framework that makes tool spans of its own calls this directly)."""
    path = args.get("path")
    if name == "search":
        hits = [f"{p.name}:{i}: {line}" for p in sorted(root.iterdir()) for i, line in enumerate(p.read_text().splitlines(), 1)
                if args.get("query", "") in line]
        return "\n".join(hits) or "no matches"
    if name == "read_file":
        target = root / str(path)
        return target.read_text() if target.is_file() else f"no such file: {path}"
    if name == "edit_file":
        target = root / str(path)
        text = target.read_text()
        if args["old"] not in text:
            return "old text not found"
        target.write_text(text.replace(args["old"], args["new"], 1))
        return "edited"
    return f"unknown tool {name}"


def check(root: Path) -> bool:
    scope: dict[str, Any] = {}
    exec((root / "app.py").read_text(), scope)  # the repository is the agent's own sandbox
    return scope["add"](2, 3) == 5


def solve(client: openai.OpenAI, model: str, task: str, task_id: str, owner: str, project: str, budget: Budget) -> str:
    root = make_repo()
    with runmeter.run("fix-bug", owner=owner, project=project, task_id=task_id, budget=budget) as run:
        messages: list[Any] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}]
        for _ in range(12):
            msg = client.chat.completions.create(model=model, messages=messages, tools=TOOLS).choices[0].message
            if not msg.tool_calls:
                answer = msg.content or ""
                break
            messages.append({"role": "assistant", "content": msg.content, "tool_calls": [tc.model_dump() for tc in msg.tool_calls]})
            for tc in msg.tool_calls:
                result = run_tool(root, tc.function.name, json.loads(tc.function.arguments or "{}"))
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": result})
        else:
            answer = ""
        return conclude(run, task, answer, root)


def conclude(run: runmeter.instrumentation.Run, task: str, answer: str, root: Path) -> str:
    """Record the run's outcome: accepted when the fix passes the check."""
    if "[silent]" in task:
        return "ended without an outcome"  # nobody reviewed it: abandoned after the window
    if not answer or "cannot" in answer.lower():
        run.abandon("the agent gave up")
        return "abandoned"
    if check(root):
        run.accept()
        return "accepted"
    run.reject("add(2, 3) != 5 after the edit")
    return "rejected"


def run_tasks(description: str, default_model: str, default_owner: str, client: Any, solve_one: Callable[..., str]) -> None:
    """Parse the command line (or AGENT_* variables) and solve each task, reporting its outcome."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=os.environ.get("AGENT_MODEL", default_model))
    parser.add_argument("--tasks", default=os.environ.get("AGENT_TASKS", "fix add()"), help="';'-separated tasks")
    parser.add_argument("--owner", default=os.environ.get("AGENT_OWNER", default_owner))
    parser.add_argument("--project", default=os.environ.get("AGENT_PROJECT", "calc"))
    parser.add_argument("--max-cost", type=float, default=float(os.environ.get("AGENT_MAX_COST", "0.50")))
    args = parser.parse_args()
    budget = Budget(max_cost_usd=args.max_cost, max_identical_repeats=3, max_tool_calls=30)
    for i, task in enumerate(t.strip() for t in args.tasks.split(";") if t.strip()):
        try:
            result = solve_one(client, args.model, task, f"{args.project}-{i % 4}", args.owner, args.project, budget)
        except BudgetExceeded as exc:
            result = f"stopped by budget: {exc.limit}"
        print(f"{args.model:>22}  {task[:40]:<40}  {result}")


def main(default_model: str = "gpt-5.5") -> None:
    run_tasks("A bug-fixing agent measured by runmeter.", default_model, "ana", openai.OpenAI(max_retries=1), solve)


if __name__ == "__main__":
    main()
