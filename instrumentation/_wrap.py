"""Sync and async wrapper factories shared by the provider modules.

A provider gives a :class:`MethodSpec`: how to build an :class:`Invocation`
from the call's arguments, how to read a response, and how to read a stream
chunk. The factories do the rest once — budget check, span, the user's call
in its own ``try``, streams, raw responses — so no sync body is copied into an
async twin.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import attach, detach
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, suppress_instrumentation
import wrapt
from wrapt import FunctionWrapper

from runmeter.instrumentation._core import GenAIHandler, Invocation
from runmeter.instrumentation._stream import AsyncStream, Finisher, SyncStream
from runmeter.processor import BudgetExceeded
from runmeter.core import internal_error, warn_once

__all__ = ["MethodSpec", "already_wrapped", "async_wrapper", "call_in_span", "prepare_call", "sync_wrapper"]



@dataclass(frozen=True)
class MethodSpec:
    name: str
    build: Callable[[Any, dict[str, Any], GenAIHandler], Invocation]
    read: Callable[[Invocation, Any], None]
    chunk: Callable[[Invocation, Any], None] | None = None
    # A client that calls another instrumented client inside (LiteLLM -> openai): the inner one's
    # instrumentation is suppressed for the call, which is counted once, here.
    suppress_inner: bool = False


def already_wrapped(owner: Any, attr: str, label: str) -> bool:
    """True (and said once) when another instrumentation already wraps ``owner.attr``."""
    if isinstance(owner.__dict__.get(attr), FunctionWrapper):
        warn_once(
            f"already wrapped: {label}",
            "runmeter: %s is already instrumented by another library; runmeter will not wrap it again. "
            "Its spans are still priced and assembled into runs by the RunProcessor.", label,
        )
        return True
    return False


def prepare_call(handler: GenAIHandler, spec: MethodSpec, instance: Any, kwargs: dict[str, Any], stream: bool | None = None) -> Any:
    """The started call, or None when runmeter cannot instrument this one (the call goes on bare)."""
    if not is_instrumentation_enabled():
        return None
    try:
        inv = spec.build(instance, kwargs, handler)
        if stream is not None:
            inv.stream = stream
    except Exception as exc:
        internal_error(f"{spec.name}.build", exc)
        return None
    if inv.answers:
        try:
            handler.count_answered_tools(inv)
        except Exception as exc:
            internal_error(f"{spec.name}.tools", exc)
    live = None
    try:
        live = handler.check_budget(inv)
    except BudgetExceeded:
        raise  # the user asked for this: stop before the request is sent
    except Exception as exc:
        internal_error(f"{spec.name}.budget", exc)
    try:
        return handler.start(inv, live)
    except Exception as exc:
        internal_error(f"{spec.name}.start", exc)
        return None


def _is_raw(result: Any) -> bool:
    """A ``with_raw_response`` result. Looked up in the instance dict first: ``hasattr`` on a
    pydantic response model goes through its ``__getattr__`` and an exception, on every call."""
    attrs = getattr(result, "__dict__", None)
    has = "http_response" in attrs if isinstance(attrs, dict) else hasattr(result, "http_response")
    return has and callable(getattr(result, "parse", None))


def _parsed(result: Any) -> Any:
    """The SDK object behind a ``with_raw_response`` result (``parse()`` is cached by the SDK)."""
    return result.parse() if _is_raw(result) else result


def _finisher(handler: GenAIHandler, spec: MethodSpec, call: Any) -> Finisher:
    inv = call.inv
    return Finisher(
        on_chunk=lambda item: spec.chunk(inv, item) if spec.chunk else None,
        on_end=lambda: handler.finish(call, estimated=inv.usage is None),
        on_error=lambda exc: handler.fail(call, exc),
    )


class _RawStream(wrapt.ObjectProxy):  # type: ignore[misc]
    """A ``with_raw_response`` result of a streamed call: the call ends with the stream that ``parse()``
    gives the user (its usage is read as it passes), or, if the body is never parsed, when the result
    is dropped (estimated: the usage went unread)."""

    def __init__(self, wrapped: Any, finisher: Finisher, stream_type: type) -> None:
        super().__init__(wrapped)
        self._self_fin = finisher
        self._self_stream_type = stream_type
        self._self_parsed: Any = None
        self._self_unparsed = weakref.finalize(self, finisher.end)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        if self._self_parsed is not None:
            return self._self_parsed
        self._self_unparsed.detach()  # from here the stream ends the call (it may outlive this result)
        stream = self.__wrapped__.parse(*args, **kwargs)
        if inspect.isawaitable(stream):  # anthropic's async raw response
            return self._self_aparse(stream)
        self._self_parsed = self._self_stream_type(stream, self._self_fin)
        return self._self_parsed

    async def _self_aparse(self, pending: Any) -> Any:
        self._self_parsed = self._self_stream_type(await pending, self._self_fin)
        return self._self_parsed


def _after(handler: GenAIHandler, spec: MethodSpec, call: Any, result: Any, stream_type: type, parsed: Any = None) -> Any:
    """``parsed``: the response object behind an async raw response, already awaited."""
    try:
        if call.inv.stream:
            if _is_raw(result):
                return _RawStream(result, _finisher(handler, spec, call), stream_type)
            return stream_type(result, _finisher(handler, spec, call))
        spec.read(call.inv, parsed if parsed is not None else _parsed(result))
        handler.finish(call)
    except Exception as exc:
        internal_error(f"{spec.name}.response", exc)
        if call.span.is_recording():
            call.span.end()
    return result


def call_in_span(handler: GenAIHandler, call: Any, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 suppress_inner: bool = False) -> Any:
    """The user's call with the call's span current (so SDK and HTTP spans nest under it); an
    exception ends the span as failed and goes on to the caller."""
    token = attach(trace.set_span_in_context(call.span))
    try:
        if suppress_inner:
            with suppress_instrumentation():
                result = wrapped(*args, **kwargs)
        else:
            result = wrapped(*args, **kwargs)
    except BaseException as exc:
        detach(token)
        handler.fail(call, exc)
        raise
    detach(token)
    return result


def sync_wrapper(handler: GenAIHandler, spec: MethodSpec) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = prepare_call(handler, spec, instance, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        return _after(handler, spec, call, call_in_span(handler, call, wrapped, args, kwargs, spec.suppress_inner), SyncStream)

    return wrapper


def async_wrapper(handler: GenAIHandler, spec: MethodSpec) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = prepare_call(handler, spec, instance, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        token = attach(trace.set_span_in_context(call.span))
        try:
            if spec.suppress_inner:
                with suppress_instrumentation():
                    result = await wrapped(*args, **kwargs)
            else:
                result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            detach(token)
            handler.fail(call, exc)
            raise
        detach(token)
        parsed = None
        if not call.inv.stream and _is_raw(result):
            try:
                parsed = result.parse()  # cached by the SDK: the user's parse() gets the same object
                if inspect.isawaitable(parsed):  # anthropic's async raw response parses in a coroutine, openai's does not
                    parsed = await parsed
            except Exception as exc:
                internal_error(f"{spec.name}.parse", exc)
                handler.finish(call, estimated=True)
                return result
        return _after(handler, spec, call, result, AsyncStream, parsed)

    return wrapper
