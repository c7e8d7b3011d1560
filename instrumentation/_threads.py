"""The OpenTelemetry context into threads, so a call made in a worker thread belongs to its run.

A ``ThreadPoolExecutor`` or a ``threading.Thread`` does not carry contextvars into the thread it
runs on: an LLM call made there starts a trace of its own, outside the run that asked for it -
its cost missing from the run, the run's budget not checked before it. :class:`ThreadsInstrumentor`
captures the context where work is handed over (``ThreadPoolExecutor.submit``, which ``map`` and
asyncio's ``run_in_executor`` use; ``Thread.start``) and attaches it where the work runs (around
the thread's ``run``, so a ``Thread`` subclass that overrides it too), as
``opentelemetry-instrumentation-threading`` does (that package cannot be a dependency: each of its
releases pins ``opentelemetry-instrumentation`` to one version, older than the one runmeter uses).

Loaded by ``opentelemetry-instrument`` (entry point ``runmeter_threads``; disable it with
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=runmeter_threads``) and by the first ``runmeter.run()``.
A task runs in its submitter's context, whatever the context its worker thread was started in. (The
contrib package wraps ``run`` itself, and misses a subclass that overrides it.)

Processes too: a ``ProcessPoolExecutor``, a ``multiprocessing`` pool or ``Process`` started with
*spawn* or *forkserver* (the default on macOS, and on Linux from Python 3.14) begins with an
empty context, and a *fork* pool's workers keep the context of the run they were forked in, for
every later task - another run's calls counted in the first. The hand-over carries the trace
context (W3C ``traceparent``) and the run (its id, attributes, budget and totals so far: see
``processor/_live.run_handover``) as picklable values with each task or process, and the task runs
in them in the child; an empty context is carried too, so a reused worker never runs a task in a
stale run. The child needs OpenTelemetry set up as the parent has it (``opentelemetry-instrument``
does it in every Python process it starts); its calls are stored under the run and summed with it.

And programs: a ``subprocess`` started inside a span gets the trace context in its environment, as
the OpenTelemetry specification's environment carriers say (``TRACEPARENT``, ``TRACESTATE``,
``BAGGAGE``: the global propagator's fields, upper-cased), and the run in ``RUNMETER_RUN_HANDOVER``
(JSON; ``null`` for a span outside any run). A Python program started under
``opentelemetry-instrument`` takes both up when this instrumentor loads (before the program's own
code), so its calls join the trace and the run; any other program that reads the carriers joins
the trace. A ``TRACEPARENT`` without runmeter's variable (a CI system's, for a whole job) is left
alone.
"""

from __future__ import annotations

import functools
import json
import multiprocessing.pool
import multiprocessing.process
import os
import re
import subprocess
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from wrapt import wrap_function_wrapper

from runmeter.core import internal_error
from runmeter.instrumentation._base import _unwrap
from runmeter.processor import RUN_CONTEXT_KEY, current_run, run_handover, run_taken_over

__all__ = ["ENTRY_POINT", "RUN_HANDOVER_ENV", "ThreadsInstrumentor", "carry_context_into_threads", "in_handed_over_context"]

RUN_HANDOVER_ENV = "RUNMETER_RUN_HANDOVER"
"""Set by runmeter in the environment of a program started inside a run: the run, as JSON."""

ENTRY_POINT = "runmeter_threads"
_CONTEXT_ATTR = "_runmeter_otel_context"
# What runs in the new thread around run(): wrapped there, a subclass that overrides run() is
# reached too (CPython's; elsewhere, run() itself).
_THREAD_BODY = "_bootstrap_inner" if "_bootstrap_inner" in threading.Thread.__dict__ else "run"
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


# --- processes ---------------------------------------------------------------------------------

_TRACE_CONTEXT = TraceContextTextMapPropagator()
# The methods a multiprocessing pool hands work over in, the function always first: map, starmap
# and their async forms go through _map_async; apply through apply_async.
_POOL_METHODS = ("apply_async", "_map_async", "imap", "imap_unordered")


def _handover() -> tuple[dict[str, str], tuple[Any, ...] | None]:
    """The current context as picklable values: its W3C trace context and its run."""
    carrier: dict[str, str] = {}
    _TRACE_CONTEXT.inject(carrier)
    live = current_run()
    return carrier, run_handover(live) if live is not None else None


def _taken_over(state: tuple[dict[str, str], tuple[Any, ...] | None]) -> otel_context.Context:
    carrier, run = state
    ctx = _TRACE_CONTEXT.extract(carrier, context=otel_context.Context())
    if run is not None:
        ctx = otel_context.set_value(RUN_CONTEXT_KEY, run_taken_over(run), ctx)
    return ctx


def in_handed_over_context(state: tuple[dict[str, str], tuple[Any, ...] | None], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in the context it was handed over in, in the process that runs it.
    (Module-level, so a task wrapped in it pickles by reference.)"""
    try:
        ctx = _taken_over(state)
    except Exception as exc:  # the task runs all the same, in no run
        internal_error("processes.context", exc)
        ctx = otel_context.Context()
    token = otel_context.attach(ctx)
    try:
        return fn(*args, **kwargs)
    finally:
        otel_context.detach(token)


def _with_handover(fn: Any) -> Any:
    try:
        return functools.partial(in_handed_over_context, _handover(), fn)
    except Exception as exc:  # handed over as it was: its calls are then a run of their own
        internal_error("processes.handover", exc)
        return fn


def _first_argument_handed_over(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A pool method whose first argument is the function to run in a worker process (a
    ``ThreadPool``'s in a thread of this process: the context itself, the run's ledger shared)."""
    if isinstance(instance, multiprocessing.pool.ThreadPool):
        def carry(fn: Any) -> Any:
            return _in_context(otel_context.get_current(), fn)
    else:
        carry = _with_handover
    if args:
        return wrapped(carry(args[0]), *args[1:], **kwargs)
    for name in ("func", "fn"):
        if name in kwargs:
            return wrapped(**{**kwargs, name: carry(kwargs[name])})
    return wrapped(*args, **kwargs)


def _process_start(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``Process.start``: its target runs in the context it was started in (a subclass overriding
    ``run`` is not reached)."""
    target = getattr(instance, "_target", None)
    wrapped_already = isinstance(target, functools.partial) and target.func is in_handed_over_context
    if target is not None and not wrapped_already:
        try:
            instance._target = _with_handover(target)
        except Exception as exc:
            internal_error("processes.start", exc)
    return wrapped(*args, **kwargs)


# --- programs (subprocess) ------------------------------------------------------------------------

_ENV_INDEX = 10  # Popen(args, bufsize, executable, stdin, stdout, stderr, preexec_fn, close_fds, shell, cwd, env, ...)
_NOT_ENV_NAME = re.compile(r"[^A-Z0-9_]")


def _env_name(key: str) -> str:
    """A propagation field's environment variable: upper-cased, anything else an underscore."""
    return _NOT_ENV_NAME.sub("_", key.upper())


def _with_context_env(env: Any) -> Any:
    """``env`` (None: this process's) with the current trace context and run, when there is a span."""
    if not trace.get_current_span().get_span_context().is_valid:
        return env
    fields: dict[str, str] = {}
    propagate.inject(fields)
    if not fields:
        return env
    out = dict(os.environ if env is None else env)
    for key, value in fields.items():
        out[_env_name(key)] = value
    live = current_run()
    out[RUN_HANDOVER_ENV] = json.dumps(run_handover(live) if live is not None else None)  # null: a span, no run
    return out


def _popen_init(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        if len(args) > _ENV_INDEX:
            args = (*args[:_ENV_INDEX], _with_context_env(args[_ENV_INDEX]), *args[_ENV_INDEX + 1:])
        else:
            kwargs = {**kwargs, "env": _with_context_env(kwargs.get("env"))}
    except Exception as exc:  # the program starts as it would have
        internal_error("processes.env", exc)
    return wrapped(*args, **kwargs)


class _EnvGetter:
    """The propagators' getter over this process's environment (field names as ``_env_name`` makes them)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = os.environ.get(_env_name(key))
        return [value] if value is not None else None

    def keys(self, carrier: Any) -> list[str]:
        return list(os.environ)


_took_over = False


def _take_over_from_env() -> None:
    """Once, where no span is current (a program's start): join the trace and the run this program
    was started in, if runmeter started it (``RUNMETER_RUN_HANDOVER`` set: a ``TRACEPARENT`` that a
    CI system sets for a whole job would otherwise make one run of every call of the job). The
    context stays attached for the program's main thread."""
    global _took_over
    handed = os.environ.get(RUN_HANDOVER_ENV)
    if _took_over or handed is None or trace.get_current_span().get_span_context().is_valid:
        return
    _took_over = True
    ctx = propagate.extract(os.environ, context=otel_context.Context(), getter=_EnvGetter())  # type: ignore[arg-type]
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return
    try:
        run = json.loads(handed)
        if run is not None:
            ctx = otel_context.set_value(RUN_CONTEXT_KEY, run_taken_over(tuple(run)), ctx)
    except Exception as exc:  # the trace is joined all the same
        internal_error("processes.run_from_env", exc)
    otel_context.attach(ctx)


class ThreadsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Carries the OpenTelemetry context (and so runmeter's run) into worker threads, process pools and programs."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        wrap_function_wrapper(ThreadPoolExecutor, "submit", _submit)
        wrap_function_wrapper(threading.Thread, "start", _start)
        wrap_function_wrapper(threading.Thread, _THREAD_BODY, _run)
        wrap_function_wrapper(ProcessPoolExecutor, "submit", _first_argument_handed_over)
        for name in _POOL_METHODS:
            wrap_function_wrapper(multiprocessing.pool.Pool, name, _first_argument_handed_over)
        wrap_function_wrapper(multiprocessing.process.BaseProcess, "start", _process_start)
        wrap_function_wrapper(subprocess.Popen, "__init__", _popen_init)
        try:
            _take_over_from_env()
        except Exception as exc:  # the program runs on, in a trace of its own
            internal_error("processes.take_over", exc)

    def _uninstrument(self, **kwargs: Any) -> None:
        _unwrap(ThreadPoolExecutor, "submit")
        _unwrap(threading.Thread, "start")
        _unwrap(threading.Thread, _THREAD_BODY)
        _unwrap(ProcessPoolExecutor, "submit")
        for name in _POOL_METHODS:
            _unwrap(multiprocessing.pool.Pool, name)
        _unwrap(multiprocessing.process.BaseProcess, "start")
        _unwrap(subprocess.Popen, "__init__")


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
