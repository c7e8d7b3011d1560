"""The OpenTelemetry context into threads, so a call made in a worker thread belongs to its run.

A ``ThreadPoolExecutor`` or a ``threading.Thread`` does not carry contextvars into the thread it
runs on: an LLM call made there starts a trace of its own, outside the run that asked for it -
its cost missing from the run, the run's budget not checked before it. :class:`ThreadsInstrumentor`
captures the context where work is handed over (``ThreadPoolExecutor.submit``, which ``map`` and
asyncio's ``run_in_executor`` use; ``Thread.start``) and attaches it where the work runs, as
``opentelemetry-instrumentation-threading`` does (that package cannot be a dependency: each of its
releases pins ``opentelemetry-instrumentation`` to one version, older than the one runmeter uses).

Loaded by ``opentelemetry-instrument`` (entry point ``runmeter_threads``; disable it with
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=runmeter_threads``) and by the first ``runmeter.run()``.
A task runs in its submitter's context, whatever the context its worker thread was started in. A
``Thread`` subclass that overrides ``run`` is not reached (nor is it by the contrib package).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from wrapt import wrap_function_wrapper

from runmeter.core import internal_error
from runmeter.instrumentation._base import _unwrap

__all__ = ["ENTRY_POINT", "ThreadsInstrumentor", "carry_context_into_threads"]

ENTRY_POINT = "runmeter_threads"
_CONTEXT_ATTR = "_runmeter_otel_context"
_OWN_THREADS = "runmeter-"


def _in_context(ctx: otel_context.Context, fn: Callable[..., Any]) -> Callable[..., Any]:
    def run_in_context(*args: Any, **kwargs: Any) -> Any:
        token = otel_context.attach(ctx)
        try:
            return fn(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run_in_context


def _submit(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not args:  # a call submit itself refuses
        return wrapped(*args, **kwargs)
    # Always, even an empty context: the pool's worker threads were started (Thread.start) in the
    # context of the first task's submitter, and a later task must not run in that one.
    return wrapped(_in_context(otel_context.get_current(), args[0]), *args[1:], **kwargs)


def _start(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    ctx = otel_context.get_current()
    # runmeter's own background threads (runmeter-writer, runmeter-runs...) belong to no run, even
    # when the first run starts them: what they send is never part of one.
    if ctx and not str(getattr(instance, "name", "")).startswith(_OWN_THREADS):
        try:
            setattr(instance, _CONTEXT_ATTR, ctx)
        except Exception as exc:  # a Thread subclass that refuses attributes: it runs as it would have
            internal_error("threads.start", exc)
    return wrapped(*args, **kwargs)


def _run(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    ctx = getattr(instance, _CONTEXT_ATTR, None)
    if ctx is None:
        return wrapped(*args, **kwargs)
    return _in_context(ctx, wrapped)(*args, **kwargs)


class ThreadsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Carries the OpenTelemetry context (and so runmeter's run) into worker threads."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        wrap_function_wrapper(ThreadPoolExecutor, "submit", _submit)
        wrap_function_wrapper(threading.Thread, "start", _start)
        wrap_function_wrapper(threading.Thread, "run", _run)

    def _uninstrument(self, **kwargs: Any) -> None:
        _unwrap(ThreadPoolExecutor, "submit")
        _unwrap(threading.Thread, "start")
        _unwrap(threading.Thread, "run")


_checked = False


def carry_context_into_threads() -> None:
    """Instrument threads once, unless switched off (``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``)."""
    global _checked
    if _checked:
        return
    _checked = True
    disabled = {name.strip() for name in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    try:
        instrumentor = ThreadsInstrumentor()
        if ENTRY_POINT not in disabled and not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    except Exception as exc:  # a run still starts; its worker threads' calls are then runs of their own
        internal_error("threads.instrument", exc)
