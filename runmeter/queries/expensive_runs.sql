-- The most expensive runs in the window.
WITH RECURSIVE {{include:_runs}}
SELECT RunId, Name, Owner, Project, Model, FinalOutcome AS Outcome, round(CostUsd, 6) AS CostUsd, Pricing, LlmCalls,
       UnpricedCalls, EstimatedCalls, ToolCalls, Incomplete,
       round(dateDiff('millisecond', StartTime, EndTime) / 1000, 3) AS WallClockS, StartTime
FROM runs_m
ORDER BY CostUsd DESC, RunId
LIMIT {limit:UInt32}
