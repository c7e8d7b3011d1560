"""LiteLLM instrumentation: ``litellm.completion`` and ``litellm.acompletion``, streamed or not,
``litellm.responses`` / ``litellm.aresponses`` (the Responses API), and ``litellm.embedding`` /
``litellm.aembedding``.

LiteLLM talks to most providers with its own HTTP code (Anthropic, Bedrock, Vertex AI, Gemini...),
so no client instrumentation sees those calls: a zero-code agent on LiteLLM was a bill of $0.
Zero code: ``opentelemetry-instrument python agent.py`` loads it through the
``opentelemetry_instrumentor`` entry point ``runmeter_litellm``. Directly::

    LiteLLMInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)

One span per ``completion()``, in LiteLLM's provider's name (``anthropic/claude-haiku-4-5`` is
``anthropic``'s ``claude-haiku-4-5``), priced from the usage LiteLLM reports in OpenAI's shape: the
prompt with its cache reads and writes (``cache_creation_input_tokens``, the 1-hour part from
``cache_creation_token_details``), the completion with its reasoning. Where LiteLLM goes through
another SDK (OpenAI's), that SDK's instrumentation is suppressed inside the call, so the call is
counted once. Tool results sent back are counted as tool calls, as for the other clients
(``_tools.py``; LiteLLM speaks OpenAI's message format).
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from runmeter.conventions import genai as G
from runmeter.conventions import load_dialects
from runmeter.instrumentation._base import ProviderInstrumentor, Target
from runmeter.instrumentation._core import GenAIHandler, Invocation, hash_json, openai_params, request_tool, text_parts
from runmeter.instrumentation._tools import answers_in, chat_answers
from runmeter.instrumentation._wrap import MethodSpec
from runmeter.instrumentation.openai import read_responses, read_responses_request, responses_event
from runmeter.processor import TokenUsage

__all__ = ["LiteLLMInstrumentor"]

def _provider(model: str, kwargs: dict[str, Any]) -> tuple[str, str]:
    """(OpenTelemetry provider name, the model as that provider names it), as LiteLLM routes it."""
    import litellm

    try:
        bare, provider, _, _ = litellm.get_llm_provider(
            model=model, custom_llm_provider=kwargs.get("custom_llm_provider"), api_base=kwargs.get("api_base"))
    except Exception:  # a model LiteLLM cannot route fails in the call itself, with LiteLLM's error
        provider, _, bare = model.partition("/") if "/" in model else ("litellm", "", model)
    dialects = load_dialects()
    return dialects.provider_aliases.get(str(provider), str(provider)), str(bare)


def _chat_call(kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
    """A chat call's invocation: the provider and model LiteLLM routes to, its endpoint, the parameters."""
    model = kwargs.get("model")
    provider, bare = _provider(str(model), kwargs) if isinstance(model, str) else ("litellm", None)
    base = kwargs.get("api_base") or kwargs.get("base_url")
    parts = urlsplit(base) if isinstance(base, str) and base else None
    return Invocation(
        operation="chat", provider=provider, request_model=bare,
        server_address=parts.hostname if parts else None, server_port=parts.port if parts else None,
        params=openai_params(kwargs), stream=bool(kwargs.get("stream")), capture=handler.capture_any,
    )


def _build(instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
    messages = kwargs.get("messages") or []
    messages = list(messages) if not isinstance(messages, list) else messages
    kwargs["messages"] = messages
    inv = _chat_call(kwargs, handler)
    inv.input_hash, inv.input_source, inv.answers = hash_json(messages), messages, answers_in(chat_answers, messages)
    if handler.capture_any:
        inv.input_messages = [text_parts(str(m.get("role")), m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") != "system"]
        inv.system_instructions = [p for m in messages if isinstance(m, dict) and m.get("role") == "system" for p in text_parts("system", m.get("content"))["parts"]]
    return inv


def _usage(u: Any) -> TokenUsage | None:
    prompt = getattr(u, "prompt_tokens", None)
    if prompt is None:
        return None
    details = getattr(u, "prompt_tokens_details", None)
    written = getattr(u, "cache_creation_input_tokens", None) or getattr(details, "cache_creation_tokens", None)
    written_1h = getattr(getattr(details, "cache_creation_token_details", None), "ephemeral_1h_input_tokens", None)
    reasoning = getattr(getattr(u, "completion_tokens_details", None), "reasoning_tokens", None)
    usage = TokenUsage.from_openai(prompt, getattr(u, "completion_tokens", None), getattr(details, "cached_tokens", None), reasoning, written)
    if written_1h:
        usage = TokenUsage(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
                           usage.reasoning_tokens, written_1h)
    return usage


def _read(inv: Invocation, resp: Any) -> None:
    inv.response_model = getattr(resp, "model", None)
    inv.response_id = getattr(resp, "id", None)
    u = getattr(resp, "usage", None)
    if u is not None:
        inv.usage = _usage(u)
    texts = []
    for choice in getattr(resp, "choices", None) or []:
        if getattr(choice, "finish_reason", None):
            inv.finish_reasons.append(choice.finish_reason)
        msg = getattr(choice, "message", None)
        for tc in getattr(msg, "tool_calls", None) or []:
            fn = getattr(tc, "function", None)
            if fn is not None:
                request_tool(inv, fn.name, fn.arguments, getattr(tc, "id", None))
        texts.append(getattr(msg, "content", None) or "")
    if inv.capture:
        inv.output_messages = [text_parts("assistant", t) for t in texts]


def _chunk(inv: Invocation, chunk: Any) -> None:
    if inv.response_model is None:
        inv.response_model = getattr(chunk, "model", None)
        inv.response_id = getattr(chunk, "id", None)
    u = getattr(chunk, "usage", None)
    if u is not None:
        inv.usage = _usage(u) or inv.usage
    for choice in getattr(chunk, "choices", None) or []:
        delta = getattr(choice, "delta", None)
        content = getattr(delta, "content", None)
        if content:
            inv.output_text.append(content)
        for tc in getattr(delta, "tool_calls", None) or []:
            fn = getattr(tc, "function", None)
            if fn is not None and getattr(fn, "name", None):
                request_tool(inv, fn.name, fn.arguments, getattr(tc, "id", None))
        if getattr(choice, "finish_reason", None):
            inv.finish_reasons.append(choice.finish_reason)
            if inv.capture:
                inv.output_messages = [text_parts("assistant", "".join(inv.output_text))]


def _build_embedding(instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
    model = kwargs.get("model")
    provider, bare = _provider(str(model), kwargs) if isinstance(model, str) else ("litellm", None)
    request_input = kwargs.get("input")
    return Invocation(operation="embeddings", provider=provider, request_model=bare, input_hash=hash_json(request_input))


def _read_embedding(inv: Invocation, resp: Any) -> None:
    inv.response_model = getattr(resp, "model", None)
    prompt = getattr(getattr(resp, "usage", None), "prompt_tokens", None)
    if prompt is not None:
        inv.usage = TokenUsage(input_tokens=prompt, output_tokens=0)


def _build_responses(instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
    inv = _chat_call(kwargs, handler)
    read_responses_request(inv, kwargs)
    return inv


COMPLETION = MethodSpec("litellm.completion", _build, _read, _chunk, suppress_inner=True)
EMBEDDING = MethodSpec("litellm.embedding", _build_embedding, _read_embedding, suppress_inner=True)
# LiteLLM answers in the Responses API's shape whatever the provider (to those without one it goes
# through its own completion(), suppressed inside the call like the openai SDK).
RESPONSES = MethodSpec("litellm.responses", _build_responses, read_responses, responses_event, suppress_inner=True)
_SPECS = {"completion": COMPLETION, "acompletion": COMPLETION, "embedding": EMBEDDING, "aembedding": EMBEDDING}
_RESPONSES_SPECS = {"responses": RESPONSES, "aresponses": RESPONSES}


class LiteLLMInstrumentor(ProviderInstrumentor):
    """runmeter's instrumentation of ``litellm``."""

    label = "litellm"

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("litellm >= 1.60",)

    def _targets(self, providers: dict[str, str]) -> list[Target]:
        import litellm
        import litellm.main

        # The functions where LiteLLM's callers look them up: the package (litellm.completion) and
        # its main module (which the Router and `from litellm.main import ...` use).
        targets = [Target(owner, name, spec, name.startswith("a"))
                   for owner in (litellm, litellm.main) for name, spec in _SPECS.items()]
        try:  # by name: the package's attribute `responses` is the function, not this module
            responses_main = importlib.import_module("litellm.responses.main")
        except ImportError:  # a LiteLLM without the Responses API
            return targets
        return targets + [Target(owner, name, spec, name.startswith("a"))
                          for owner in (litellm, responses_main) for name, spec in _RESPONSES_SPECS.items()
                          if callable(getattr(owner, name, None))]
