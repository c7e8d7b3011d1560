"""AWS Bedrock Runtime instrumentation (``boto3``/``botocore``): ``converse``, ``converse_stream``
and ``invoke_model`` (Anthropic, Meta Llama and Amazon Nova bodies).

botocore makes its client methods at run time, so the one place every call passes is
``BaseClient._make_api_call``: it is wrapped, and any call that is not one of these Bedrock
Runtime operations goes straight through. Usage and options as in
:mod:`runmeter.instrumentation.openai`.

Token mapping: Converse reports ``cacheReadInputTokens`` and ``cacheWriteInputTokens`` apart
from ``inputTokens``, as Anthropic does: the span's ``gen_ai.usage.input_tokens`` is their sum.
``invoke_model`` is read from its body (Anthropic's ``usage``, Llama's ``prompt_token_count``),
else from the ``X-Amzn-Bedrock-Input/Output-Token-Count`` headers; the body is read once and
handed back to the caller as a fresh stream. The model id prices as genai-prices' ``aws`` list
knows it: cross-region prefixes (``us.``, ``eu.``, ``global.``...) resolve there, and an
inference-profile ARN is reduced to the profile id after its last ``/``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Collection, Iterator
from typing import Any
from urllib.parse import urlsplit

from runmeter.conventions import genai as G
from runmeter.core import internal_error
from runmeter.instrumentation._base import ProviderInstrumentor, Target
from runmeter.instrumentation._core import GenAIHandler, Invocation, given, hash_json, request_tool, text_parts
from runmeter.instrumentation._tools import anthropic_answers, answers_in, bedrock_answers
from runmeter.instrumentation._stream import Finisher, SyncStream
from runmeter.instrumentation._wrap import MethodSpec, call_in_span, prepare_call
from runmeter.processor import TokenUsage

__all__ = ["BedrockInstrumentor"]

_SERVICE = "bedrock-runtime"
_INFERENCE = {"maxTokens": G.GEN_AI_REQUEST_MAX_TOKENS, "temperature": G.GEN_AI_REQUEST_TEMPERATURE, "topP": G.GEN_AI_REQUEST_TOP_P}
_BODY_PARAMS = {"max_tokens": G.GEN_AI_REQUEST_MAX_TOKENS, "max_gen_len": G.GEN_AI_REQUEST_MAX_TOKENS,
                "temperature": G.GEN_AI_REQUEST_TEMPERATURE, "top_p": G.GEN_AI_REQUEST_TOP_P, "top_k": G.GEN_AI_REQUEST_TOP_K}


def model_id(value: Any) -> str | None:
    """The id prices know: an inference-profile or foundation-model ARN reduced to its last part."""
    if not given(value):
        return None
    text = str(value)
    return text.rsplit("/", 1)[-1] if text.startswith("arn:") else text


def _endpoint(instance: Any) -> tuple[str | None, int | None]:
    url = getattr(getattr(instance, "meta", None), "endpoint_url", None) or ""
    parts = urlsplit(url)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else None)


def _numbers(source: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {attr: source[k] for k, attr in names.items()
            if isinstance(source.get(k), (int, float)) and not isinstance(source.get(k), bool)}


def _build_converse(instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
    p = kwargs["params"]
    host, port = _endpoint(instance)
    config = p.get("inferenceConfig") or {}
    params = _numbers(config, _INFERENCE)
    if config.get("stopSequences"):
        params[G.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in config["stopSequences"]]
    messages = p.get("messages") or []
    inv = Invocation(
        operation="chat", provider="aws.bedrock", request_model=model_id(p.get("modelId")), server_address=host, server_port=port,
        params=params, input_hash=hash_json([p.get("system"), messages]), input_source=messages, capture=handler.capture_any,
        answers=answers_in(bedrock_answers, messages),
    )
    if handler.capture_any:
        inv.input_messages = [text_parts(str(m.get("role")), _texts(m.get("content"))) for m in messages if isinstance(m, dict)]
        if p.get("system"):
            inv.system_instructions = text_parts("system", _texts(p["system"]))["parts"]
    return inv


def _build_converse_stream(instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
    inv = _build_converse(instance, kwargs, handler)
    inv.stream = True
    return inv


def _texts(blocks: Any) -> str:
    return "".join(b["text"] for b in blocks or [] if isinstance(b, dict) and isinstance(b.get("text"), str))


def _converse_usage(inv: Invocation, usage: Any) -> None:
    if isinstance(usage, dict):
        inv.usage = TokenUsage.from_anthropic(usage.get("inputTokens"), usage.get("outputTokens"),
                                              usage.get("cacheReadInputTokens"), usage.get("cacheWriteInputTokens"))


def _read_converse(inv: Invocation, result: Any) -> None:
    if result.get("stopReason"):
        inv.finish_reasons = [str(result["stopReason"])]
    _converse_usage(inv, result.get("usage"))
    content = ((result.get("output") or {}).get("message") or {}).get("content") or []
    for block in content:
        use = block.get("toolUse") if isinstance(block, dict) else None
        if isinstance(use, dict):
            request_tool(inv, use.get("name"), use.get("input"), use.get("toolUseId"))
    if inv.capture:
        inv.output_messages = [{**text_parts("assistant", _texts(content)), "finish_reason": inv.finish_reasons[0] if inv.finish_reasons else None}]


class _StreamedTool:
    """A tool call streamed in pieces: its name at contentBlockStart, its input as JSON text in
    the deltas, whole at contentBlockStop."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.call_id: str | None = None
        self.input: list[str] = []


def _converse_event(inv: Invocation, event: Any, tool: _StreamedTool) -> None:
    if not isinstance(event, dict):
        return
    if "contentBlockDelta" in event:
        delta = (event["contentBlockDelta"] or {}).get("delta") or {}
        if isinstance(delta.get("text"), str):
            inv.output_text.append(delta["text"])
        piece = (delta.get("toolUse") or {}).get("input")
        if tool.name is not None and isinstance(piece, str):
            tool.input.append(piece)
    elif "contentBlockStart" in event:
        use = ((event["contentBlockStart"] or {}).get("start") or {}).get("toolUse")
        if isinstance(use, dict):
            tool.name, tool.call_id, tool.input = str(use.get("name")), use.get("toolUseId"), []
    elif "contentBlockStop" in event:
        if tool.name is not None:
            text = "".join(tool.input)
            try:
                args = json.loads(text) if text else {}
            except ValueError:
                args = text
            request_tool(inv, tool.name, args, tool.call_id)
            tool.name = None
    elif "messageStop" in event:
        reason = (event["messageStop"] or {}).get("stopReason")
        if reason:
            inv.finish_reasons = [str(reason)]
            if inv.capture:
                inv.output_messages = [{**text_parts("assistant", "".join(inv.output_text)), "finish_reason": str(reason)}]
    elif "metadata" in event:
        _converse_usage(inv, (event["metadata"] or {}).get("usage"))


def _build_invoke(instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
    p = kwargs["params"]
    host, port = _endpoint(instance)
    raw = p.get("body")
    body: Any = None
    if isinstance(raw, (bytes, bytearray, str)):
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
    params = _numbers(body, _BODY_PARAMS) if isinstance(body, dict) else {}
    chat = isinstance(body, dict) and "messages" in body
    source = body.get("messages") if chat else (body.get("prompt") if isinstance(body, dict) else None)
    inv = Invocation(
        operation="chat" if chat else "text_completion", provider="aws.bedrock", request_model=model_id(p.get("modelId")),
        server_address=host, server_port=port, params=params,
        input_hash=hash_json(body if body is not None else raw), input_source=source, capture=handler.capture_any,
        answers=answers_in(anthropic_answers, source) if chat else [],
    )
    return inv


def _read_invoke(inv: Invocation, result: Any) -> None:
    from botocore.response import StreamingBody

    stream = result.get("body")
    data = stream.read() if stream is not None else b""
    result["body"] = StreamingBody(io.BytesIO(data), len(data))  # the caller reads it as if untouched
    try:
        body = json.loads(data) if data else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        u = body.get("usage")
        if isinstance(u, dict) and "input_tokens" in u:  # Anthropic
            inv.usage = TokenUsage.from_anthropic(u.get("input_tokens"), u.get("output_tokens"),
                                                  u.get("cache_read_input_tokens"), u.get("cache_creation_input_tokens"))
            inv.response_id = body.get("id")
            inv.response_model = body.get("model")
        elif isinstance(u, dict) and "inputTokens" in u:  # Amazon Nova
            inv.usage = TokenUsage.from_anthropic(u.get("inputTokens"), u.get("outputTokens"),
                                                  u.get("cacheReadInputTokenCount"), u.get("cacheWriteInputTokenCount"))
        elif "prompt_token_count" in body:  # Meta Llama
            inv.usage = TokenUsage.from_openai(body.get("prompt_token_count"), body.get("generation_token_count"))
        reason = body.get("stop_reason") or body.get("stopReason")
        if reason:
            inv.finish_reasons = [str(reason)]
        for block in body.get("content") or []:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                request_tool(inv, block.get("name"), block.get("input"), block.get("id"))
    if inv.usage is None:  # any model: Bedrock counts the tokens in the response headers
        headers = (result.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        inp, out = headers.get("x-amzn-bedrock-input-token-count"), headers.get("x-amzn-bedrock-output-token-count")
        if inp is not None and out is not None and inp.isdigit() and out.isdigit():
            inv.usage = TokenUsage.from_openai(int(inp), int(out))


CONVERSE = MethodSpec("bedrock.converse", _build_converse, _read_converse)
CONVERSE_STREAM = MethodSpec("bedrock.converse_stream", _build_converse_stream, _read_converse)
INVOKE = MethodSpec("bedrock.invoke_model", _build_invoke, _read_invoke)
_SPECS = {"Converse": CONVERSE, "ConverseStream": CONVERSE_STREAM, "InvokeModel": INVOKE}


def _events(stream: Any) -> Iterator[Any]:
    """The event stream as an iterator (what the stream proxy reads through), closed at its end."""
    try:
        yield from stream
    finally:
        stream.close()


def _wrapper(handler: GenAIHandler) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        operation = args[0] if args else kwargs.get("operation_name")
        spec = _SPECS.get(operation) if isinstance(operation, str) else None
        if spec is None or getattr(getattr(getattr(instance, "meta", None), "service_model", None), "service_name", None) != _SERVICE:
            return wrapped(*args, **kwargs)  # every other AWS call: untouched
        params = args[1] if len(args) > 1 else kwargs.get("api_params")
        call = prepare_call(handler, spec, instance, {"params": params if isinstance(params, dict) else {}})
        if call is None:
            return wrapped(*args, **kwargs)
        result = call_in_span(handler, call, wrapped, args, kwargs)  # botocore's own span (if traced) nests under ours
        inv = call.inv
        try:
            if spec is CONVERSE_STREAM and isinstance(result, dict) and result.get("stream") is not None:
                tool = _StreamedTool()
                finisher = Finisher(on_chunk=lambda e: _converse_event(inv, e, tool),
                                    on_end=lambda: handler.finish(call, estimated=inv.usage is None),
                                    on_error=lambda exc: handler.fail(call, exc))
                result["stream"] = SyncStream(_events(result["stream"]), finisher)
            else:
                spec.read(inv, result)
                handler.finish(call)
        except Exception as exc:
            internal_error(f"{spec.name}.response", exc)
            if call.span.is_recording():
                call.span.end()
        return result

    return wrapper


class BedrockInstrumentor(ProviderInstrumentor):
    """runmeter's instrumentation of Bedrock Runtime through ``botocore``."""

    label = "bedrock"

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("botocore >= 1.34",)

    def _targets(self, providers: dict[str, str]) -> list[Target]:
        from botocore.client import BaseClient

        return [Target(BaseClient, "_make_api_call", CONVERSE, False, factory=_wrapper)]
