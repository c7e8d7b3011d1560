"""A function-scoped rig: simulator on 127.0.0.1, explicit providers, instrumentors, RunProcessor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runmeter.instrumentation import AnthropicInstrumentor, BedrockInstrumentor, GeminiInstrumentor, OpenAIInstrumentor
from runmeter.processor import InMemoryRunSink, PriceBook, RunProcessor
from runmeter.testing import Simulator

SECRET = "sk-test-SECRET-do-not-record-1234"


@dataclass
class Rig:
    sim: Simulator
    exporter: InMemorySpanExporter
    sink: InMemoryRunSink
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    processor: RunProcessor
    clients: list[Any] = field(default_factory=list)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def llm_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if (s.attributes or {}).get("gen_ai.operation.name") in ("chat", "embeddings", "generate_content", "text_completion")
                and s.instrumentation_scope.name == "runmeter.instrumentation"]

    def metrics(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        out: dict[str, Any] = {}
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out[m.name] = m
        return out

    def openai(self, **kw: Any) -> Any:
        import openai

        client = openai.OpenAI(base_url=self.sim.openai_url, api_key=SECRET, max_retries=0, **kw)
        self.clients.append(client)
        return client

    def async_openai(self, **kw: Any) -> Any:
        import openai

        return openai.AsyncOpenAI(base_url=self.sim.openai_url, api_key=SECRET, max_retries=0, **kw)

    def anthropic(self, **kw: Any) -> Any:
        import anthropic

        client = anthropic.Anthropic(base_url=self.sim.anthropic_url, api_key=SECRET, max_retries=0,
                                     open_telemetry={"tracer_provider": self.tracer_provider}, **kw)
        self.clients.append(client)
        return client

    def async_anthropic(self, **kw: Any) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(base_url=self.sim.anthropic_url, api_key=SECRET, max_retries=0,
                                        open_telemetry={"tracer_provider": self.tracer_provider}, **kw)


    def gemini(self, **kw: Any) -> Any:
        from google import genai

        client = genai.Client(api_key=SECRET, http_options={"base_url": self.sim.gemini_url, "retry_options": {"attempts": 1}}, **kw)
        self.clients.append(client)
        return client

    def bedrock(self) -> Any:
        import boto3
        from botocore.config import Config

        client = boto3.client("bedrock-runtime", endpoint_url=self.sim.url, region_name="us-east-1",
                              aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key=SECRET,
                              config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
        self.clients.append(client)
        return client


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    # indirect parameters: a capture mode, or {"capture": ..., "prices": PriceBook(...)}
    param = getattr(request, "param", None)
    capture = param.get("capture") if isinstance(param, dict) else param
    prices = param.get("prices") if isinstance(param, dict) else None
    exporter = InMemorySpanExporter()
    sink = InMemoryRunSink()
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    processor = RunProcessor(SimpleSpanProcessor(exporter), sink=sink, background=False, meter_provider=meters)
    tp = TracerProvider()
    tp.add_span_processor(processor)
    kwargs = {"tracer_provider": tp, "meter_provider": meters, "prices": prices or PriceBook(), "providers": {}}
    if capture is not None:
        kwargs["capture_content"] = capture
    OpenAIInstrumentor().instrument(**kwargs)
    AnthropicInstrumentor().instrument(**kwargs)
    GeminiInstrumentor().instrument(**kwargs)
    BedrockInstrumentor().instrument(**kwargs)
    with Simulator() as sim:
        r = Rig(sim, exporter, sink, reader, tp, meters, processor)
        yield r
        for client in r.clients:
            client.close()
    OpenAIInstrumentor().uninstrument()
    AnthropicInstrumentor().uninstrument()
    GeminiInstrumentor().uninstrument()
    BedrockInstrumentor().uninstrument()
    tp.shutdown()
    meters.shutdown()


def all_attribute_text(spans: list[ReadableSpan]) -> str:
    parts = []
    for s in spans:
        parts.extend(f"{k}={v}" for k, v in (s.attributes or {}).items())
        for e in s.events:
            parts.extend(f"{k}={v}" for k, v in (e.attributes or {}).items())
    return "\n".join(parts)
