"""runmeter never traces itself: with the urllib3 instrumentation active (it is installed in
.venv-otel-distro by `make test`), a ClickHouse insert over HTTP does not become a span."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runmeter.exporter import Store
from runmeter.testing import Reply, Simulator
from tests.chhttp import ClickHouseHTTP

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv-otel-distro" / "bin" / "python"
INSTRUMENT = ROOT / ".venv" / "bin" / "opentelemetry-instrument"

AGENT = """
import os, openai, runmeter, urllib3
client = openai.OpenAI(base_url=os.environ["SIM_URL"], api_key="sk-x", max_retries=0)
for i in range(3):
    with runmeter.run("stored-run", owner="ana") as run:
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
        run.accept()
# The agent's own urllib3 request: proves the urllib3 instrumentation is active in this process.
urllib3.request("GET", os.environ["SIM_URL"] + "/health-of-the-agents-own-request")
"""


@pytest.mark.slow
def test_clickhouse_inserts_are_not_traced_with_urllib3_instrumented(tmp_path: Path) -> None:
    assert PYTHON.exists(), "make test creates .venv-otel-distro"
    (tmp_path / "agent.py").write_text(AGENT)
    server = ClickHouseHTTP(str(tmp_path / "engine")).up()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUNMETER_", "PYTEST", "VIRTUAL_ENV"))}
        with Simulator() as sim:
            for _ in range(3):
                sim.queue(Reply(input_tokens=57, output_tokens=21, cached_tokens=32))
            env.update(SIM_URL=sim.openai_url, RUNMETER_CLICKHOUSE_URL=server.url,
                       OTEL_PYTHON_DISTRO="runmeter", OTEL_PYTHON_CONFIGURATOR="runmeter")
            proc = subprocess.run([str(INSTRUMENT), str(PYTHON), "agent.py"], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        with Store(server.url).session() as c:
            scopes = dict(c.query("SELECT ScopeName, count() FROM otel_traces GROUP BY ScopeName").result_rows)
            http = c.query("SELECT SpanName, arrayExists(v -> v LIKE '%/health-of-the-agents-own-request', "
                           "mapValues(SpanAttributes)) FROM otel_traces "
                           "WHERE ScopeName = 'opentelemetry.instrumentation.urllib3'").result_rows
            runs = c.query("SELECT count(), sum(LlmCalls) FROM runmeter_runs_current").result_rows[0]
    finally:
        server.close()
    assert runs == (3, 3)
    # 3 runs x (run span + chat span), and the agent's own request: nothing of runmeter's inserts.
    assert scopes.get("runmeter.instrumentation") == 6
    assert http == [("GET", True)], http
