"""The bug-fixing agent of ``agent.py`` on Google Gemini (``google-genai``: function calls and responses).

    GOOGLE_API_KEY=... opentelemetry-instrument python examples/gemini_agent.py --model gemini-2.5-flash

``GEMINI_BASE_URL`` points the client elsewhere (the simulator, a proxy). The SDK's automatic
function calling is turned off so each tool call is a ``runmeter.tool`` span; with it on, runmeter
still prices every request the SDK sends.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from google import genai
from google.genai import types

sys.path.insert(0, str(Path(__file__).parent))

import runmeter  # noqa: E402
from agent import SYSTEM, TOOLS, conclude, make_repo, run_tasks, run_tool  # noqa: E402
from runmeter import Budget  # noqa: E402

GEMINI_TOOLS = [types.Tool(function_declarations=[
    types.FunctionDeclaration(name=t["function"]["name"], description=t["function"]["description"],
                              parameters_json_schema=t["function"]["parameters"]) for t in TOOLS])]


def solve(client: genai.Client, model: str, task: str, task_id: str, owner: str, project: str, budget: Budget) -> str:
    root = make_repo()
    config = types.GenerateContentConfig(system_instruction=SYSTEM, tools=GEMINI_TOOLS,
                                         automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    with runmeter.run("fix-bug", owner=owner, project=project, task_id=task_id, budget=budget) as run:
        contents: list[Any] = [types.Content(role="user", parts=[types.Part(text=task)])]
        answer = ""
        for _ in range(12):
            response = client.models.generate_content(model=model, contents=contents, config=config)
            calls = response.function_calls or []
            if not calls:
                answer = response.text or ""
                break
            contents.append(response.candidates[0].content)
            contents.append(types.Content(role="user", parts=[
                types.Part.from_function_response(name=c.name, response={"result": run_tool(root, c.name, dict(c.args or {}))})
                for c in calls]))
        return conclude(run, task, answer, root)


def main() -> None:
    base_url = os.environ.get("GEMINI_BASE_URL")
    client = genai.Client(http_options={"base_url": base_url} if base_url else None)
    run_tasks("A bug-fixing agent on Gemini, measured by runmeter.", "gemini-2.5-flash", "cy", client, solve)


if __name__ == "__main__":
    main()
