-- One run's record with its final outcome.
SELECT r.RunId AS RunId, r.Name AS Name, r.Owner AS Owner, r.Project AS Project, r.TaskId AS TaskId,
       r.ParentRunId AS ParentRunId, r.TraceId AS TraceId, r.StartTime AS StartTime, r.EndTime AS EndTime,
       if(o.Outcome != '', o.Outcome, r.Outcome) AS Outcome, round(r.CostUsd, 6) AS CostUsd, r.CostByModel AS CostByModel,
       r.LlmCalls AS LlmCalls, r.ToolCalls AS ToolCalls, r.InputTokens AS InputTokens, r.OutputTokens AS OutputTokens,
       r.Pricing AS Pricing, r.Incomplete AS Incomplete
FROM runmeter_runs_current AS r
LEFT JOIN runmeter_run_outcome AS o ON o.RunId = r.RunId
WHERE r.RunId = {run_id:String}
