"""Google Gemini client instrumentation (``google-genai``): ``models.generate_content`` and
``generate_content_stream``, sync and ``client.aio``, and chat sessions (they call the same methods).

Usage and options as in :mod:`runmeter.instrumentation.openai`. One span per request sent: the
SDK's private ``_generate_content`` / ``_generate_content_stream`` are wrapped, so every hop of
automatic function calling and of automatic continuation is a call of its own (wrapping the
public method would count a three-hop tool loop as one call, priced at its last hop).

Token mapping: ``promptTokenCount`` includes cached content (``cachedContentTokenCount``); the
tool-use prompt (``toolUsePromptTokenCount``) and the thoughts (``thoughtsTokenCount``) are
counted apart and billed as input and output: the span's ``gen_ai.usage.input_tokens`` is prompt
+ tool-use prompt, ``gen_ai.usage.output_tokens`` candidates + thoughts, with the thoughts as
reasoning tokens. Each streamed chunk repeats the usage so far: later values overwrite. The
provider is ``gcp.gemini`` (the Gemini API) or ``gcp.vertex_ai``; prices are genai-prices'
``google`` list, long-context tiers included.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from runmeter.conventions import genai as G
from runmeter.instrumentation._base import ProviderInstrumentor, Target
from runmeter.instrumentation._core import GenAIHandler, Invocation, given, hash_json, request_tool, text_parts
from runmeter.instrumentation._tools import answers_in, gemini_answers
from runmeter.instrumentation._wrap import MethodSpec
from runmeter.processor import TokenUsage

__all__ = ["GeminiInstrumentor"]

_PARAMS = {
    "temperature": G.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": G.GEN_AI_REQUEST_TOP_P,
    "top_k": G.GEN_AI_REQUEST_TOP_K,
    "max_output_tokens": G.GEN_AI_REQUEST_MAX_TOKENS,
    "seed": G.GEN_AI_REQUEST_SEED,
}
_ENDPOINTS: dict[tuple[int, str], tuple[str | None, int | None]] = {}


def _field(obj: Any, name: str) -> Any:
    """A field of a config given as a dict or as the SDK's pydantic type."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _plain(value: Any) -> Any:
    """Contents as plain data (the SDK's pydantic types dumped), for a stable input hash."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(exclude_none=True, mode="json")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _model_id(model: Any) -> str | None:
    """``models/gemini-2.5-flash`` or a Vertex resource name, as the model id prices know."""
    if not given(model):
        return None
    text = str(model)
    return text.rsplit("models/", 1)[-1] if "models/" in text else text


def _endpoint(api_client: Any) -> tuple[str | None, int | None]:
    key = (id(api_client), str(getattr(getattr(api_client, "_http_options", None), "base_url", "")))
    found = _ENDPOINTS.get(key)
    if found is None:
        base = key[1]
        parts = urlsplit(base) if base else None
        found = (parts.hostname, parts.port or (443 if parts.scheme == "https" else None)) if parts else (None, None)
        if len(_ENDPOINTS) > 256:
            _ENDPOINTS.clear()
        _ENDPOINTS[key] = found
    return found


def _build(instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
    api_client = getattr(instance, "_api_client", None)
    host, port = _endpoint(api_client)
    config = kwargs.get("config")
    params: dict[str, Any] = {}
    if config is not None:
        for key, attr in _PARAMS.items():
            v = _field(config, key)
            if given(v) and isinstance(v, (int, float)) and not isinstance(v, bool):
                params[attr] = v
        stop = _field(config, "stop_sequences")
        if given(stop) and stop:
            params[G.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
    contents = kwargs.get("contents")
    system = _field(config, "system_instruction") if config is not None else None
    inv = Invocation(
        operation="generate_content",
        provider="gcp.vertex_ai" if getattr(api_client, "vertexai", False) else "gcp.gemini",
        request_model=_model_id(kwargs.get("model")),
        server_address=host, server_port=port,
        params=params,
        input_hash=hash_json([_plain(system), _plain(contents)]),
        input_source=contents,
        capture=handler.capture_any,
        answers=answers_in(gemini_answers, contents, _plain),
    )
    if handler.capture_any:
        items = contents if isinstance(contents, list) else [contents]
        inv.input_messages = [text_parts(str(_field(c, "role") or "user"), _texts(c)) for c in items if c is not None]
        if given(system) and system is not None:
            inv.system_instructions = text_parts("system", _texts(system))["parts"]
    return inv


def _texts(content: Any) -> str:
    """The text of a content given as a string, a dict, the SDK's Content, or a list of parts."""
    if isinstance(content, str):
        return content
    parts = _field(content, "parts")
    if parts is None and isinstance(content, list):
        parts = content
    return "".join(t for t in (_field(p, "text") if not isinstance(p, str) else p for p in parts or []) if isinstance(t, str))


def _usage(inv: Invocation, response: Any) -> None:
    u = getattr(response, "usage_metadata", None)
    if u is None:
        return
    prompt = getattr(u, "prompt_token_count", None)
    if prompt is None and inv.usage is None:
        return
    inv.usage = TokenUsage.from_gemini(prompt, getattr(u, "candidates_token_count", None), getattr(u, "cached_content_token_count", None),
                                       getattr(u, "thoughts_token_count", None), getattr(u, "tool_use_prompt_token_count", None))


def _candidate(inv: Invocation, response: Any) -> None:
    inv.response_model = getattr(response, "model_version", None) or inv.response_model
    inv.response_id = getattr(response, "response_id", None) or inv.response_id
    for cand in getattr(response, "candidates", None) or []:
        reason = getattr(cand, "finish_reason", None)
        if reason is not None:
            inv.finish_reasons = [str(getattr(reason, "value", reason)).lower()]
        content = getattr(cand, "content", None)
        for part in getattr(content, "parts", None) or []:
            call = getattr(part, "function_call", None)
            if call is not None:
                request_tool(inv, getattr(call, "name", ""), _plain(getattr(call, "args", None)), getattr(call, "id", None))
            text = getattr(part, "text", None)
            if isinstance(text, str) and not getattr(part, "thought", False):
                inv.output_text.append(text)
        break  # the first candidate is the answer; more are alternatives of the same request


def _read(inv: Invocation, response: Any) -> None:
    _candidate(inv, response)
    _usage(inv, response)
    if inv.capture:
        inv.output_messages = [{**text_parts("assistant", "".join(inv.output_text)),
                                "finish_reason": inv.finish_reasons[0] if inv.finish_reasons else None}]


def _build_stream(instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
    inv = _build(instance, kwargs, handler)
    inv.stream = True  # the wrapper hands back a proxy that reads each chunk as it passes
    return inv


GENERATE = MethodSpec("gemini.generate_content", _build, _read)
STREAM = MethodSpec("gemini.generate_content_stream", _build_stream, _read, _read)


class GeminiInstrumentor(ProviderInstrumentor):
    """runmeter's instrumentation of the ``google-genai`` client."""

    label = "gemini"

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("google-genai >= 1.0",)

    def _targets(self, providers: dict[str, str]) -> list[Target]:
        from google.genai import models

        targets = []
        for owner, is_async in ((models.Models, False), (models.AsyncModels, True)):
            # One span per request: the private methods each hop of AFC and continuation calls;
            # the public ones where an SDK has no such split.
            single = "_generate_content" if "_generate_content" in owner.__dict__ else "generate_content"
            streamed = "_generate_content_stream" if "_generate_content_stream" in owner.__dict__ else "generate_content_stream"
            targets.append(Target(owner, single, GENERATE, is_async))
            targets.append(Target(owner, streamed, STREAM, is_async))
        return targets
