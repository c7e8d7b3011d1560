"""Where runmeter's spans belong when a framework's instrumentation does not make its spans current.

OpenInference's LangChain instrumentation records a span per LangChain run but never attaches it
to the OpenTelemetry context, so a model call inside a LangGraph node would start a trace of its
own: an implicit run of one call beside the graph's run, its cost counted outside it. When no span
is current, runmeter asks OpenInference (through its public ``get_current_span``, only if the
user's program imported it) for the LangChain run the call is made in, and starts its span there.
"""

from __future__ import annotations

import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

from runmeter.core import internal_error

__all__ = ["parent_context"]

_OPENINFERENCE_LANGCHAIN = "openinference.instrumentation.langchain"


def parent_context() -> Context | None:
    """A context holding the framework's current span, when OpenTelemetry's holds none; else None."""
    if trace.get_current_span().get_span_context().is_valid:
        return None  # the usual case: the framework's span (or the caller's) is current already
    module: Any = sys.modules.get(_OPENINFERENCE_LANGCHAIN)
    find = getattr(module, "get_current_span", None) if module is not None else None
    if find is None:
        return None
    try:
        span = find()
    except Exception as exc:  # a framework's helper never breaks the call
        internal_error("frameworks.openinference_langchain", exc)
        return None
    if span is None or not span.get_span_context().is_valid:
        return None
    return trace.set_span_in_context(span)
