"""The bug-fixing agent of ``agent.py`` on AWS Bedrock (``boto3`` Converse API: toolUse / toolResult blocks).

    AWS_PROFILE=... opentelemetry-instrument python examples/bedrock_agent.py --model us.anthropic.claude-haiku-4-5-20251001-v1:0

botocore's own ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` points the client elsewhere (the simulator, a VPC endpoint).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import boto3

sys.path.insert(0, str(Path(__file__).parent))

import runmeter  # noqa: E402
from agent import SYSTEM, TOOLS, conclude, make_repo, run_tasks, run_tool  # noqa: E402
from runmeter import Budget  # noqa: E402

TOOL_CONFIG = {"tools": [{"toolSpec": {"name": t["function"]["name"], "description": t["function"]["description"],
                                       "inputSchema": {"json": t["function"]["parameters"]}}} for t in TOOLS]}


def solve(client: Any, model: str, task: str, task_id: str, owner: str, project: str, budget: Budget) -> str:
    root = make_repo()
    with runmeter.run("fix-bug", owner=owner, project=project, task_id=task_id, budget=budget) as run:
        messages: list[Any] = [{"role": "user", "content": [{"text": task}]}]
        answer = ""
        for _ in range(12):
            response = client.converse(modelId=model, system=[{"text": SYSTEM}], messages=messages, toolConfig=TOOL_CONFIG)
            content = response["output"]["message"]["content"]
            uses = [block["toolUse"] for block in content if "toolUse" in block]
            if not uses:
                answer = "".join(block.get("text", "") for block in content)
                break
            messages.append({"role": "assistant", "content": content})
            messages.append({"role": "user", "content": [
                {"toolResult": {"toolUseId": u["toolUseId"], "content": [{"text": run_tool(root, u["name"], dict(u["input"]))}]}}
                for u in uses]})
        return conclude(run, task, answer, root)


def main() -> None:
    run_tasks("A bug-fixing agent on Bedrock, measured by runmeter.", "us.anthropic.claude-haiku-4-5-20251001-v1:0", "dee",
              boto3.client("bedrock-runtime"), solve)


if __name__ == "__main__":
    main()
