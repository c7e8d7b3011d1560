-- One run's record with its final outcome (as `runs` gives it) and sums over the calls of the run
-- and its sub-runs, wherever they were made (the record's own sums where no call rows are left).
WITH RECURSIVE {{include:_run_subtree}},
tt AS (
    SELECT sum(CostUsd) AS CostUsd, sum(LlmCalls) AS LlmCalls, sum(UnpricedCalls) AS UnpricedCalls,
           sum(EstimatedCalls) AS EstimatedCalls, sum(ToolCalls) AS ToolCalls, sum(InputTokens) AS InputTokens,
           sum(OutputTokens) AS OutputTokens, max(LastCall) AS LastCall
    FROM runmeter_run_totals
    WHERE RunId IN (SELECT RunId FROM run_tree)
)
SELECT r.RunId AS RunId, r.Name AS Name, r.Owner AS Owner, r.Project AS Project, r.TaskId AS TaskId,
       r.ParentRunId AS ParentRunId, r.TraceId AS TraceId, r.StartTime AS StartTime,
       greatest(r.EndTime, tt.LastCall) AS EndTime,
       multiIf(o.Outcome != '', o.Outcome,
               r.EndTime < now64(9) - toIntervalSecond({abandoned_after_s:UInt32}), 'abandoned',
               'unknown') AS Outcome,
       tt.LlmCalls + tt.ToolCalls > 0 AS FromCalls,
       round(if(FromCalls, tt.CostUsd, r.CostUsd), 6) AS CostUsd, r.CostByModel AS CostByModel,
       if(FromCalls, tt.LlmCalls, r.LlmCalls) AS LlmCalls,
       if(FromCalls, tt.UnpricedCalls, r.UnpricedCalls) AS UnpricedCalls,
       if(FromCalls, tt.EstimatedCalls, r.EstimatedCalls) AS EstimatedCalls,
       if(FromCalls, tt.ToolCalls, r.ToolCallsTotal) AS ToolCalls,
       if(FromCalls, tt.InputTokens, r.InputTokens) AS InputTokens,
       if(FromCalls, tt.OutputTokens, r.OutputTokens) AS OutputTokens,
       multiIf(LlmCalls > 0 AND UnpricedCalls = LlmCalls, 'unpriced', UnpricedCalls > 0, 'partially_priced',
               EstimatedCalls > 0, 'estimated', 'priced') AS Pricing,
       r.Incomplete AS Incomplete
FROM runmeter_runs_current AS r
LEFT JOIN runmeter_run_outcome AS o ON o.RunId = r.RunId
CROSS JOIN tt
WHERE r.RunId = {run_id:String}
