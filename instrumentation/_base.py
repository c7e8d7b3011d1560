"""The instrumentor base: configuration at ``instrument()`` time, wrapping, and its exact undo."""

from __future__ import annotations

import os
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from wrapt import FunctionWrapper, wrap_function_wrapper

from runmeter.instrumentation._core import CaptureMode, GenAIHandler, events_allowed, parse_capture_mode
from runmeter.instrumentation._wrap import MethodSpec, already_wrapped, async_wrapper, sync_wrapper
from runmeter.core import VERSION, ConfigError, load_settings, report_config_error
from runmeter.processor import PriceBook

__all__ = ["ProviderInstrumentor", "Target"]

_CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_EMIT_EVENT_ENV = "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT"
_VERSION = VERSION


@dataclass(frozen=True)
class Target:
    owner: type
    attr: str
    spec: MethodSpec
    is_async: bool
    factory: Callable[[GenAIHandler], Any] | None = None  # a method needing its own wrapper (a stream manager)


def _unwrap(owner: Any, attr: str) -> None:
    """Put back the method wrap_function_wrapper replaced. Read from the class's own __dict__: through
    getattr, wrapt 2 hands out a bound wrapper that opentelemetry-instrumentation's ``unwrap``
    (before 0.66) does not recognise, and the method stayed wrapped after uninstrument()."""
    current = owner.__dict__.get(attr)
    if isinstance(current, FunctionWrapper):
        setattr(owner, attr, current.__wrapped__)


def _qualified(owner: Any) -> str:
    """A class's or a module's (LiteLLM's functions) full name, read from its own dict: a lazy module's
    ``__getattr__`` (LiteLLM's) raises for names it does not know."""
    if isinstance(owner, type):
        return f"{owner.__module__}.{owner.__qualname__}"
    return str(vars(owner).get("__name__", owner))


class ProviderInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Wraps a client's methods on ``instrument()`` and restores them on ``uninstrument()``."""

    label = ""
    # BaseInstrumentor makes one instance per class (its __new__), and __init__ runs on every
    # OpenAIInstrumentor() call: the wrapped list is set in _instrument, never in __init__.
    _wrapped: list[Target] = []

    def _targets(self, providers: dict[str, str]) -> list[Target]:
        raise NotImplementedError

    def _instrument(self, **kwargs: Any) -> None:
        capture = kwargs.get("capture_content")
        if capture is not None and not isinstance(capture, (CaptureMode, str, bool)):
            raise ValueError(f"capture_content must be a CaptureMode, a string or a bool, not {capture!r}")
        if isinstance(capture, bool):
            mode = CaptureMode.SPAN_ONLY if capture else CaptureMode.NO_CONTENT
        elif isinstance(capture, CaptureMode):
            mode = capture
        elif isinstance(capture, str):
            mode = parse_capture_mode(capture)
            if mode is CaptureMode.NO_CONTENT and capture.strip().upper() != "NO_CONTENT":
                raise ValueError(f"unknown capture_content {capture!r}")
        else:
            mode = parse_capture_mode(os.environ.get(_CAPTURE_ENV))
            if mode.on_event and not events_allowed(os.environ.get(_EMIT_EVENT_ENV)):
                mode = CaptureMode.SPAN_ONLY if mode.on_span else CaptureMode.NO_CONTENT
        prices = kwargs.get("prices")
        providers = kwargs.get("providers")
        if prices is None or providers is None:
            try:
                settings = load_settings()  # the facade's loader, registered in runmeter.core
            except ConfigError as exc:  # the program runs on, uninstrumented; said once
                report_config_error(exc)
                return
            prices = prices if prices is not None else PriceBook(settings.pricing)
            providers = providers if providers is not None else dict(settings.providers)
        if not isinstance(prices, PriceBook):
            raise ValueError("prices must be a runmeter PriceBook")
        handler = GenAIHandler(kwargs.get("tracer_provider"), kwargs.get("meter_provider"), prices, mode, _VERSION)
        self._wrapped = []
        for t in self._targets(dict(providers)):
            if already_wrapped(t.owner, t.attr, f"{_qualified(t.owner)}.{t.attr}"):
                continue
            if t.factory is not None:
                wrapper = t.factory(handler)
            else:
                wrapper = (async_wrapper if t.is_async else sync_wrapper)(handler, t.spec)
            wrap_function_wrapper(t.owner, t.attr, wrapper)
            self._wrapped.append(t)

    def _uninstrument(self, **kwargs: Any) -> None:
        for t in self._wrapped:
            _unwrap(t.owner, t.attr)
        self._wrapped = []
