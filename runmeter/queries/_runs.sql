-- (shared) Top-level runs in the window with their final outcome; included by the run reports.
-- A run with no outcome that ended more than {abandoned_after_s} seconds ago counts as abandoned.
runs AS (
    SELECT
        r.RunId AS RunId, r.Name AS Name, r.Owner AS Owner, r.Project AS Project,
        if(r.TaskId = '', r.RunId, r.TaskId) AS TaskKey,
        r.StartTime AS StartTime, r.EndTime AS EndTime, r.CostUsd AS CostUsd, r.LlmCalls AS LlmCalls,
        r.ToolCallsTotal AS ToolCalls, r.UnpricedCalls AS UnpricedCalls,
        if(empty(r.CostByModel), '', mapKeys(r.CostByModel)[indexOf(mapValues(r.CostByModel), arrayMax(mapValues(r.CostByModel)))]) AS Model,
        multiIf(
            o.Outcome != '', o.Outcome,
            r.EndTime < now64(9) - toIntervalSecond({abandoned_after_s:UInt32}), 'abandoned',
            'unknown') AS FinalOutcome
    FROM runmeter_runs_current AS r
    LEFT JOIN runmeter_run_outcome AS o ON o.RunId = r.RunId
    WHERE r.ParentRunId = ''
      AND r.StartTime >= {since:DateTime64(9)} AND r.StartTime < {until:DateTime64(9)}
      AND ({owner:String} = '' OR r.Owner = {owner:String})
      AND ({project:String} = '' OR r.Project = {project:String})
      AND ({run_name:String} = '' OR r.Name = {run_name:String})
),
runs_m AS (
    SELECT runs.*, ifNull(p.Provider, '') AS Provider
    FROM runs
    LEFT JOIN (SELECT Model, any(Provider) AS Provider FROM runmeter_calls WHERE Kind = 'llm' GROUP BY Model) AS p
        ON p.Model = runs.Model
    WHERE ({model:String} = '' OR runs.Model = {model:String})
)
