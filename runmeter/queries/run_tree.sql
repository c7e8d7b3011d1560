-- One run's spans as a tree: every span of the run's trace, with its cost, tokens and the state of
-- its number: priced, estimated, unpriced (with the reason), or duplicate (the same call as
-- another span, counted there). CostUsd is NULL where there is no price, never 0.
-- Kind is 'llm' or 'tool' for the calls runmeter counted, 'run' for a run's (or sub-run's) root
-- span, '' for any other span; CallRunId is the run a call or run root belongs to.
WITH trace AS (SELECT any(TraceId) AS TraceId FROM runmeter_runs_current WHERE RunId = {run_id:String}),
calls AS (
    SELECT SpanId, any(Kind) AS Kind, any(RunId) AS RunId, any(Model) AS Model, any(ToolName) AS ToolName,
           any(ArgsHash) AS ArgsHash, any(Resource) AS Resource, any(InputHash) AS InputHash
    FROM runmeter_calls WHERE TraceId = (SELECT TraceId FROM trace) GROUP BY SpanId
),
roots AS (
    SELECT RootSpanId AS SpanId, any(RunId) AS RunId, any(Name) AS Name FROM runmeter_runs_current
    WHERE TraceId = (SELECT TraceId FROM trace) GROUP BY RootSpanId
)
SELECT
    t.SpanId AS SpanId, t.ParentSpanId AS ParentSpanId, t.SpanName AS SpanName, t.Timestamp AS Timestamp, t.Duration AS Duration,
    multiIf(roots.RunId != '', 'run', calls.Kind) AS Kind,
    if(roots.RunId != '', roots.RunId, calls.RunId) AS CallRunId,
    t.SpanAttributes['runmeter.run.id'] AS RunId,
    calls.Model AS Model, calls.ToolName AS ToolName, calls.ArgsHash AS ArgsHash, calls.Resource AS Resource,
    calls.InputHash AS InputHash,
    toFloat64OrNull(nullIf(t.SpanAttributes['runmeter.cost.usd'], '')) AS CostUsd,
    toUInt64OrZero(t.SpanAttributes['gen_ai.usage.input_tokens']) AS InputTokens,
    toUInt64OrZero(t.SpanAttributes['gen_ai.usage.cache_read.input_tokens']) AS CacheReadTokens,
    toUInt64OrZero(t.SpanAttributes['gen_ai.usage.cache_creation.input_tokens']) AS CacheWriteTokens,
    toUInt64OrZero(t.SpanAttributes['gen_ai.usage.output_tokens']) AS OutputTokens,
    toUInt64OrZero(t.SpanAttributes['gen_ai.usage.reasoning.output_tokens']) AS ReasoningTokens,
    t.SpanAttributes['runmeter.cost.duplicate'] = 'true' AS Duplicate,
    multiIf(t.SpanAttributes['runmeter.cost.duplicate'] = 'true', 'duplicate',
            t.SpanAttributes['runmeter.cost.unpriced'] = 'true', 'unpriced',
            t.SpanAttributes['runmeter.cost.estimated'] = 'true', 'estimated',
            CostUsd IS NOT NULL, 'priced', '') AS Pricing,
    t.SpanAttributes['runmeter.cost.unpriced_reason'] AS UnpricedReason,
    t.SpanAttributes['runmeter.cost.source'] AS CostSource,
    t.StatusCode AS StatusCode
FROM otel_traces AS t
LEFT JOIN calls ON calls.SpanId = t.SpanId
LEFT JOIN roots ON roots.SpanId = t.SpanId
WHERE t.TraceId = (SELECT TraceId FROM trace)
ORDER BY t.Timestamp, t.SpanId
