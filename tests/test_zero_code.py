"""`opentelemetry-instrument python agent.py`: no code change, spans priced (real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runmeter.testing import Reply, Simulator, ToolCall

AGENT = """
import os, anthropic, openai
oa = openai.OpenAI(base_url=os.environ["SIM_URL"] + "/v1", api_key="sk-zero-code-secret", max_retries=0)
oa.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
an = anthropic.Anthropic(base_url=os.environ["SIM_URL"], api_key="sk-zero-code-secret", max_retries=0)
an.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
"""


def _spans(stdout: str) -> list[dict]:
    """The console exporter prints one JSON object per span."""
    dec = json.JSONDecoder()
    out, i = [], 0
    while True:
        j = stdout.find("{", i)
        if j < 0:
            return out
        obj, i = dec.raw_decode(stdout, j)
        out.append(obj)


def test_opentelemetry_instrument_prices_both_clients(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    bin_dir = Path(sys.executable).parent
    with Simulator() as sim:
        sim.queue(
            Reply(input_tokens=57, output_tokens=21, cached_tokens=32),
            Reply(input_tokens=1_000, output_tokens=200, cached_tokens=4_000, cache_write_tokens=1_000),
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNMETER_", "PYTEST"))}
        env.update(SIM_URL=sim.url, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="zero-code-agent")
        proc = subprocess.run(
            [str(bin_dir / "opentelemetry-instrument"), sys.executable, "agent.py"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    spans = _spans(proc.stdout)
    ours = {s["name"]: s for s in spans if s["attributes"].get("runmeter.cost.usd") is not None and s["name"].startswith("chat")}
    assert set(ours) == {"chat gpt-5.5", "chat claude-haiku-4-5"}
    assert ours["chat gpt-5.5"]["attributes"]["runmeter.cost.usd"] == 0.000771
    assert ours["chat claude-haiku-4-5"]["attributes"]["runmeter.cost.usd"] == 0.00365
    assert all(s["resource"]["attributes"]["service.name"] == "zero-code-agent" for s in spans)
    sdk = [s for s in spans if s["name"] == "anthropic.messages.create"]
    assert sdk and sdk[0]["attributes"]["runmeter.cost.duplicate"] is True
    # an implicit run: each trace root's GenAI spans carry its run id
    assert all(s["attributes"].get("runmeter.run.id") for s in ours.values())
    assert "sk-zero-code-secret" not in proc.stdout


FIX = [  # read the file, fix it, say so: the example's check then passes and the run is accepted
    Reply(tool_calls=[ToolCall("read_file", {"path": "app.py"}, "call_1")], input_tokens=500, output_tokens=20),
    Reply(tool_calls=[ToolCall("edit_file", {"path": "app.py", "old": "a - b", "new": "a + b"}, "call_2")], input_tokens=600, output_tokens=30),
    Reply(text="Fixed add().", input_tokens=700, output_tokens=10),
]


@pytest.mark.parametrize(("example", "cost"), [
    # gemini-2.5-flash: 1,800 in x $0.30/M + 60 out x $2.50/M
    ("gemini_agent.py", 1_800 * 0.30e-6 + 60 * 2.50e-6),
    # Claude Haiku 4.5 on Bedrock through the us. profile (genai-prices' regional price): $1.10/M in, $5.50/M out
    ("bedrock_agent.py", 1_800 * 1.10e-6 + 60 * 5.50e-6),
])
def test_the_gemini_and_bedrock_examples_zero_code(tmp_path: Path, root: Path, example: str, cost: float) -> None:
    bin_dir = Path(sys.executable).parent
    with Simulator() as sim:
        sim.queue(*FIX)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNMETER_", "PYTEST", "AWS_", "GOOGLE_", "GEMINI_"))}
        env.update(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="zero-code-agent",
                   GEMINI_BASE_URL=sim.url, GOOGLE_API_KEY="zero-code-secret",
                   AWS_ENDPOINT_URL_BEDROCK_RUNTIME=sim.url, AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
                   AWS_SECRET_ACCESS_KEY="zero-code-secret", AWS_DEFAULT_REGION="us-east-1")
        proc = subprocess.run([str(bin_dir / "opentelemetry-instrument"), sys.executable, str(root / "examples" / example)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    spans = _spans(proc.stdout[proc.stdout.find("{"):])
    calls = [s for s in spans if s["attributes"].get("runmeter.cost.usd") is not None]
    tools = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "execute_tool"]
    assert len(calls) == 3 and [t["attributes"]["gen_ai.tool.name"] for t in tools] == ["read_file", "edit_file"]
    # The example wraps its tools in runmeter.tool(): the calls told from their results say nothing more.
    assert not any(s["attributes"].get("runmeter.tool.inferred") for s in spans)
    assert sum(s["attributes"]["runmeter.cost.usd"] for s in calls) == pytest.approx(cost, abs=1e-12)
    (run,) = [s for s in spans if s["name"] == "invoke_agent fix-bug"]
    assert run["attributes"].get("runmeter.run.outcome") == "accepted"
    assert "zero-code-secret" not in proc.stdout


THREADED_AGENT = """
import os
from concurrent.futures import ThreadPoolExecutor
import openai
from opentelemetry import trace

client = openai.OpenAI(base_url=os.environ["SIM_URL"] + "/v1", api_key="sk-zero-code-secret", max_retries=0)

def ask(i):
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"part {i}"}])

with trace.get_tracer("agent").start_as_current_span("summarize-docs"):
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(ask, range(3)))
"""


def test_calls_in_a_thread_pool_join_the_agents_trace_zero_code(tmp_path: Path) -> None:
    """With no runmeter code: opentelemetry-instrument loads runmeter_threads, so the three calls
    made in pool workers are in the trace of the span that handed them over, one implicit run."""
    (tmp_path / "agent.py").write_text(THREADED_AGENT)
    bin_dir = Path(sys.executable).parent
    with Simulator() as sim:
        sim.responder = lambda req: Reply(input_tokens=1_000, output_tokens=20)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNMETER_", "PYTEST"))}
        env.update(SIM_URL=sim.url, OTEL_TRACES_EXPORTER="console")
        proc = subprocess.run([str(bin_dir / "opentelemetry-instrument"), sys.executable, "agent.py"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    spans = _spans(proc.stdout)
    root = next(s for s in spans if s["name"] == "summarize-docs")
    calls = [s for s in spans if s["name"] == "chat gpt-4o-mini"]
    assert len(calls) == 3
    assert {s["context"]["trace_id"] for s in calls} == {root["context"]["trace_id"]}
    assert len({s["attributes"]["runmeter.run.id"] for s in calls}) == 1  # one implicit run, the root's


ONE_CALL = """
import os, openai
openai.OpenAI(base_url=os.environ["SIM_URL"] + "/v1", api_key="sk-x", max_retries=0).chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
"""
CI_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(("handover", "joins"), [(None, False), ("null", True)])
def test_a_traceparent_is_taken_up_only_when_runmeter_set_it(tmp_path: Path, handover: str | None, joins: bool) -> None:
    """A CI system's TRACEPARENT for a whole job is left alone (it would make one run of every call in
    the job); the one runmeter writes for a program started in a span is joined."""
    (tmp_path / "agent.py").write_text(ONE_CALL)
    with Simulator() as sim:
        sim.responder = lambda req: Reply(input_tokens=1_000, output_tokens=20)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNMETER_", "PYTEST"))}
        env.update(SIM_URL=sim.url, OTEL_TRACES_EXPORTER="console", TRACEPARENT=f"00-{CI_TRACE}-b7ad6b7169203331-01")
        if handover is not None:
            env["RUNMETER_RUN_HANDOVER"] = handover
        proc = subprocess.run([str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, "agent.py"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (call,) = [s for s in _spans(proc.stdout) if s["name"] == "chat gpt-4o-mini"]
    assert (call["context"]["trace_id"] == f"0x{CI_TRACE}") is joins
    assert (call["parent_id"] == "0xb7ad6b7169203331") is joins
