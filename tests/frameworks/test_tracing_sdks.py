"""Langfuse's, MLflow's and LangSmith's own tracing SDKs (real, current releases): Langfuse's and
MLflow's spans carry usage as JSON documents, LangSmith's mark prompt templates as chat operations;
runmeter reads them as it reads any other instrumentation's. Each agent runs in a process of its own
(tests/frameworks/sdk_agents.py): the SDKs patch the OpenAI client or set the global provider for good.

Each agent: three calls of gpt-4o-mini, 1,000 tokens in x $0.15/M + 20 out x $0.60/M = $0.000162
each, $0.000486 in all; its search tool called three times with the same arguments.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.collector_rig import running

ROOT = Path(__file__).resolve().parents[2]
RUN_COST = Decimal("0.000486")


def _agent(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tests.frameworks.sdk_agents", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("runmeter_openai", [False, True], ids=["langfuse-alone", "with-runmeter-openai"])
def test_a_langfuse_traced_agent_is_one_run_with_each_call_once(runmeter_openai: bool) -> None:
    """Langfuse's generations are the calls; with runmeter's own OpenAI instrumentation on as well,
    each call is still counted once (runmeter's span and Langfuse's are siblings of one call)."""
    args = ["langfuse", "--runmeter-openai"] if runmeter_openai else ["langfuse"]
    (run,) = json.loads(_agent(*args).splitlines()[-1])
    assert run["name"] == "support_agent" and not run["parent"]
    assert run["llm_calls"] == 3 and Decimal(run["cost_usd"]) == RUN_COST
    assert run["tool_calls"] == {"search": 3}
    # The same request three times is seen only by runmeter's instrumentation (it hashes the input;
    # Langfuse's spans carry none without content capture).
    identical_input = [["identical_llm_input", 3]] if runmeter_openai else []
    assert run["loops"] == [*identical_input, ["identical_tool_call", 3]]


def test_an_mlflow_traced_agent_exported_over_otlp_is_one_run(tmp_path: Path) -> None:
    """MLflow's OTLP exporter to runmeter's collector: every attribute JSON-encoded, read as such."""
    with running(tmp_path) as c:
        _agent("mlflow", c.http)
        runs = c.rows("SELECT Name, LlmCalls, UnpricedCalls, toDecimal64(CostUsd, 9), ToolCalls, ParentRunId FROM runmeter_runs FINAL")
        spans = c.rows("SELECT count() FROM otel_traces")
    assert spans == [(1 + 3 + 3,)]  # the agent, its calls, its tools
    ((name, calls, unpriced, cost, tools, parent),) = runs
    assert (name, calls, unpriced, parent) == ("support_agent", 3, 0, "")
    assert cost == RUN_COST and tools == {"search": 3}


def test_a_langsmith_traced_chain_counts_the_model_call_not_the_prompt_template() -> None:
    """LangSmith's OpenTelemetry export writes gen_ai.operation.name "chat" on the prompt template's
    span too: two invocations are two runs of one call each ($0.000162), none unpriced."""
    runs = json.loads(_agent("langsmith").splitlines()[-1])
    assert [(r["name"], r["llm_calls"], r["unpriced"], Decimal(r["cost_usd"])) for r in runs] == [("RunnableSequence", 1, 0, Decimal("0.000162"))] * 2
