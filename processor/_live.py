"""The run in progress, carried in the OpenTelemetry context.

``runmeter.run()`` puts a :class:`LiveRun` into the context it attaches; the
instrumentation reads it to check the budget before a call, and the
:class:`RunProcessor` reads it in ``on_start`` to stamp the run's attributes on
every span of the run and, in ``on_end``, to feed the run's ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from runmeter.processor._ledger import RunLedger

__all__ = ["RUN_CONTEXT_KEY", "LiveRun", "current_run"]

RUN_CONTEXT_KEY = otel_context.create_key("runmeter-run")


@dataclass
class LiveRun:
    """A run that is going on in this process."""

    run_id: str
    ledger: RunLedger
    stamp: dict[str, Any] = field(default_factory=dict)
    """Attributes copied onto every span of the run (id, name, owner, project, task)."""
    root_span: Span | None = None


def current_run(ctx: otel_context.Context | None = None) -> LiveRun | None:
    value = otel_context.get_value(RUN_CONTEXT_KEY, ctx)
    return value if isinstance(value, LiveRun) else None
