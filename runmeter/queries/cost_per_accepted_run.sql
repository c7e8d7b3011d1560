-- Cost per accepted run and per accepted task, by a dimension. Rejected, abandoned and failed
-- runs are in the total: that is the point.
WITH RECURSIVE {{include:_runs}}
SELECT
    multiIf({group:String} = 'owner', Owner, {group:String} = 'project', Project, {group:String} = 'provider', Provider,
            {group:String} = 'model', Model, {group:String} = 'none', 'all', Name) AS Group,
    count() AS Runs,
    round(sum(CostUsd), 6) AS TotalCostUsd,
    countIf(FinalOutcome = 'accepted') AS Accepted,
    countIf(FinalOutcome = 'rejected') AS Rejected,
    countIf(FinalOutcome = 'abandoned') AS Abandoned,
    countIf(FinalOutcome = 'failed') AS Failed,
    countIf(FinalOutcome = 'unknown') AS Unknown,
    if(Accepted = 0, NULL, round(TotalCostUsd / Accepted, 6)) AS CostPerAcceptedRun,
    uniqExact(TaskKey) AS Tasks,
    uniqExactIf(TaskKey, FinalOutcome = 'accepted') AS AcceptedTasks,
    if(AcceptedTasks = 0, NULL, round(TotalCostUsd / AcceptedTasks, 6)) AS CostPerAcceptedTask,
    round(quantileExact(0.5)(CostUsd), 6) AS MedianRunCostUsd,
    round(quantileExact(0.9)(CostUsd), 6) AS P90RunCostUsd,
    round(avg(ToolCalls), 2) AS MeanToolCalls,
    round(avg(LlmCalls), 2) AS MeanLlmCalls,
    sum(UnpricedCalls) AS UnpricedCalls
FROM runs_m
GROUP BY Group
ORDER BY TotalCostUsd DESC, Group
