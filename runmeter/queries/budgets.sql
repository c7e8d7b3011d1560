-- Budget breaches by limit and action. SavedUsdEstimate (an estimate): a stopped run, had it
-- gone on for as many LLM calls as the same-named runs that were not stopped make on average,
-- at the cost per call it had so far: cost x (typical calls / its calls - 1), never below 0.
WITH RECURSIVE {{include:_runs}},
breaches AS (
    SELECT RunId, Name, CostUsd, LlmCalls, arrayJoin(arrayZip(Breaches.Limit, Breaches.Action)) AS b
    FROM runmeter_runs_current
    WHERE RunId IN (SELECT RunId FROM run_tree) AND length(Breaches.Limit) > 0
),
stopped AS (SELECT DISTINCT RunId FROM breaches WHERE b.2 = 'stop'),
typical AS (
    SELECT Name, avg(LlmCalls) AS MeanCalls FROM runs WHERE RunId NOT IN (SELECT RunId FROM stopped) GROUP BY Name
)
SELECT
    b.b.1 AS Limit, b.b.2 AS Action, count() AS Breaches, uniqExact(b.RunId) AS Runs,
    round(sum(b.CostUsd), 6) AS CostOfRunsUsd,
    round(sumIf(if(b.LlmCalls = 0, 0, b.CostUsd * greatest(ifNull(t.MeanCalls, 0) / b.LlmCalls - 1, 0)), b.b.2 = 'stop'), 6) AS SavedUsdEstimate
FROM breaches AS b
LEFT JOIN typical AS t ON t.Name = b.Name
GROUP BY Limit, Action
ORDER BY Breaches DESC, Limit, Action
