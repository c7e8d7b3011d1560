-- One run's spans as a tree: every span of the run's trace, with its cost, tokens and the state of
-- its number: priced, estimated, unpriced (with the reason), or duplicate (the same call as
-- another span, counted there). CostUsd is NULL where there is no price, never 0.
SELECT
    SpanId, ParentSpanId, SpanName, Timestamp, Duration,
    SpanAttributes['runmeter.run.id'] AS RunId,
    toFloat64OrNull(nullIf(SpanAttributes['runmeter.cost.usd'], '')) AS CostUsd,
    toUInt64OrZero(SpanAttributes['gen_ai.usage.input_tokens']) AS InputTokens,
    toUInt64OrZero(SpanAttributes['gen_ai.usage.cache_read.input_tokens']) AS CacheReadTokens,
    toUInt64OrZero(SpanAttributes['gen_ai.usage.cache_creation.input_tokens']) AS CacheWriteTokens,
    toUInt64OrZero(SpanAttributes['gen_ai.usage.output_tokens']) AS OutputTokens,
    toUInt64OrZero(SpanAttributes['gen_ai.usage.reasoning.output_tokens']) AS ReasoningTokens,
    SpanAttributes['runmeter.cost.duplicate'] = 'true' AS Duplicate,
    multiIf(SpanAttributes['runmeter.cost.duplicate'] = 'true', 'duplicate',
            SpanAttributes['runmeter.cost.unpriced'] = 'true', 'unpriced',
            SpanAttributes['runmeter.cost.estimated'] = 'true', 'estimated',
            CostUsd IS NOT NULL, 'priced', '') AS Pricing,
    SpanAttributes['runmeter.cost.unpriced_reason'] AS UnpricedReason,
    SpanAttributes['runmeter.cost.source'] AS CostSource,
    StatusCode
FROM otel_traces
WHERE TraceId = (SELECT any(TraceId) FROM runmeter_runs_current WHERE RunId = {run_id:String})
ORDER BY Timestamp, SpanId
