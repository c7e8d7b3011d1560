"""A framework's runs as the reports read them from the store: LangGraph under OpenInference's
instrumentation, through runmeter's exporter into chDB, then the same queries as `runmeter runs`."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from runmeter.exporter import ClickHouseSpanExporter, Spool, Store, Writer
from runmeter.instrumentation import OpenAIInstrumentor
from runmeter.processor import PriceBook, RunProcessor
from runmeter.reports import Filters, parse_since, run_query
from runmeter.testing import Simulator
from tests.frameworks.test_frameworks import CALL, _graph, _loop_then_answer


class _Sim:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim


def test_langgraph_runs_as_stored(tmp_path: Path) -> None:
    from openinference.instrumentation.langchain import LangChainInstrumentor

    url = f"chdb://{tmp_path / 'store'}"
    writer = Writer(Store(url), Spool(tmp_path / "spool"), background=False)
    exporter = ClickHouseSpanExporter(writer=writer, prices=PriceBook())
    processor = RunProcessor(SimpleSpanProcessor(exporter), sink=exporter.run_sink, background=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    OpenAIInstrumentor().instrument(tracer_provider=provider, prices=PriceBook(), providers={})
    LangChainInstrumentor().instrument(tracer_provider=provider)
    try:
        with Simulator() as sim:
            rig = _Sim(sim)
            graph = _graph(rig)  # type: ignore[arg-type]
            for _ in range(2):
                _loop_then_answer(rig)  # type: ignore[arg-type]
                graph.invoke({"messages": [("user", "Fix add().")]})
    finally:
        LangChainInstrumentor().uninstrument()
        OpenAIInstrumentor().uninstrument()
    processor.force_flush()
    provider.shutdown()
    assert writer.flush(timeout_s=60)
    with Store(url).session() as client:
        runs = run_query(client, "runs_page", Filters(since=parse_since("1d")), sort="StartTime", descending=True, limit=10, offset=0)
        (totals,) = run_query(client, "cost_per_accepted_run", Filters(since=parse_since("1d")), group="none")
    assert len(runs) == 2  # one run per invocation, its "agent" node steps rolled up as sub-runs
    for run in runs:
        assert run["Name"] == "LangGraph" and run["LlmCalls"] == 6 and run["ToolCalls"] == 5
        assert run["CostUsd"] == pytest.approx(6 * CALL, abs=1e-9)
        assert run["LoopSignals"] == 1  # the four identical searches
    assert totals["TotalCostUsd"] == pytest.approx(12 * CALL, abs=1e-9)


def test_the_agents_sdk_example_zero_code(tmp_path: Path, root: Path) -> None:
    """`opentelemetry-instrument python examples/agents_sdk_agent.py`: no runmeter code, OpenInference's
    Agents SDK instrumentation and runmeter's loaded from their entry points, runs in the store."""
    import os
    import subprocess
    import sys

    from runmeter.testing import Reply, ToolCall
    from tests.frameworks.test_frameworks import FIX

    url = f"chdb://{tmp_path / 'store'}"
    with Simulator() as sim:
        sim.queue(Reply(tool_calls=[ToolCall("transfer_to_fixer", {}, id="h")], input_tokens=1_000, output_tokens=20), *FIX)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNMETER_", "PYTEST", "OPENAI_"))}
        env.update(OPENAI_BASE_URL=sim.openai_url, OPENAI_API_KEY="sk-zero-code", RUNMETER_CLICKHOUSE_URL=url,
                   OTEL_SERVICE_NAME="agents-example", AGENT_MODEL="gpt-4o-mini")
        # opentelemetry-instrument, as its console script runs it (this environment borrows .venv's packages, not its scripts)
        instrument = ("import sys; from opentelemetry.instrumentation.auto_instrumentation import run; "
                      "sys.argv = ['opentelemetry-instrument', *sys.argv[1:]]; run()")
        proc = subprocess.run([sys.executable, "-c", instrument, sys.executable, str(root / "examples" / "agents_sdk_agent.py")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(fixed)" in proc.stdout
    with Store(url).session() as client:
        (run,) = run_query(client, "runs_page", Filters(since=parse_since("1d")), sort="StartTime", descending=True, limit=10, offset=0)
    assert run["LlmCalls"] == 4 and run["ToolCalls"] == 2  # the handoff is no tool call
    assert run["CostUsd"] == pytest.approx(4 * CALL, abs=1e-9)
