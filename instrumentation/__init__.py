"""LLM client instrumentation and the run/tool API.

``OpenAIInstrumentor``, ``AnthropicInstrumentor``, ``GeminiInstrumentor``,
``BedrockInstrumentor`` and ``LiteLLMInstrumentor`` are OpenTelemetry instrumentors (entry points
``opentelemetry_instrumentor``: ``runmeter_openai``, ``runmeter_anthropic``,
``runmeter_gemini``, ``runmeter_bedrock``, ``runmeter_litellm``), loaded by ``opentelemetry-instrument python agent.py`` or used
directly::

    OpenAIInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    OpenAIInstrumentor().uninstrument()

Configuration, passed to ``instrument()`` (else the environment, else the
default): ``capture_content`` / ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
(off by default), ``prices`` (a PriceBook; default from ``runmeter.toml``),
``providers`` (base-URL prefix -> provider name).

``ThreadsInstrumentor`` (``runmeter_threads``) carries the OpenTelemetry context into worker
threads, so a call made in a thread pool belongs to the run that handed it over.

``run()`` and ``tool()`` mark runs and tool calls; see :mod:`runmeter.instrumentation._api`.
Nothing is patched at import time.
"""

from __future__ import annotations

from runmeter.instrumentation._api import Run, Tool, run, tool
from runmeter.instrumentation._core import CaptureMode
from runmeter.instrumentation.anthropic import AnthropicInstrumentor
from runmeter.instrumentation.bedrock import BedrockInstrumentor
from runmeter.instrumentation.gemini import GeminiInstrumentor
from runmeter.instrumentation.litellm import LiteLLMInstrumentor
from runmeter.instrumentation._threads import ThreadsInstrumentor
from runmeter.instrumentation.openai import OpenAIInstrumentor

__all__ = ["AnthropicInstrumentor", "BedrockInstrumentor", "CaptureMode", "GeminiInstrumentor", "LiteLLMInstrumentor", "OpenAIInstrumentor", "Run", "ThreadsInstrumentor", "Tool", "run", "tool"]
