"""Anthropic client instrumentation: ``messages.create`` (sync, async, ``stream=True``), ``messages.parse``,
``messages.stream()``, and the same on ``beta.messages``.

Usage and options as in :mod:`runmeter.instrumentation.openai`. Token mapping:
Anthropic reports ``cache_read_input_tokens`` and ``cache_creation_input_tokens``
*apart* from ``input_tokens``; the span's ``gen_ai.usage.input_tokens`` is their
sum, as the GenAI conventions' Anthropic notes say; the writes kept for an hour
(``cache_creation.ephemeral_1h_input_tokens``, priced at 2x input, not 1.25x) go in
``runmeter.cost.cache_write_1h_tokens``, and the web search tool's searches
(``server_tool_use.web_search_requests``, priced per search) in
``runmeter.cost.web_searches``. On a stream, ``message_start`` carries a
placeholder ``output_tokens: 1`` and ``message_delta`` the cumulative usage:
later values overwrite, never add.

The ``anthropic`` SDK emits a span of its own per call (``anthropic.messages.create``)
when OpenTelemetry is installed. It becomes a child of runmeter's span, and the
RunProcessor counts the call once (the SDK span is flagged ``runmeter.cost.duplicate``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry.context import attach, detach

from runmeter.conventions import genai as G
from runmeter.instrumentation._base import ProviderInstrumentor, Target
from runmeter.instrumentation._core import GenAIHandler, Invocation, given, hash_json, request_tool, text_parts
from runmeter.instrumentation._tools import answers_in, anthropic_answers
from runmeter.instrumentation._wrap import MethodSpec, prepare_call
from runmeter.processor import TokenUsage
from runmeter.core import internal_error

__all__ = ["AnthropicInstrumentor"]

_PARAMS = {
    "temperature": G.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": G.GEN_AI_REQUEST_TOP_P,
    "top_k": G.GEN_AI_REQUEST_TOP_K,
    "max_tokens": G.GEN_AI_REQUEST_MAX_TOKENS,
}


def _build(instance: Any, kwargs: dict[str, Any], handler: GenAIHandler) -> Invocation:
    url = getattr(getattr(instance, "_client", None), "base_url", None)
    model = kwargs.get("model")
    params = {attr: kwargs[k] for k, attr in _PARAMS.items() if given(kwargs.get(k)) and isinstance(kwargs[k], (int, float))}
    stop = kwargs.get("stop_sequences")
    if stop is not None and given(stop):
        params[G.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
    messages = kwargs.get("messages") or []
    messages = list(messages) if not isinstance(messages, list) else messages
    kwargs["messages"] = messages
    system = kwargs.get("system")
    inv = Invocation(
        operation="chat", provider="anthropic", request_model=str(model) if given(model) else None,
        server_address=getattr(url, "host", None), server_port=getattr(url, "port", None) or 443,
        params=params, stream=bool(kwargs.get("stream")),
        input_hash=hash_json([system if given(system) else None, messages]),
        input_source=messages,
        capture=handler.capture_any,
        answers=answers_in(anthropic_answers, messages),
    )
    if handler.capture_any:
        inv.input_messages = [text_parts(str(m.get("role")), m.get("content")) for m in messages if isinstance(m, dict)]
        if given(system):
            inv.system_instructions = text_parts("system", system)["parts"]
    return inv


def _set_usage(inv: Invocation, u: Any) -> None:
    """Overwrite from a usage block (message_delta's is cumulative; message_start's output is a placeholder)."""
    prev = inv.usage
    inp = getattr(u, "input_tokens", None)
    read = getattr(u, "cache_read_input_tokens", None)
    write = getattr(u, "cache_creation_input_tokens", None)
    write_1h = getattr(getattr(u, "cache_creation", None), "ephemeral_1h_input_tokens", None)
    searches = getattr(getattr(u, "server_tool_use", None), "web_search_requests", None)
    out = getattr(u, "output_tokens", None)
    if prev is not None:  # a delta may leave out what message_start said
        base_inp = prev.input_tokens - prev.cache_read_tokens - prev.cache_write_tokens
        inp = base_inp if inp is None else inp
        read = prev.cache_read_tokens if read is None else read
        write = prev.cache_write_tokens if write is None else write
        write_1h = prev.cache_write_1h_tokens if write_1h is None else write_1h
        searches = prev.web_searches if searches is None else searches
        out = prev.output_tokens if out is None else out
    inv.usage = TokenUsage.from_anthropic(inp, out, read, write, write_1h, searches)
    tier = getattr(u, "service_tier", None)
    if isinstance(tier, str) and tier:
        inv.service_tier = tier


def _read(inv: Invocation, msg: Any) -> None:
    inv.response_model = getattr(msg, "model", None)
    inv.response_id = getattr(msg, "id", None)
    if getattr(msg, "stop_reason", None):
        inv.finish_reasons = [msg.stop_reason]
    u = getattr(msg, "usage", None)
    if u is not None:
        inv.usage = None
        _set_usage(inv, u)
    texts = []
    for block in getattr(msg, "content", None) or []:
        kind = getattr(block, "type", None)
        if kind == "text":
            texts.append(block.text)
        elif kind == "tool_use":
            request_tool(inv, block.name, block.input, getattr(block, "id", None))
    if inv.capture:
        inv.output_messages = [{**text_parts("assistant", "".join(texts)), "finish_reason": inv.finish_reasons[0] if inv.finish_reasons else None}]


def _event(inv: Invocation, event: Any) -> None:
    kind = getattr(event, "type", None)
    if kind == "message_start":
        m = event.message
        inv.response_model = getattr(m, "model", None)
        inv.response_id = getattr(m, "id", None)
        inv.usage = None
        _set_usage(inv, m.usage)
    elif kind == "message_delta":
        _set_usage(inv, event.usage)
        reason = getattr(event.delta, "stop_reason", None)
        if reason:
            inv.finish_reasons = [reason]
            if inv.capture:
                inv.output_messages = [{**text_parts("assistant", "".join(inv.output_text)), "finish_reason": reason}]
    elif kind == "content_block_delta":
        text = getattr(event.delta, "text", None)
        if text:
            inv.output_text.append(text)


CREATE = MethodSpec("anthropic.messages", _build, _read, _event)


class _StreamManager(wrapt.ObjectProxy):  # type: ignore[misc]
    """``messages.stream(...)``'s manager: the call starts at ``__enter__`` and ends at ``__exit__``."""

    def __init__(self, wrapped: Any, handler: GenAIHandler, call: Any) -> None:
        super().__init__(wrapped)
        self._self_handler = handler
        self._self_call = call
        self._self_stream: Any = None

    def __enter__(self) -> Any:
        token = attach(trace.set_span_in_context(self._self_call.span))  # the SDK's own span nests under ours
        try:
            self._self_stream = self.__wrapped__.__enter__()
        except BaseException as exc:
            self._self_handler.fail(self._self_call, exc)
            raise
        finally:
            detach(token)
        return self._self_stream

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_end(exc)

    async def __aenter__(self) -> Any:
        token = attach(trace.set_span_in_context(self._self_call.span))
        try:
            self._self_stream = await self.__wrapped__.__aenter__()
        except BaseException as exc:
            self._self_handler.fail(self._self_call, exc)
            raise
        finally:
            detach(token)
        return self._self_stream

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_end(exc)

    def _self_end(self, exc: BaseException | None) -> None:
        call, handler = self._self_call, self._self_handler
        if exc is not None:
            handler.fail(call, exc)
            return
        try:
            snapshot = getattr(self._self_stream, "current_message_snapshot", None)
            if snapshot is not None:
                _read(call.inv, snapshot)
        except Exception as own:  # an unread stream has no snapshot yet
            internal_error("anthropic.stream.snapshot", own)
        handler.finish(call, estimated=call.inv.usage is None)


def _stream_wrapper(handler: GenAIHandler) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = prepare_call(handler, CREATE, instance, kwargs, stream=True)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            manager = wrapped(*args, **kwargs)
        except BaseException as exc:
            handler.fail(call, exc)
            raise
        return _StreamManager(manager, handler, call)

    return wrapper


class AnthropicInstrumentor(ProviderInstrumentor):
    """runmeter's instrumentation of the ``anthropic`` client."""

    label = "anthropic"

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("anthropic >= 0.40",)

    def _targets(self, providers: dict[str, str]) -> list[Target]:
        from anthropic.resources import messages

        stream = MethodSpec("anthropic.messages.stream", _build, _read, _event)
        owners: list[tuple[Any, bool]] = [(messages.Messages, False), (messages.AsyncMessages, True)]
        try:  # the beta surface: the same calls with beta features (tool runners call its create)
            from anthropic.resources.beta import messages as beta

            owners += [(beta.Messages, False), (beta.AsyncMessages, True)]
        except ImportError:
            pass
        # Every public method that sends a model request of its own: create, parse (structured
        # outputs, posted directly) and the stream() helper. count_tokens costs nothing.
        targets = []
        for owner, is_async in owners:
            targets.append(Target(owner, "create", CREATE, is_async))
            if "parse" in owner.__dict__:
                targets.append(Target(owner, "parse", CREATE, is_async))
            if "stream" in owner.__dict__:
                targets.append(Target(owner, "stream", stream, False, factory=_stream_wrapper))
        return targets
