"""OpenAI client instrumentation (``openai`` 2.x and 3.x), and any OpenAI-compatible server.

Wraps ``chat.completions.create``, ``responses.create`` and ``embeddings.create``,
sync and async, streamed or not, and their ``with_raw_response`` forms (for a
client made after ``instrument()``). Zero code: ``opentelemetry-instrument python
agent.py`` loads it through the ``opentelemetry_instrumentor`` entry point.
Directly::

    OpenAIInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)

Options (argument, then environment, then default): ``capture_content``
(``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``: NO_CONTENT, SPAN_ONLY,
EVENT_ONLY, SPAN_AND_EVENT), ``prices`` (a PriceBook; default from
``runmeter.toml``), ``providers`` (base-URL prefix -> provider name, for
vLLM, Ollama, LM Studio...).

The Responses API's built-in web and file searches (``web_search_call``, ``file_search_call``
output items) are counted in ``runmeter.cost.web_searches`` / ``file_searches`` and priced per
search, beside the tokens.

If another instrumentation already wraps a method (the official
``opentelemetry-instrumentation-openai-v2``, say), runmeter leaves it alone and
says so once; the RunProcessor still prices and assembles that library's spans.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from runmeter.instrumentation._base import ProviderInstrumentor, Target
from runmeter.instrumentation._core import GenAIHandler, Invocation, given, hash_json, openai_params, request_tool, text_parts
from runmeter.instrumentation._tools import answers_in, chat_answers, responses_answers
from runmeter.instrumentation._wrap import MethodSpec
from runmeter.processor import TokenUsage, provider_for_base_url
from runmeter.conventions import genai as G
from runmeter.conventions import load_dialects

__all__ = ["OpenAIInstrumentor"]

# OpenAI-compatible endpoints genai-prices cannot tell by URL.
_KNOWN_HOSTS = {
    "generativelanguage.googleapis.com": "gcp.gemini",  # Gemini's OpenAI-compatible endpoint
}


_PROVIDER_CACHE: dict[tuple[int, int], tuple[Any, tuple[str, str | None, int | None]]] = {}


def _provider(instance: Any, handler: GenAIHandler, providers: dict[str, str]) -> tuple[str, str | None, int | None]:
    """(provider name, host, port) of a resource's client; cached per client base URL object."""
    client = getattr(instance, "_client", None)
    url = getattr(client, "base_url", None)
    key = (id(client), id(providers))
    cached = _PROVIDER_CACHE.get(key)
    if cached is not None and cached[0] is url:
        return cached[1]
    if len(_PROVIDER_CACHE) > 256:
        _PROVIDER_CACHE.clear()
    found = _resolve_provider(url, providers)
    _PROVIDER_CACHE[key] = (url, found)
    return found


def _resolve_provider(url: Any, providers: dict[str, str]) -> tuple[str, str | None, int | None]:
    host = getattr(url, "host", None)
    port = getattr(url, "port", None)
    text = str(url) if url is not None else ""
    for prefix, name in providers.items():
        if text.startswith(prefix):
            return name, host, port
    port = port or (443 if text.startswith("https") else None)
    if host in _KNOWN_HOSTS:
        return _KNOWN_HOSTS[host], host, port
    if getattr(url, "port", None) == 11434:
        return "ollama", host, port
    found = provider_for_base_url(text) if text else None  # Groq, Together, Fireworks, Azure... by genai-prices' URL patterns
    return (load_dialects().otel_provider(found) if found else "openai"), host, port


class _Specs:
    """The three methods' request/response mappings, bound to the instrumentor's provider map."""

    def __init__(self, providers: dict[str, str]) -> None:
        self.providers = providers

    def _base(self, op: str, instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
        provider, host, port = _provider(instance, handler, self.providers)
        model = kwargs.get("model")
        return Invocation(
            operation=op, provider=provider, request_model=str(model) if given(model) else None,
            server_address=host, server_port=port, params=openai_params(kwargs), stream=bool(kwargs.get("stream")),
            capture=handler.capture_any,
        )

    # chat.completions.create
    def chat(self, instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
        inv = self._base("chat", instance, kwargs, handler)
        messages = kwargs.get("messages") or []
        messages = list(messages) if not isinstance(messages, list) else messages
        kwargs["messages"] = messages  # an iterable the SDK would consume once stays readable
        inv.input_hash = hash_json(messages)
        inv.input_source = messages
        inv.answers = answers_in(chat_answers, messages)
        if handler.capture_any:
            inv.input_messages = [text_parts(str(m.get("role")), m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") != "system"]
            inv.system_instructions = [p for m in messages if isinstance(m, dict) and m.get("role") == "system" for p in text_parts("system", m.get("content"))["parts"]]
        return inv

    @staticmethod
    def read_chat(inv: Invocation, resp: Any) -> None:
        inv.response_model = getattr(resp, "model", None)
        inv.response_id = getattr(resp, "id", None)
        _tier(inv, resp)
        u = getattr(resp, "usage", None)
        if u is not None:
            inv.usage = _usage(u)
        outputs = []
        for choice in getattr(resp, "choices", None) or []:
            if choice.finish_reason:
                inv.finish_reasons.append(choice.finish_reason)
            msg = choice.message
            for tc in getattr(msg, "tool_calls", None) or []:
                fn = getattr(tc, "function", None)
                if fn is not None:
                    request_tool(inv, fn.name, fn.arguments, getattr(tc, "id", None))
            if inv.capture:
                outputs.append({**text_parts("assistant", msg.content or ""), "finish_reason": choice.finish_reason})
        if inv.capture:
            inv.output_messages = outputs

    @staticmethod
    def chat_chunk(inv: Invocation, chunk: Any) -> None:
        if inv.response_model is None:
            inv.response_model = getattr(chunk, "model", None)
            inv.response_id = getattr(chunk, "id", None)
        u = getattr(chunk, "usage", None)
        if u is not None:
            inv.usage = _usage(u)
        _tier(inv, chunk)
        for choice in getattr(chunk, "choices", None) or []:
            delta = choice.delta
            if delta is not None and delta.content:
                inv.output_text.append(delta.content)
            for tc in getattr(delta, "tool_calls", None) or []:
                fn = getattr(tc, "function", None)
                if fn is not None and fn.name:
                    request_tool(inv, fn.name, fn.arguments, getattr(tc, "id", None))
            if choice.finish_reason:
                inv.finish_reasons.append(choice.finish_reason)
                if inv.capture:
                    inv.output_messages = [{**text_parts("assistant", "".join(inv.output_text)), "finish_reason": choice.finish_reason}]

    # responses.create
    def responses(self, instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
        inv = self._base("chat", instance, kwargs, handler)
        read_responses_request(inv, kwargs)
        return inv

    # embeddings.create
    def embeddings(self, instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
        inv = self._base("embeddings", instance, kwargs, handler)
        inv.stream = False
        request_input = kwargs.get("input")
        inv.input_hash = hash_json(request_input if given(request_input) else None)
        return inv

    @staticmethod
    def read_embeddings(inv: Invocation, resp: Any) -> None:
        inv.response_model = getattr(resp, "model", None)
        u = getattr(resp, "usage", None)
        if u is not None:
            inv.usage = TokenUsage(input_tokens=u.prompt_tokens or 0, output_tokens=0)


def read_responses_request(inv: Invocation, kwargs: dict[str, Any]) -> None:
    """A Responses API request's input into the call: its hash, the tool results it carries and,
    when content is captured, its messages (the openai SDK's ``responses.create``, LiteLLM's ``responses``)."""
    request_input = kwargs.get("input")
    instructions = kwargs.get("instructions")
    inv.input_hash = hash_json([instructions if given(instructions) else None, request_input if given(request_input) else None])
    inv.input_source = request_input if given(request_input) else None
    if isinstance(request_input, list):
        inv.answers = answers_in(responses_answers, request_input)
    if inv.capture and request_input is not None and given(request_input):
        inv.input_messages = [text_parts("user", request_input)] if isinstance(request_input, str) else [
            text_parts(str(m.get("role", "user")), m.get("content")) for m in request_input if isinstance(m, dict)
        ]
        if given(instructions):
            inv.system_instructions = [{"type": "text", "content": str(instructions)}]


def read_responses(inv: Invocation, resp: Any) -> None:
    """A Responses API response (the openai SDK's, or LiteLLM's of the same shape) into the call."""
    inv.response_model = getattr(resp, "model", None)
    inv.response_id = getattr(resp, "id", None)
    _tier(inv, resp)
    status = getattr(resp, "status", None)
    if status:
        inv.finish_reasons.append(str(status))
    u = getattr(resp, "usage", None)
    if u is not None:
        details = getattr(u, "input_tokens_details", None)
        cached = getattr(details, "cached_tokens", None)
        written = getattr(details, "cache_write_tokens", None)
        if written is None and details is not None:
            written = (getattr(details, "model_extra", None) or {}).get("cache_write_tokens")
        reasoning = getattr(getattr(u, "output_tokens_details", None), "reasoning_tokens", None)
        inv.usage = TokenUsage.from_openai(u.input_tokens, u.output_tokens, cached, reasoning, written)
    texts = []
    searches = file_searches = 0
    for item in getattr(resp, "output", None) or []:
        kind = getattr(item, "type", None)
        if kind == "web_search_call":
            searches += 1  # the built-in web search tool, billed per call beside the tokens
        elif kind == "file_search_call":
            file_searches += 1
        elif kind == "function_call":
            request_tool(inv, item.name, item.arguments, getattr(item, "call_id", None))
        elif kind == "message":
            texts += [getattr(c, "text", "") for c in item.content if getattr(c, "type", "") == "output_text"]
    if (searches or file_searches) and inv.usage is not None:
        inv.usage = dataclasses.replace(inv.usage, web_searches=searches, file_searches=file_searches)
    if inv.capture:
        inv.output_messages = [text_parts("assistant", "".join(texts))]

def responses_event(inv: Invocation, event: Any) -> None:
    """One event of a streamed Responses API call: the text as it comes, the usage at the end."""
    kind = getattr(event, "type", None)
    if kind == "response.output_text.delta":
        inv.output_text.append(getattr(event, "delta", "") or "")
    elif kind in ("response.completed", "response.incomplete", "response.failed"):
        inv.finish_reasons.clear()
        read_responses(inv, event.response)


def _usage(u: Any) -> TokenUsage:
    details = getattr(u, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None)
    written = getattr(details, "cache_write_tokens", None)  # newer responses; absent from older SDK models
    if written is None and details is not None:
        written = (getattr(details, "model_extra", None) or {}).get("cache_write_tokens")
    reasoning = getattr(getattr(u, "completion_tokens_details", None), "reasoning_tokens", None)
    return TokenUsage.from_openai(u.prompt_tokens, u.completion_tokens, cached, reasoning, written)


def _tier(inv: Invocation, resp: Any) -> None:
    tier = getattr(resp, "service_tier", None)
    if isinstance(tier, str) and tier:
        inv.service_tier = tier


class OpenAIInstrumentor(ProviderInstrumentor):
    """runmeter's instrumentation of the ``openai`` client."""

    label = "openai"

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 2.0.0, < 4",)

    def _targets(self, providers: dict[str, str]) -> list[Target]:
        from openai.resources import embeddings, responses
        from openai.resources.chat import completions

        s = _Specs(providers)
        chat = MethodSpec("openai.chat", s.chat, s.read_chat, s.chat_chunk)
        resp = MethodSpec("openai.responses", s.responses, read_responses, responses_event)
        emb = MethodSpec("openai.embeddings", s.embeddings, s.read_embeddings)
        # Every public method that sends a model request of its own. The stream() helpers call
        # create() (wrapped once, there); parse() posts the request itself, so it is wrapped too.
        targets = [
            Target(completions.Completions, "create", chat, False),
            Target(completions.AsyncCompletions, "create", chat, True),
            Target(responses.Responses, "create", resp, False),
            Target(responses.AsyncResponses, "create", resp, True),
            Target(embeddings.Embeddings, "create", emb, False),
            Target(embeddings.AsyncEmbeddings, "create", emb, True),
        ]
        for owner, spec, is_async in ((completions.Completions, chat, False), (completions.AsyncCompletions, chat, True),
                                      (responses.Responses, resp, False), (responses.AsyncResponses, resp, True)):
            if "parse" in owner.__dict__:  # openai >= 2.?: structured outputs on the resource itself
                targets.append(Target(owner, "parse", spec, is_async))
        return targets
