-- Model bake-off on your own traces, by prompt-size bucket: calls, median tokens in and out,
-- cost per call, the acceptance rate of the runs the calls served, with sample counts.
SELECT
    c.Model AS Model,
    multiIf(c.InputTokens < {small_below:UInt64}, 'small', c.InputTokens <= {large_above:UInt64}, 'medium', 'large') AS PromptSize,
    count() AS Calls,
    quantileExact(0.5)(c.InputTokens) AS MedianInputTokens,
    quantileExact(0.5)(c.OutputTokens) AS MedianOutputTokens,
    round(avgIf(c.CostUsd, c.Priced = 1), 8) AS CostPerCallUsd,
    round(sum(c.CostUsd), 6) AS CostUsd,
    uniqExact(c.RunId) AS Runs,
    uniqExactIf(c.RunId, o.Outcome = 'accepted') AS AcceptedRuns,
    if(Runs = 0, NULL, round(AcceptedRuns / Runs, 4)) AS AcceptanceRate
FROM runmeter_calls AS c
LEFT JOIN runmeter_run_outcome AS o ON o.RunId = c.RunId
WHERE c.Kind = 'llm' AND c.Duplicate = 0
  AND c.Timestamp >= {since:DateTime64(9)} AND c.Timestamp < {until:DateTime64(9)}
  AND has({models:Array(String)}, c.Model)
GROUP BY Model, PromptSize
ORDER BY Model, PromptSize
