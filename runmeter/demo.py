"""``make demo``: the whole product on your machine, no keys, no network, under two minutes.

1. Starts the LLM simulator on 127.0.0.1 (OpenAI and Anthropic wire formats), playing
   a model that fixes a bug with tools: realistic, deterministic usage with cached
   and reasoning tokens; gpt-5.5 writes long answers to short prompts and short ones
   to long prompts, gpt-4o-mini stays even; a second simulator plays a local model.
2. Runs the example agents (``examples/agent.py``, ``anthropic_agent.py``,
   ``local_agent.py``) through ``opentelemetry-instrument`` — no code changes — for a
   few dozen runs: accepted, rejected, abandoned, one stuck in a loop (stopped by
   ``max_identical_repeats``), one stopped by its cost budget.
3. Prints ``runmeter report`` and ``runmeter compare`` and writes ``report.html``.

Each demo starts clean: its store is ``.runmeter-demo/`` (removed first), so your
own ``.runmeter/`` is never touched. Afterwards::

    runmeter --store chdb://.runmeter-demo/store runs
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

import runmeter.examples
from runmeter import cli
from runmeter.reports import short_ids
from runmeter.core import CONFIG_FILENAME
from runmeter.testing import Reply, Request, Simulator, ToolCall

console = Console()
EXAMPLES = Path(runmeter.examples.__file__).resolve().parent  # installed with runmeter: the demo runs from a wheel
# `opentelemetry-instrument python script.py`, as its console script does it: found with this
# Python whatever installed the scripts (a wheel unpacked into a venv has none).
_INSTRUMENT = [sys.executable, "-c", "from opentelemetry.instrumentation.auto_instrumentation import run; run()", sys.executable]
DEMO_DIR = Path(".runmeter-demo")

# Tasks; tags in brackets steer the simulated model.
TASKS = {
    "normal": "fix add() in app.py",
    "reject": "fix add() in app.py [reject]",
    "abandon": "fix add() in app.py [abandon]",
    "silent": "fix add() in app.py [silent]",
    "loop": "fix add() in app.py [loop]",
    "expensive": "fix add() in app.py [expensive]",
}
FIX = ToolCall("edit_file", {"path": "app.py", "old": "return a - b", "new": "return a + b"})
WRONG = ToolCall("edit_file", {"path": "app.py", "old": "return a - b", "new": "return a * b"})


def _conversation(req: Request) -> tuple[str, int, int]:
    """(first user text, tool results so far, characters of context) of an OpenAI or Anthropic request."""
    msgs = req.body.get("messages") or []
    task, results = "", 0
    for m in msgs:
        content = m.get("content")
        if m.get("role") == "user" and not task:
            task = content if isinstance(content, str) else ""
        if m.get("role") == "tool":
            results += 1
        if isinstance(content, list):
            results += sum(1 for b in content if isinstance(b, dict) and b.get("type") == "tool_result")
    return task, results, len(json.dumps(msgs))


def policy(req: Request) -> Reply:
    """A deterministic model that fixes the bug in four steps (or fails, as the task's tag says)."""
    task, step, chars = _conversation(req)
    model = str(req.body.get("model", ""))
    inp = 900 + chars // 3 + 700 * step
    if "[expensive]" in task:
        inp += 120_000  # a runaway context: the whole repository history in every turn
    cached = min(inp - 64, 1024 * step)
    if "gpt-5.5" in model:
        out, reasoning = (420 if inp < 2_000 else 90), 64
    elif "claude" in model:
        out, reasoning = 240, 0
    else:
        out, reasoning = 180, 0
    usage: dict[str, Any] = dict(input_tokens=inp, output_tokens=out + reasoning, cached_tokens=max(0, cached), reasoning_tokens=reasoning)
    if "claude" in model:  # Anthropic counts the cache apart from input_tokens
        cached = max(0, cached)
        written = min(300, inp - cached)  # never more than is left: the uncached count is never negative
        usage = dict(input_tokens=inp - cached - written, output_tokens=out, cached_tokens=cached, cache_write_tokens=written)
    if "[loop]" in task:
        return Reply(tool_calls=[ToolCall("read_file", {"path": "app.py"})], **usage)
    plan = [ToolCall("search", {"query": "def add"}), ToolCall("read_file", {"path": "app.py"}),
            WRONG if "[reject]" in task else FIX]
    if "[expensive]" in task:
        plan = plan[:2] * 4 + plan[2:]
    if step < len(plan) and "[abandon]" not in task:
        return Reply(tool_calls=[plan[step]], **usage)
    text = "I cannot find the bug." if "[abandon]" in task else "Fixed add() in app.py: it now returns a + b."
    return Reply(text=text, **usage)


def _agent(script: str, model: str, tasks: list[str], env: dict[str, str], owner: str, project: str) -> None:
    env = dict(env, AGENT_MODEL=model, AGENT_TASKS=";".join(tasks), AGENT_OWNER=owner, AGENT_PROJECT=project)
    proc = subprocess.run(
        [*_INSTRUMENT, str(EXAMPLES / script)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    for line in proc.stdout.splitlines():
        console.print(f"  {line}")
    if proc.returncode != 0:
        console.print(proc.stderr[-4000:])
        raise SystemExit(f"the agent {script} failed (exit {proc.returncode})")
    # runmeter never breaks the agent, so its own failures and the bad values it met are only logged:
    # the demo fails on them, so a wrong number cannot hide behind a passing demo.
    complaints = [line for line in proc.stderr.splitlines() if line.startswith("runmeter: ")]
    if complaints:
        console.print(proc.stderr[-4000:])
        raise SystemExit(f"the agent {script} ran, but runmeter complained: {complaints[0]}")


def _cli(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", cli.__name__, "--store", f"chdb://{DEMO_DIR / 'store'}", *args], env=env, check=True)


def main() -> None:
    t0 = time.monotonic()
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir()
    with Simulator() as cloud, Simulator() as local:
        cloud.responder = policy
        local.responder = policy
        config = DEMO_DIR / CONFIG_FILENAME
        text = (EXAMPLES / CONFIG_FILENAME).read_text()
        text = text.replace("[providers]\n", f'[providers]\n"{local.url}" = "vllm"  # the demo\'s local model server\n')
        text += f'\n[storage]\nclickhouse_url = "chdb://{(DEMO_DIR / "store").resolve()}"\n'
        config.write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNMETER_"))}
        env.update(
            RUNMETER_CONFIG=str(config.resolve()),
            OTEL_SERVICE_NAME="demo-agent",
            OPENAI_BASE_URL=cloud.openai_url, OPENAI_API_KEY="sk-demo-not-a-key",
            ANTHROPIC_BASE_URL=cloud.anthropic_url, ANTHROPIC_API_KEY="sk-ant-demo-not-a-key",
        )
        T = TASKS
        console.rule("[bold]runmeter demo[/]: agents at work (through opentelemetry-instrument)")
        _agent("agent.py", "gpt-5.5", [T["normal"]] * 6 + [T["reject"]] * 2 + [T["abandon"], T["silent"], T["loop"], T["expensive"]],
               env, "ana", "billing")
        _agent("agent.py", "gpt-4o-mini", [T["normal"]] * 5 + [T["reject"]] * 3 + [T["abandon"], T["silent"]], env, "bo", "billing")
        _agent("anthropic_agent.py", "claude-haiku-4-5", [T["normal"]] * 5 + [T["reject"], T["silent"]], env, "cy", "support")
        local_env = dict(env, OPENAI_BASE_URL=local.openai_url)
        _agent("local_agent.py", "llama-3.3-70b", [T["normal"]] * 4 + [T["reject"]], local_env, "cy", "support")
    cli_env = env  # the CLI fits its tables to a terminal, and keeps whole lines when piped
    console.rule("runmeter report --group model")
    _cli("report", "--group", "model", "--html", "report.html", env=cli_env)
    console.rule("runmeter report --group owner")
    _cli("report", "--group", "owner", env=cli_env)
    console.rule("runmeter compare --model gpt-5.5 --model gpt-4o-mini")
    _cli("compare", "--model", "gpt-5.5", "--model", "gpt-4o-mini", "--small-below", "2000", "--large-above", "10000", env=cli_env)
    console.rule("runmeter loops / budgets")
    _cli("loops", env=cli_env)
    _cli("budgets", env=cli_env)
    store = f"chdb://{DEMO_DIR / 'store'}"
    top = subprocess.run([sys.executable, "-m", cli.__name__, "--store", store, "runs", "--limit", "1", "--json"],
                         env=cli_env, check=True, capture_output=True, text=True)
    (run_id,) = short_ids([r["RunId"] for r in json.loads(top.stdout)]).values()
    console.print(f"\nWrote [bold]report.html[/]. Took {time.monotonic() - t0:.0f}s. Next, on the demo's store:")
    for command in (f"runmeter --store {store} runs", f"runmeter --store {store} run {run_id}", f"runmeter --store {store} ui"):
        console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)

if __name__ == "__main__":
    main()
