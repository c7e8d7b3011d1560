-- (shared) Top-level runs in the window with their final outcome; included by the run reports
-- after WITH RECURSIVE. A run with no outcome that ended more than {abandoned_after_s} seconds
-- ago counts as abandoned.
-- Sums come from the calls of the run and its sub-runs (runmeter_run_totals), so calls made in
-- other processes or written by other collector replicas count; the run record's own sums are
-- used only where no call rows are left (past the calls' retention).
run_tops AS (
    SELECT RunId FROM runmeter_runs_current
    WHERE ParentRunId = ''
      AND StartTime >= {since:DateTime64(9)} AND StartTime < {until:DateTime64(9)}
      AND ({owner:String} = '' OR Owner = {owner:String})
      AND ({project:String} = '' OR Project = {project:String})
      AND ({run_name:String} = '' OR Name = {run_name:String})
),
run_tree AS (
    SELECT RunId AS TopRunId, RunId, 0 AS Depth FROM run_tops
    UNION ALL
    SELECT run_tree.TopRunId, s.RunId, run_tree.Depth + 1
    FROM runmeter_runs_current AS s
    INNER JOIN run_tree ON s.ParentRunId = run_tree.RunId
    WHERE run_tree.Depth < 16
),
tree_totals AS (
    SELECT run_tree.TopRunId AS TopRunId, sum(t.CostUsd) AS CostUsd, sum(t.LlmCalls) AS LlmCalls,
           sum(t.UnpricedCalls) AS UnpricedCalls, sum(t.EstimatedCalls) AS EstimatedCalls, sum(t.ToolCalls) AS ToolCalls,
           max(t.LastCall) AS LastCall
    FROM (SELECT DISTINCT TopRunId, RunId FROM run_tree) AS run_tree
    INNER JOIN runmeter_run_totals AS t ON t.RunId = run_tree.RunId
    GROUP BY TopRunId
),
runs AS (
    SELECT
        r.RunId AS RunId, r.Name AS Name, r.Owner AS Owner, r.Project AS Project,
        if(r.TaskId = '', r.RunId, r.TaskId) AS TaskKey,
        r.StartTime AS StartTime, greatest(r.EndTime, tt.LastCall) AS EndTime,
        tt.LlmCalls + tt.ToolCalls > 0 AS FromCalls,
        if(FromCalls, tt.CostUsd, r.CostUsd) AS CostUsd,
        if(FromCalls, tt.LlmCalls, r.LlmCalls) AS LlmCalls,
        if(FromCalls, tt.ToolCalls, r.ToolCallsTotal) AS ToolCalls,
        if(FromCalls, tt.UnpricedCalls, r.UnpricedCalls) AS UnpricedCalls,
        if(FromCalls, tt.EstimatedCalls, r.EstimatedCalls) AS EstimatedCalls,
        multiIf(LlmCalls > 0 AND UnpricedCalls = LlmCalls, 'unpriced', UnpricedCalls > 0, 'partially_priced',
                EstimatedCalls > 0, 'estimated', 'priced') AS Pricing,
        r.Incomplete AS Incomplete,
        if(empty(r.CostByModel), '', mapKeys(r.CostByModel)[indexOf(mapValues(r.CostByModel), arrayMax(mapValues(r.CostByModel)))]) AS Model,
        multiIf(
            o.Outcome != '', o.Outcome,
            r.EndTime < now64(9) - toIntervalSecond({abandoned_after_s:UInt32}), 'abandoned',
            'unknown') AS FinalOutcome
    FROM runmeter_runs_current AS r
    LEFT JOIN runmeter_run_outcome AS o ON o.RunId = r.RunId
    LEFT JOIN tree_totals AS tt ON tt.TopRunId = r.RunId
    WHERE r.RunId IN (SELECT RunId FROM run_tops)
),
runs_m AS (
    SELECT runs.*, ifNull(p.Provider, '') AS Provider
    FROM runs
    LEFT JOIN (SELECT Model, any(Provider) AS Provider FROM runmeter_calls WHERE Kind = 'llm' GROUP BY Model) AS p
        ON p.Model = runs.Model
    WHERE ({model:String} = '' OR runs.Model = {model:String})
)
