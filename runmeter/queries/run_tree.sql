-- One run's spans as a tree: every span of the run's trace, with its cost and tokens.
SELECT
    SpanId, ParentSpanId, SpanName, Timestamp, Duration,
    SpanAttributes['runmeter.run.id'] AS RunId,
    toFloat64OrZero(SpanAttributes['runmeter.cost.usd']) AS CostUsd,
    toUInt64OrZero(SpanAttributes['gen_ai.usage.input_tokens']) AS InputTokens,
    toUInt64OrZero(SpanAttributes['gen_ai.usage.output_tokens']) AS OutputTokens,
    SpanAttributes['runmeter.cost.duplicate'] = 'true' AS Duplicate,
    StatusCode
FROM otel_traces
WHERE TraceId = (SELECT any(TraceId) FROM runmeter_runs_current WHERE RunId = {run_id:String})
ORDER BY Timestamp, SpanId
