"""The run in progress, carried in the OpenTelemetry context.

``runmeter.run()`` puts a :class:`LiveRun` into the context it attaches; the
instrumentation reads it to check the budget before a call, and the
:class:`RunProcessor` reads it in ``on_start`` to stamp the run's attributes on
every span of the run and, in ``on_end``, to feed the run's ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from runmeter.conventions import attributes as A
from runmeter.core import internal_error
from runmeter.processor._budget import Breach
from runmeter.processor._ledger import RunLedger
from runmeter.processor._loops import LoopSignal

__all__ = ["INSTRUMENTATION_SCOPE", "RUN_CONTEXT_KEY", "LiveRun", "current_run", "run_handover", "run_taken_over", "set_alert_hook"]

# Live alerts (``[alerts]``, runmeter/alerts.py): called with (event, run, detail) when a run in
# this process shows a loop signal or breaks a budget or a spend limit. Must not block or raise.
_alert_hook: Callable[[str, LiveRun | None, Any], None] | None = None


def set_alert_hook(hook: Callable[[str, LiveRun | None, Any], None] | None) -> None:
    global _alert_hook
    _alert_hook = hook


def alert(event: str, run: LiveRun | None, detail: Any) -> None:
    hook = _alert_hook
    if hook is not None:
        try:
            hook(event, run, detail)
        except Exception as exc:  # never the agent's problem
            internal_error("alerts.hook", exc)

RUN_CONTEXT_KEY = otel_context.create_key("runmeter-run")
INSTRUMENTATION_SCOPE = __name__.split(".")[0] + ".instrumentation"  # the runmeter.instrumentation package
"""Scope of the spans runmeter's own instrumentation makes; it feeds the run ledger itself."""


@dataclass
class LiveRun:
    """A run that is going on in this process."""

    run_id: str
    ledger: RunLedger
    stamp: dict[str, Any] = field(default_factory=dict)
    """Attributes copied onto every span of the run (id, name, owner, project, task)."""
    root_span: Span | None = None

    def __post_init__(self) -> None:
        # Strings once per run, so every span of it can take them without the SDK's per-value cleaning.
        self.stamp = {k: v if isinstance(v, str) else str(v) for k, v in self.stamp.items() if v is not None}


    def note_signals(self, signals: Iterable[LoopSignal]) -> None:
        """Record loop signals as events on the run's root span (each fires once per run)."""
        signals = list(signals)
        for s in signals:
            alert("loop", self, s)
        root = self.root_span
        if root is None or not root.is_recording():
            return
        for s in signals:
            root.add_event(
                A.RUNMETER_LOOP_DETECTED_EVENT,
                {A.RUNMETER_LOOP_KIND: s.kind, A.RUNMETER_LOOP_KEY: s.key, A.RUNMETER_LOOP_COUNT: s.count},
            )

    def note_breach(self, breach: Breach) -> None:
        """Record a budget breach as an event on the run's root span."""
        alert("spend_limit" if breach.limit.startswith("spend.") else "budget_breach", self, breach)
        root = self.root_span
        if root is not None and root.is_recording():
            root.add_event(A.RUNMETER_BUDGET_EXCEEDED_EVENT, breach.to_attributes())


def run_handover(live: LiveRun) -> tuple[Any, ...]:
    """The run, as picklable values for a process that takes work over (see :func:`run_taken_over`)."""
    return (live.run_id, dict(live.stamp), live.ledger.handover())


def run_taken_over(state: tuple[Any, ...]) -> LiveRun:
    """The run :func:`run_handover` described, in another process: its spans there carry the run's
    id, name, owner and project, and its calls are checked against the run's budget (from the
    totals at the hand-over). Its loop signals and breaches fire there as alerts; the root span,
    in the other process, does not get them as events."""
    run_id, stamp, ledger = state
    return LiveRun(str(run_id), RunLedger.taken_over(ledger), dict(stamp))


def current_run(ctx: otel_context.Context | None = None) -> LiveRun | None:
    value = otel_context.get_value(RUN_CONTEXT_KEY, ctx)
    return value if isinstance(value, LiveRun) else None
