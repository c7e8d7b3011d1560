-- One page of the run list (runmeter ui, runmeter runs): the window's runs filtered by outcome,
-- cost, loop signals and pricing state, sorted by a whitelisted column, with the number of rows
-- over all pages (TotalRows). A run has a loop signal or a budget breach when it or one of its
-- sub-runs has.
WITH RECURSIVE {{include:_runs}},
flagged AS (
    SELECT rt.TopRunId AS RunId, sum(length(s.LoopSignals.Kind)) AS LoopSignals, sum(length(s.Breaches.Limit)) AS Breaches,
           max(has(s.Breaches.Action, 'stop')) AS Stopped
    FROM (SELECT DISTINCT TopRunId, RunId FROM run_tree) AS rt
    INNER JOIN runmeter_runs_current AS s ON s.RunId = rt.RunId
    GROUP BY rt.TopRunId
),
page AS (
    SELECT r.RunId AS RunId, r.Name AS Name, r.Owner AS Owner, r.Project AS Project, r.Model AS Model,
           r.FinalOutcome AS Outcome, round(r.CostUsd, 6) AS CostUsd, r.Pricing AS Pricing, r.LlmCalls AS LlmCalls,
           r.UnpricedCalls AS UnpricedCalls, r.EstimatedCalls AS EstimatedCalls, r.ToolCalls AS ToolCalls,
           r.Incomplete AS Incomplete, round(dateDiff('millisecond', r.StartTime, r.EndTime) / 1000, 3) AS WallClockS,
           r.StartTime AS StartTime, ifNull(f.LoopSignals, 0) AS LoopSignals, ifNull(f.Breaches, 0) AS Breaches,
           ifNull(f.Stopped, 0) AS Stopped
    FROM runs_m AS r
    LEFT JOIN flagged AS f ON f.RunId = r.RunId
    WHERE ({outcome:String} = '' OR r.FinalOutcome = {outcome:String})
      AND r.CostUsd >= {min_cost:Float64}
      AND (NOT {has_loop:Bool} OR LoopSignals > 0)
      AND (NOT {unpriced:Bool} OR r.UnpricedCalls > 0)
)
SELECT *, count() OVER () AS TotalRows
FROM page
ORDER BY if({descending:Bool}, {sort:Identifier}, NULL) DESC NULLS LAST,
         if({descending:Bool}, NULL, {sort:Identifier}) ASC NULLS LAST, RunId
LIMIT {limit:UInt32} OFFSET {offset:UInt32}
