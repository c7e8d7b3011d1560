"""The user API for runs and tools: ``runmeter.run()`` and ``runmeter.tool()``.

::

    with runmeter.run("triage-inbox", owner="ana", project="sales",
                      budget=Budget(max_cost_usd=0.50)) as run:
        ...                      # LLM calls and tools inside count toward the run
        run.accept()             # or run.reject("wrong customer"), run.abandon()

    @runmeter.run("nightly-report")          # a decorator too, sync or async
    async def report(): ...

    with runmeter.tool("read_file", resource=path, args={"path": path}):
        text = open(path).read()

A run is an ``invoke_agent`` span with ``gen_ai.agent.name`` and the
``runmeter.run.*`` attributes; its :class:`~runmeter.processor.RunLedger` rides
in the OpenTelemetry context, so LLM calls and tools inside it — across
``await`` and ``asyncio`` tasks — check its budget before they start. An
exception leaving the block marks the run ``failed``. A run inside a run is a
sub-run.

Threads: work handed to a ``ThreadPoolExecutor`` (``submit``, ``map``, asyncio's
``run_in_executor``) or a ``threading.Thread`` started inside a run carries the
OpenTelemetry context there, so calls made in the worker belong to the run and
check its budget (:mod:`runmeter.instrumentation._threads`, switched on by the
first ``run()`` and by ``opentelemetry-instrument``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from contextvars import Token

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry import trace
from opentelemetry.trace import Span, TracerProvider

from runmeter.conventions import attributes as A
from runmeter.conventions import genai as G
from runmeter.conventions import check_outcome
from runmeter.conventions.attributes import RunmeterRunOutcomeValues as Outcome
from runmeter.instrumentation._core import hash_json, record_error
from runmeter.processor import Budget, BudgetExceeded, LiveRun, RunLedger, current_run, run_id_for
from runmeter.processor import INSTRUMENTATION_SCOPE, RUN_CONTEXT_KEY
from runmeter.core import VERSION, internal_error, warn_once
from runmeter.instrumentation._frameworks import parent_context
from runmeter.instrumentation._threads import carry_context_into_threads

__all__ = ["Run", "Tool", "run", "tool"]


F = TypeVar("F", bound=Callable[..., Any])
_VERSION = VERSION


def _record_error(span: Span, exc: BaseException) -> None:
    record_error(span, exc)
    span.set_attribute(G.ERROR_TYPE, type(exc).__qualname__)


def _tracer(provider: TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer(INSTRUMENTATION_SCOPE, _VERSION, tracer_provider=provider)


class _Scope:
    """Shared by Run and Tool: one object is a context manager (sync and async) and a decorator."""

    def _open(self) -> Any:
        raise NotImplementedError

    def _close(self, exc: BaseException | None) -> None:
        raise NotImplementedError

    def _fresh(self) -> _Scope:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self._open()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._close(exc)

    async def __aenter__(self) -> Any:
        return self._open()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._close(exc)

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapped(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh()._bind(args, kwargs):
                    return await func(*args, **kwargs)

            return async_wrapped  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self._fresh()._bind(args, kwargs):
                return func(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Scope:
        return self


class Run(_Scope):
    """One run in progress. Made by :func:`run`."""

    def __init__(
        self,
        name: str,
        *,
        owner: str | None = None,
        project: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        budget: Budget | None = None,
        loop_threshold: int = 3,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a run needs a non-empty name")
        for label, value in (("owner", owner), ("project", project), ("task_id", task_id), ("run_id", run_id)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{label} must be a string, not {value!r}")
        if budget is not None and not isinstance(budget, Budget):
            raise ValueError("budget must be a runmeter.Budget")
        self.name = name
        self.owner = owner
        self.project = project
        self.task_id = task_id
        self._given_id = run_id
        self.budget = budget
        self._loop_threshold = loop_threshold
        self._provider = tracer_provider
        self.run_id: str | None = None
        self.outcome: str | None = None
        self.span: Span | None = None
        self.ledger: RunLedger | None = None
        self._token: Token[Context] | None = None

    def _fresh(self) -> Run:
        return Run(self.name, owner=self.owner, project=self.project, task_id=self.task_id, run_id=self._given_id,
                   budget=self.budget, loop_threshold=self._loop_threshold, tracer_provider=self._provider)

    def _open(self) -> Run:
        parent = current_run()
        attrs: dict[str, Any] = {
            G.GEN_AI_OPERATION_NAME: "invoke_agent",
            G.GEN_AI_AGENT_NAME: self.name,
            A.RUNMETER_RUN_ROOT: True,
            A.RUNMETER_RUN_NAME: self.name,
        }
        stamp: dict[str, Any] = {A.RUNMETER_RUN_NAME: self.name}
        for key, value in ((A.RUNMETER_RUN_OWNER, self.owner), (A.RUNMETER_RUN_PROJECT, self.project), (A.RUNMETER_TASK_ID, self.task_id)):
            if value:
                attrs[key] = stamp[key] = value
            elif parent is not None and parent.stamp.get(key):
                # A sub-run spends for its parent's owner, project and task (its spans say so, and
                # the spend limits count them), unless it names its own.
                stamp[key] = parent.stamp[key]
        if parent is not None:
            attrs[A.RUNMETER_RUN_PARENT_ID] = parent.run_id
        if self.budget is not None:
            attrs.update(self.budget.to_attributes())
        span = _tracer(self._provider).start_span(f"invoke_agent {self.name}", context=parent_context(), attributes=attrs)
        ctx = span.get_span_context()
        self.run_id = self._given_id or run_id_for(ctx.trace_id, ctx.span_id)
        span.set_attribute(A.RUNMETER_RUN_ID, self.run_id)
        stamp[A.RUNMETER_RUN_ID] = self.run_id
        self.ledger = RunLedger(self.run_id, self.budget, loop_threshold=self._loop_threshold)
        live = LiveRun(self.run_id, self.ledger, stamp, span)
        self.span = span
        self._token = otel_context.attach(otel_context.set_value(RUN_CONTEXT_KEY, live, trace.set_span_in_context(span)))
        return self

    def _close(self, exc: BaseException | None) -> None:
        span = self.span
        if span is None:
            return
        try:
            if exc is not None:
                if self.outcome is None:
                    reason = f"budget exceeded: {exc.limit}" if isinstance(exc, BudgetExceeded) else type(exc).__qualname__
                    self._set_outcome(Outcome.FAILED.value, reason)
                _record_error(span, exc)
        except Exception as own:
            internal_error("run.close", own)
        finally:
            if self._token is not None:
                otel_context.detach(self._token)
                self._token = None
            span.end()

    # --- outcomes -------------------------------------------------------------------------

    def accept(self) -> None:
        self._set_outcome(Outcome.ACCEPTED.value)

    def reject(self, reason: str = "") -> None:
        self._set_outcome(Outcome.REJECTED.value, reason)

    def abandon(self, reason: str = "") -> None:
        self._set_outcome(Outcome.ABANDONED.value, reason)

    def fail(self, reason: str = "") -> None:
        self._set_outcome(Outcome.FAILED.value, reason)

    def _set_outcome(self, outcome: str, reason: str = "") -> None:
        check_outcome(outcome)
        span = self.span
        if span is None or (not span.is_recording() and span.get_span_context().trace_flags.sampled):
            raise RuntimeError("the run has not started or has already ended; use runmeter.outcome(run_id, ...) for a late outcome")
        self.outcome = outcome
        if not span.is_recording():  # tracing is off, sampled out or not configured: the agent goes on
            _warn_not_recorded(self.name)
            return
        attrs = {A.RUNMETER_RUN_OUTCOME: outcome}
        if reason:
            attrs[A.RUNMETER_RUN_OUTCOME_REASON] = str(reason)
        span.set_attributes(attrs)
        span.add_event(A.RUNMETER_RUN_OUTCOME_EVENT, attrs)


def _warn_not_recorded(name: str) -> None:
    warn_once(
        "run not recorded",
        "runmeter: run %r is not being recorded (tracing is off, this trace was sampled out, or the "
        "OpenTelemetry SDK is not set up: run the program under `opentelemetry-instrument`); "
        "its outcome is kept on the Run object only. Said once.", name,
    )


class Tool(_Scope):
    """One tool call. Made by :func:`tool`."""

    def __init__(
        self,
        name: str,
        *,
        resource: str | None = None,
        args: Any = None,
        resource_arg: str | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a tool needs a non-empty name")
        self.name = name
        self.resource = resource
        self.args = args
        self._resource_arg = resource_arg
        self._provider = tracer_provider
        self.span: Span | None = None
        self._token: Token[Context] | None = None
        self._live: LiveRun | None = None
        self._args_hash: str | None = None

    def _fresh(self) -> Tool:
        return Tool(self.name, resource=self.resource, args=self.args, resource_arg=self._resource_arg, tracer_provider=self._provider)

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tool:
        """As a decorator: the function's arguments are the tool's arguments."""
        self.args = {"args": list(args), "kwargs": kwargs}
        if self._resource_arg is not None and self._resource_arg in kwargs:
            self.resource = str(kwargs[self._resource_arg])
        elif self._resource_arg is not None and args:
            self.resource = str(args[0])
        return self

    def _open(self) -> Tool:
        self._args_hash = hash_json(self.args) if self.args is not None else None
        live = current_run()
        self._live = live
        if live is not None and live.ledger.budget is not None:
            try:
                for b in live.ledger.check_tool_call(self.name, self._args_hash):
                    live.note_breach(b)
            except BudgetExceeded as exc:
                live.note_breach(exc.breach)
                raise
        attrs: dict[str, Any] = {G.GEN_AI_OPERATION_NAME: "execute_tool", G.GEN_AI_TOOL_NAME: self.name}
        if self._args_hash is not None:
            attrs[A.RUNMETER_TOOL_ARGS_HASH] = self._args_hash
        if self.resource is not None:
            attrs[A.RUNMETER_TOOL_RESOURCE] = str(self.resource)
        self.span = _tracer(self._provider).start_span(f"execute_tool {self.name}", context=parent_context(), attributes=attrs)
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self

    def _close(self, exc: BaseException | None) -> None:
        span = self.span
        if span is None:
            return
        try:
            if exc is not None:
                _record_error(span, exc)
            if self._live is not None:
                self._live.note_signals(self._live.ledger.record_tool_call(self.name, self._args_hash, self.resource))
        except Exception as own:
            internal_error("tool.close", own)
        finally:
            if self._token is not None:
                otel_context.detach(self._token)
                self._token = None
            span.end()


def run(
    name: str,
    *,
    owner: str | None = None,
    project: str | None = None,
    task_id: str | None = None,
    run_id: str | None = None,
    budget: Budget | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Run:
    """A run: a context manager (``with``/``async with``) or a decorator (sync or async)."""
    carry_context_into_threads()  # calls made in its worker threads belong to it
    return Run(name, owner=owner, project=project, task_id=task_id, run_id=run_id, budget=budget, tracer_provider=tracer_provider)


def tool(
    name: str,
    *,
    resource: str | None = None,
    args: Any = None,
    resource_arg: str | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Tool:
    """A tool call: ``execute_tool`` span with its name, argument hash and resource; checks the run's budget first.

    As a decorator, the function's arguments are hashed, and ``resource_arg``
    names the argument that holds the resource (a path, a URL).
    """
    return Tool(name, resource=resource, args=args, resource_arg=resource_arg, tracer_provider=tracer_provider)
