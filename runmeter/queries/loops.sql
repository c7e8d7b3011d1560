-- Runs with loop signals (a sub-run's too: a sub-agent stuck in a loop is listed under its own
-- name and id), and the spend the repeats cost. Repeated identical LLM inputs: the
-- cost of every repeat after the first (measured). Tool repeats: the run's LLM spend times the
-- share of its tool calls that were repeats (an estimate).
WITH RECURSIVE {{include:_runs}},
signals AS (
    SELECT RunId, Name, Owner, Project, CostUsd, ToolCallsTotal,
           arrayJoin(arrayZip(LoopSignals.Kind, LoopSignals.Key, LoopSignals.Count)) AS s
    FROM runmeter_runs_current
    WHERE RunId IN (SELECT RunId FROM run_tree) AND length(LoopSignals.Kind) > 0
),
repeated_inputs AS (
    SELECT RunId, sum(GroupCost) - sum(FirstCost) AS RepeatCost
    FROM (
        SELECT RunId, InputHash, sum(CostUsd) AS GroupCost, argMin(CostUsd, Timestamp) AS FirstCost
        FROM runmeter_calls
        WHERE Kind = 'llm' AND Duplicate = 0 AND InputHash != '' AND RunId IN (SELECT RunId FROM run_tree)
        GROUP BY RunId, InputHash
        HAVING count() > 1
    )
    GROUP BY RunId
)
SELECT
    s.RunId AS RunId, s.Name AS Name, s.Owner AS Owner, s.Project AS Project,
    s.s.1 AS Kind, s.s.2 AS Key, s.s.3 AS Count,
    round(s.CostUsd, 6) AS RunCostUsd,
    round(multiIf(
        s.s.1 = 'identical_llm_input', ifNull(ri.RepeatCost, 0),
        s.ToolCallsTotal = 0, 0,
        s.CostUsd * (s.s.3 - 1) / s.ToolCallsTotal), 6) AS WastedUsd,
    s.s.1 != 'identical_llm_input' AS WasteIsEstimate
FROM signals AS s
LEFT JOIN repeated_inputs AS ri ON ri.RunId = s.RunId
ORDER BY WastedUsd DESC, RunId, Kind, Key
