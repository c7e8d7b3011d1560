"""runmeter semantic conventions: generated from conventions/registry/*.yaml.

Do not edit by hand; run ``python -m runmeter.conventions.generate``.
"""

from __future__ import annotations

from enum import Enum
from typing import Final


# --- registry.runmeter.budget (budget.yaml) ---

RUNMETER_BUDGET_MAX_COST_USD: Final = 'runmeter.budget.max_cost_usd'
"""Spend limit of the run in US dollars."""

RUNMETER_BUDGET_MAX_TOKENS: Final = 'runmeter.budget.max_tokens'
"""Limit on input plus output tokens in the run."""

RUNMETER_BUDGET_MAX_LLM_CALLS: Final = 'runmeter.budget.max_llm_calls'
"""Limit on LLM calls in the run."""

RUNMETER_BUDGET_MAX_TOOL_CALLS: Final = 'runmeter.budget.max_tool_calls'
"""Limit on tool calls in the run."""

RUNMETER_BUDGET_MAX_WALL_CLOCK_S: Final = 'runmeter.budget.max_wall_clock_s'
"""Limit on the run's wall-clock time in seconds."""

RUNMETER_BUDGET_MAX_IDENTICAL_REPEATS: Final = 'runmeter.budget.max_identical_repeats'
"""Limit on how often the same tool call or LLM input may repeat in the run."""

RUNMETER_BUDGET_ALLOWED_TOOLS: Final = 'runmeter.budget.allowed_tools'
"""The only tools the run may call."""

RUNMETER_BUDGET_ACTION: Final = 'runmeter.budget.action'
"""What happens when a limit is hit."""


class RunmeterBudgetActionValues(Enum):
    STOP = 'stop'
    """Raise BudgetExceeded before the next call."""
    WARN = 'warn'
    """Record the breach and go on."""

RUNMETER_BUDGET_LIMIT: Final = 'runmeter.budget.limit'
"""Which limit was hit, on a runmeter.budget.exceeded event."""


class RunmeterBudgetLimitValues(Enum):
    COST = 'max_cost_usd'
    """The spend limit."""
    TOKENS = 'max_tokens'
    """The token limit."""
    LLM_CALLS = 'max_llm_calls'
    """The LLM-call limit."""
    TOOL_CALLS = 'max_tool_calls'
    """The tool-call limit."""
    WALL_CLOCK = 'max_wall_clock_s'
    """The wall-clock limit."""
    IDENTICAL_REPEATS = 'max_identical_repeats'
    """The identical-repeat limit."""
    ALLOWED_TOOLS = 'allowed_tools'
    """A tool outside the allow-list."""

RUNMETER_BUDGET_VALUE: Final = 'runmeter.budget.value'
"""The run's value for the limit when it was hit."""

RUNMETER_BUDGET_THRESHOLD: Final = 'runmeter.budget.threshold'
"""The limit that was hit."""


# --- registry.runmeter.cost (cost.yaml) ---

RUNMETER_COST_USD: Final = 'runmeter.cost.usd'
"""Cost of the call in US dollars."""

RUNMETER_COST_SOURCE: Final = 'runmeter.cost.source'
"""Where the price came from, with its version."""

RUNMETER_COST_ESTIMATED: Final = 'runmeter.cost.estimated'
"""True when the token counts were estimated because the provider reported no usage."""

RUNMETER_COST_UNPRICED: Final = 'runmeter.cost.unpriced'
"""True when no price is known for the model; then runmeter.cost.usd is absent."""

RUNMETER_COST_UNPRICED_REASON: Final = 'runmeter.cost.unpriced_reason'
"""Why a call is unpriced, beside runmeter.cost.unpriced."""

RUNMETER_COST_SERVICE_TIER: Final = 'runmeter.cost.service_tier'
"""The service tier the response reports, which the price was taken at."""

RUNMETER_COST_CACHE_WRITE_1H_TOKENS: Final = 'runmeter.cost.cache_write_1h_tokens'
"""The part of the call's cache write kept for an hour, priced at its own rate."""

RUNMETER_COST_WEB_SEARCHES: Final = 'runmeter.cost.web_searches'
"""Web searches the provider ran for the call on its side, priced per search."""

RUNMETER_COST_FILE_SEARCHES: Final = 'runmeter.cost.file_searches'
"""File searches the provider ran for the call on its side, priced per search."""

RUNMETER_COST_EXTERNAL_USD: Final = 'runmeter.cost.external_usd'
"""A cost another instrumentation put on the span, kept apart from runmeter's own figure."""

RUNMETER_COST_DUPLICATE: Final = 'runmeter.cost.duplicate'
"""True on a span that reports the same model call as another span (an SDK's own span under an instrumentation's); its tokens and cost are not counted again."""


# --- registry.gen_ai.usage.cost (gen_ai_cost_proposal.yaml) ---

GEN_AI_USAGE_COST_AMOUNT: Final = 'gen_ai.usage.cost.amount'
"""Cost of the operation, in the currency given by gen_ai.usage.cost.currency."""

GEN_AI_USAGE_COST_CURRENCY: Final = 'gen_ai.usage.cost.currency'
"""ISO 4217 currency code of the cost."""

GEN_AI_USAGE_COST_SOURCE: Final = 'gen_ai.usage.cost.source'
"""Where the cost came from."""


# --- registry.runmeter.loop (loop.yaml) ---

RUNMETER_LOOP_KIND: Final = 'runmeter.loop.kind'
"""Kind of loop signal, on a runmeter.loop.detected event."""


class RunmeterLoopKindValues(Enum):
    IDENTICAL_TOOL_CALL = 'identical_tool_call'
    """The same tool with the same argument hash, repeated."""
    REPEATED_CONTEXT_READ = 'repeated_context_read'
    """The same resource read repeatedly."""
    IDENTICAL_LLM_INPUT = 'identical_llm_input'
    """The same LLM input hash, repeated."""
    TOOL_CYCLE = 'tool_cycle'
    """A repeating cycle in the tool-call sequence, such as A,B,A,B,A,B."""

RUNMETER_LOOP_COUNT: Final = 'runmeter.loop.count'
"""How many times the repeated thing occurred in the run."""

RUNMETER_LOOP_KEY: Final = 'runmeter.loop.key'
"""What repeated - a tool name and argument hash, a resource, an input hash, or the cycle's tool names."""


# --- registry.runmeter.run (run.yaml) ---

RUNMETER_RUN_ID: Final = 'runmeter.run.id'
"""Identifier of the run this span belongs to."""

RUNMETER_RUN_NAME: Final = 'runmeter.run.name'
"""Name of the run, usually the agent's job."""

RUNMETER_RUN_OWNER: Final = 'runmeter.run.owner'
"""Person or team that owns the run's spend."""

RUNMETER_RUN_PROJECT: Final = 'runmeter.run.project'
"""Project the run's spend is booked to."""

RUNMETER_RUN_PARENT_ID: Final = 'runmeter.run.parent_id'
"""Run id of the enclosing run, for a sub-run."""

RUNMETER_RUN_ROOT: Final = 'runmeter.run.root'
"""True on the span that is the root of a run."""

RUNMETER_RUN_IMPLICIT: Final = 'runmeter.run.implicit'
"""True on a run runmeter inferred from a trace root, for GenAI spans outside any explicit or agent run."""

RUNMETER_RUN_INCOMPLETE: Final = 'runmeter.run.incomplete'
"""True when a run was cut by a memory or time limit before it completed; its later spans still carry its id."""

RUNMETER_TASK_ID: Final = 'runmeter.task.id'
"""Identifier of the task; runs that retry the same task share it."""

RUNMETER_RUN_OUTCOME: Final = 'runmeter.run.outcome'
"""How the run ended. Absent while unknown; a later outcome event wins."""


class RunmeterRunOutcomeValues(Enum):
    ACCEPTED = 'accepted'
    """The result was accepted."""
    REJECTED = 'rejected'
    """The result was rejected."""
    ABANDONED = 'abandoned'
    """The run was given up, or ended with no outcome within the window."""
    FAILED = 'failed'
    """The run ended with an error."""

RUNMETER_RUN_OUTCOME_REASON: Final = 'runmeter.run.outcome_reason'
"""Free-text reason given with the outcome."""


# --- registry.runmeter.tool (tool.yaml) ---

RUNMETER_TOOL_ARGS_HASH: Final = 'runmeter.tool.args_hash'
"""Hash of a tool call's arguments (the arguments themselves are never recorded unless capture is on)."""

RUNMETER_TOOL_RESOURCE: Final = 'runmeter.tool.resource'
"""The resource a tool call reads or writes, such as a file path or URL; repeats of it are repeated context reads."""

RUNMETER_TOOL_REQUESTED: Final = 'runmeter.tool.requested'
"""Tool calls the model asked for in its response, as "name#args_hash"."""

RUNMETER_TOOL_INFERRED: Final = 'runmeter.tool.inferred'
"""On a tool span runmeter made itself because the tool's result went back to the model (a `role: tool` message, a `tool_result` block, a `function_call_output`, a `functionResponse`, a `toolResult`) and no tool span of the agent's own covered it. Its start is the end of the response that asked for the tool."""

RUNMETER_LLM_INPUT_HASH: Final = 'runmeter.llm.input_hash'
"""Hash of an LLM call's input messages; the same hash twice in a run is an identical LLM input."""


# --- upstream.gen_ai (upstream.yaml) ---

GEN_AI_PROVIDER_NAME: Final = 'gen_ai.provider.name'
"""The Generative AI provider as identified by the client or server instrumentation."""

GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = 'gen_ai.usage.cache_read.input_tokens'
"""The number of input tokens served from a provider-managed cache; included in gen_ai.usage.input_tokens."""

GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = 'gen_ai.usage.cache_creation.input_tokens'
"""The number of input tokens written to a provider-managed cache; included in gen_ai.usage.input_tokens."""

GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = 'gen_ai.usage.reasoning.output_tokens'
"""The number of output tokens used for reasoning; included in gen_ai.usage.output_tokens."""


# --- events ---

RUNMETER_BUDGET_EXCEEDED_EVENT: Final = 'runmeter.budget.exceeded'
"""A budget limit of the run was hit (recorded with action stop and warn alike)."""

RUNMETER_LOOP_DETECTED_EVENT: Final = 'runmeter.loop.detected'
"""A loop signal crossed its threshold; recorded once per run and key."""

RUNMETER_RUN_OUTCOME_EVENT: Final = 'runmeter.run.outcome'
"""An outcome was set on the run."""

GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS_EVENT: Final = 'gen_ai.client.inference.operation.details'
"""The inputs and outputs of a GenAI operation, as an event (content capture EVENT_ONLY / SPAN_AND_EVENT)."""


# --- metrics ---

RUNMETER_CLIENT_COST_METRIC: Final = 'runmeter.client.cost'
"""Cost of model calls. (counter, USD)"""
RUNMETER_CLIENT_COST_UNIT: Final = 'USD'

RUNMETER_RUN_COST_METRIC: Final = 'runmeter.run.cost'
"""Cost of finished runs (bucket bounds from $0.0001 to $1,000, each at most 2.5x the one before). (histogram, USD)"""
RUNMETER_RUN_COST_UNIT: Final = 'USD'

RUNMETER_RUNS_METRIC: Final = 'runmeter.runs'
"""Finished runs, by outcome (no outcome counts as unknown). (counter, {run})"""
RUNMETER_RUNS_UNIT: Final = '{run}'

RUNMETER_LOOP_SIGNALS_METRIC: Final = 'runmeter.loop.signals'
"""Loop signals, by kind. (counter, {signal})"""
RUNMETER_LOOP_SIGNALS_UNIT: Final = '{signal}'

RUNMETER_BUDGET_BREACHES_METRIC: Final = 'runmeter.budget.breaches'
"""Budget breaches, by limit and action. (counter, {breach})"""
RUNMETER_BUDGET_BREACHES_UNIT: Final = '{breach}'

RUNMETER_RUNS_INCOMPLETE_METRIC: Final = 'runmeter.runs.incomplete'
"""Runs cut by a memory or time limit and emitted incomplete. (counter, {run})"""
RUNMETER_RUNS_INCOMPLETE_UNIT: Final = '{run}'

RUNMETER_SPANS_DROPPED_METRIC: Final = 'runmeter.spans.dropped'
"""Spans runmeter could not process. (counter, {span})"""
RUNMETER_SPANS_DROPPED_UNIT: Final = '{span}'

RUNMETER_RUNS_OPEN_METRIC: Final = 'runmeter.runs.open'
"""Runs in progress. (updowncounter, {run})"""
RUNMETER_RUNS_OPEN_UNIT: Final = '{run}'

RUNMETER_RUN_DURATION_METRIC: Final = 'runmeter.run.duration'
"""Wall-clock duration of finished runs, for long-run alerts (bucket bounds from 0.5 s to a day). (histogram, s)"""
RUNMETER_RUN_DURATION_UNIT: Final = 's'

RUNMETER_RUNS_OLDEST_OPEN_AGE_METRIC: Final = 'runmeter.runs.oldest_open_age'
"""Age of the oldest run still in progress, for long-run alerts. (gauge, s)"""
RUNMETER_RUNS_OLDEST_OPEN_AGE_UNIT: Final = 's'

RUNMETER_COLLECTOR_SPANS_RECEIVED_METRIC: Final = 'runmeter.collector.spans.received'
"""Spans the collector received over OTLP (gRPC and HTTP), before checks. (counter, {span})"""
RUNMETER_COLLECTOR_SPANS_RECEIVED_UNIT: Final = '{span}'

RUNMETER_COLLECTOR_SPANS_ACCEPTED_METRIC: Final = 'runmeter.collector.spans.accepted'
"""Spans written to the collector's write-ahead log and acknowledged. (counter, {span})"""
RUNMETER_COLLECTOR_SPANS_ACCEPTED_UNIT: Final = '{span}'

RUNMETER_COLLECTOR_SPANS_REJECTED_METRIC: Final = 'runmeter.collector.spans.rejected'
"""Spans rejected as invalid or not allowed, by reason (`error.type`); reported to the client in partial_success. (counter, {span})"""
RUNMETER_COLLECTOR_SPANS_REJECTED_UNIT: Final = '{span}'

RUNMETER_COLLECTOR_SPANS_WRITTEN_METRIC: Final = 'runmeter.collector.spans.written'
"""Spans written to ClickHouse, after which the write-ahead log releases them. (counter, {span})"""
RUNMETER_COLLECTOR_SPANS_WRITTEN_UNIT: Final = '{span}'

RUNMETER_COLLECTOR_SPANS_DUPLICATE_METRIC: Final = 'runmeter.collector.spans.duplicate'
"""Spans that came again (a client resent a request whose acknowledgement it lost) and were not processed twice. (counter, {span})"""
RUNMETER_COLLECTOR_SPANS_DUPLICATE_UNIT: Final = '{span}'

RUNMETER_COLLECTOR_REQUESTS_REFUSED_METRIC: Final = 'runmeter.collector.requests.refused'
"""Requests refused as a whole, by reason (`error.type`) - retryable (log full, draining) or not (unauthenticated, malformed, too large). (counter, {request})"""
RUNMETER_COLLECTOR_REQUESTS_REFUSED_UNIT: Final = '{request}'

RUNMETER_COLLECTOR_OWNER_LOOKUPS_METRIC: Final = 'runmeter.collector.owner.lookups'
"""Store lookups made to learn who owns traces and runs this collector has not seen (with tokens bound to projects; each for all the requests waiting at its turn). With the embedded store, ids it cannot hold are not looked up. (counter, {lookup})"""
RUNMETER_COLLECTOR_OWNER_LOOKUPS_UNIT: Final = '{lookup}'

RUNMETER_COLLECTOR_LOG_SIZE_METRIC: Final = 'runmeter.collector.log.size'
"""Bytes held by the collector's write-ahead log on disk. (gauge, By)"""
RUNMETER_COLLECTOR_LOG_SIZE_UNIT: Final = 'By'

RUNMETER_COLLECTOR_STORE_LAG_METRIC: Final = 'runmeter.collector.store.lag'
"""Bytes acknowledged but not yet in ClickHouse (the log's unreleased records plus the writer's spool). (gauge, By)"""
RUNMETER_COLLECTOR_STORE_LAG_UNIT: Final = 'By'
