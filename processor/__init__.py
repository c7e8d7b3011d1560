"""runmeter's processing stage: pricing, run assembly, loop signals, budgets.

``PriceBook`` prices usage with ``genai-prices`` (plus ``runmeter.toml``
overrides), resolving each model once::

    from runmeter.processor import PriceBook, TokenUsage
    cost = PriceBook().price("openai", "gpt-5.5", TokenUsage.from_openai(57, 21, cached_tokens=32))
    cost.usd  # 0.000771

``RunProcessor`` is an OpenTelemetry span processor stage: it wraps the
downstream processor(s), prices spans that carry tokens, assembles spans into
runs (one :class:`RunRecord` per run, written to a :class:`RunSink`), detects
loop signals and feeds each run's :class:`RunLedger` (live totals + budget
check)::

    sink = InMemoryRunSink()
    provider.add_span_processor(RunProcessor(BatchSpanProcessor(exporter), sink=sink))

Configuration: :class:`RunLimits` (completion timing, memory bounds, loop
threshold), usually from ``runmeter.config.load_settings().runs``.
"""

from __future__ import annotations

from runmeter.processor._assembly import Assembly, assemble, run_id_for
from runmeter.processor._budget import Breach, Budget, BudgetExceeded
from runmeter.core import ConfigError, redact
from runmeter.processor._facts import KIND_AGENT, KIND_LLM, KIND_OTHER, KIND_TOOL, SpanFacts, facts_of, read_span, short_hash
from runmeter.processor._sdk import FAST_NEW as SDK_FIELDS_KNOWN
from runmeter.processor._sdk import attributes_of, readable_span, span_context, span_fields, stamp
from runmeter.processor._ledger import RunLedger
from runmeter.processor._limits import ANY as ANY_VALUE
from runmeter.processor._limits import COLUMNS as SPEND_COLUMNS
from runmeter.processor._limits import DATED_SQL as DATED_MODEL_SQL
from runmeter.processor._limits import SpendLimit, SpendLimits, base_model, current_limits, set_limits
from runmeter.processor._limits import Reader as SpendReader
from runmeter.processor._limits import Usage as SpendUsage
from runmeter.processor._limits import period_start as spend_period_start
from runmeter.processor._live import INSTRUMENTATION_SCOPE, RUN_CONTEXT_KEY, LiveRun, alert, current_run, run_handover, run_taken_over, set_alert_hook
from runmeter.processor._loops import LoopDetector, LoopSignal
from runmeter.processor._overrides import GpuHourPrice, PriceOverrides, TokenPrice
from runmeter.processor._processor import RunLimits, RunProcessor
from runmeter.processor._records import InMemoryRunSink, OutcomeEvent, RunRecord, RunSink, Tokens
from runmeter.processor.pricing import Cost, PriceBook, TokenUsage, provider_for_base_url

__all__ = [
    "ANY_VALUE",
    "alert",
    "set_alert_hook",
    "DATED_MODEL_SQL",
    "SPEND_COLUMNS",
    "SpendLimit",
    "SpendLimits",
    "SpendReader",
    "SpendUsage",
    "base_model",
    "current_limits",
    "set_limits",
    "spend_period_start",
    "INSTRUMENTATION_SCOPE",
    "KIND_AGENT",
    "KIND_LLM",
    "KIND_OTHER",
    "KIND_TOOL",
    "RUN_CONTEXT_KEY",
    "attributes_of",
    "readable_span",
    "span_context",
    "span_fields",
    "SDK_FIELDS_KNOWN",
    "facts_of",
    "redact",
    "stamp",
    "Assembly",
    "Breach",
    "Budget",
    "BudgetExceeded",
    "ConfigError",
    "Cost",
    "GpuHourPrice",
    "InMemoryRunSink",
    "LiveRun",
    "LoopDetector",
    "LoopSignal",
    "OutcomeEvent",
    "PriceBook",
    "PriceOverrides",
    "RunLedger",
    "RunLimits",
    "RunProcessor",
    "RunRecord",
    "RunSink",
    "SpanFacts",
    "TokenPrice",
    "TokenUsage",
    "provider_for_base_url",
    "Tokens",
    "assemble",
    "current_run",
    "run_handover",
    "run_taken_over",
    "read_span",
    "run_id_for",
    "short_hash",
]
