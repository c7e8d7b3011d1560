"""An agent traced by Langfuse's, MLflow's or LangSmith's own SDK, run in a process of its own (they
patch the OpenAI client or set the global tracer provider for good), against the simulator. Used by
test_tracing_sdks.py.

    python -m tests.frameworks.sdk_agents langfuse [--runmeter-openai]   # prints the runs as JSON
    python -m tests.frameworks.sdk_agents mlflow OTLP_HTTP_URL           # exports to a collector
    python -m tests.frameworks.sdk_agents langsmith                      # prints the runs as JSON

Each agent makes three chat calls of gpt-4o-mini (1,000 tokens in, 20 out) and calls its search
tool after each with the same arguments: a loop by runmeter's count (three identical calls).
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runmeter.testing import Reply, Simulator

SECRET = "sk-test-SECRET-do-not-record-1234"


def _steps(client: Any, search: Any, task: str) -> str:
    """The agent's work, whichever SDK traces it: a call, then the same search, three times."""
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": task}])
        search("refund policy")
    return "done"


def _queue(sim: Simulator) -> None:
    sim.queue(*(Reply(text=f"Step {i}.", input_tokens=1_000, output_tokens=20) for i in range(3)))


class _Accept(BaseHTTPRequestHandler):
    """Langfuse's server, as far as its exporter needs one: every batch accepted."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def langfuse(runmeter_openai: bool) -> list[dict[str, Any]]:
    """Langfuse's OpenAI integration and @observe, its spans through runmeter's RunProcessor on the
    tracer provider Langfuse is given (as it takes the global one opentelemetry-instrument sets)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from runmeter.instrumentation import OpenAIInstrumentor
    from runmeter.processor import InMemoryRunSink, PriceBook, RunProcessor

    sink = InMemoryRunSink()
    processor = RunProcessor(SimpleSpanProcessor(InMemorySpanExporter()), sink=sink, background=False)
    tp = TracerProvider()
    tp.add_span_processor(processor)
    if runmeter_openai:
        OpenAIInstrumentor().instrument(tracer_provider=tp, prices=PriceBook(), providers={})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with Simulator() as sim:
        from langfuse import Langfuse, observe
        from langfuse.openai import OpenAI

        lf = Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test", host=f"http://127.0.0.1:{server.server_port}", tracer_provider=tp)
        client = OpenAI(base_url=sim.openai_url, api_key=SECRET, max_retries=0)

        @observe(as_type="tool")
        def search(query: str) -> str:
            return "refunds within 30 days"

        @observe(as_type="agent")
        def support_agent(task: str) -> str:
            return _steps(client, search, task)

        _queue(sim)
        support_agent("Can I get a refund?")
        lf.flush()
        processor.force_flush()
        lf.shutdown()
        client.close()
    server.shutdown()
    return _runs(sink)


def _runs(sink: Any) -> list[dict[str, Any]]:
    return [{"name": r.name, "llm_calls": r.llm_calls, "unpriced": r.unpriced_calls, "cost_usd": str(r.cost_usd),
             "tool_calls": dict(r.tool_calls), "loops": [[s.kind, s.count] for s in r.loop_signals], "parent": r.parent_run_id}
            for r in sink.runs]


def langsmith() -> list[dict[str, Any]]:
    """A LangChain chain (prompt template, chat model, parser) traced by LangSmith's OpenTelemetry
    export alone (LANGSMITH_OTEL_ONLY), on the global tracer provider runmeter's RunProcessor is on."""
    import os

    os.environ.update(LANGSMITH_OTEL_ENABLED="true", LANGSMITH_TRACING="true", LANGSMITH_OTEL_ONLY="true")
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.tracers.langchain import wait_for_all_tracers
    from langchain_openai import ChatOpenAI
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from runmeter.processor import InMemoryRunSink, RunProcessor

    sink = InMemoryRunSink()
    processor = RunProcessor(SimpleSpanProcessor(InMemorySpanExporter()), sink=sink, background=False)
    tp = TracerProvider()
    tp.add_span_processor(processor)
    trace.set_tracer_provider(tp)
    with Simulator() as sim:
        model = ChatOpenAI(model="gpt-4o-mini", base_url=sim.openai_url, api_key=SECRET, max_retries=0)
        chain = ChatPromptTemplate.from_messages([("user", "{question}")]) | model | StrOutputParser()
        for i in range(2):
            sim.queue(Reply(text=f"Answer {i}.", input_tokens=1_000, output_tokens=20))
            chain.invoke({"question": "Can I get a refund?"})
        wait_for_all_tracers()
        processor.force_flush()
    return _runs(sink)


def mlflow(endpoint: str) -> None:
    """MLflow's OpenAI autolog and @mlflow.trace, exported over OTLP/HTTP (MLflow's own exporter,
    switched on by OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)."""
    import os

    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint
    os.environ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/protobuf"
    import mlflow as mlf
    import openai
    from mlflow.tracing.provider import provider

    mlf.openai.autolog()
    with Simulator() as sim:
        client = openai.OpenAI(base_url=sim.openai_url, api_key=SECRET, max_retries=0)

        @mlf.trace(span_type="TOOL")
        def search(query: str) -> str:
            return "refunds within 30 days"

        @mlf.trace(span_type="AGENT", name="support_agent")
        def support_agent(task: str) -> str:
            return _steps(client, search, task)

        _queue(sim)
        support_agent("Can I get a refund?")
        provider.get().force_flush()
        client.close()


if __name__ == "__main__":
    if sys.argv[1] == "langfuse":
        print(json.dumps(langfuse("--runmeter-openai" in sys.argv)))
    elif sys.argv[1] == "langsmith":
        print(json.dumps(langsmith()))
    else:
        mlflow(sys.argv[2])
