-- Loop signals and budget breaches of one run and its sub-runs, by the run they belong to.
WITH RECURSIVE {{include:_run_subtree}}
SELECT * FROM (
    SELECT RunId, 'loop' AS Signal, s.1 AS Kind, s.2 AS Key, s.3 AS Count, NULL AS Value, NULL AS Threshold, '' AS Action
    FROM runmeter_runs_current ARRAY JOIN arrayZip(LoopSignals.Kind, LoopSignals.Key, LoopSignals.Count) AS s
    WHERE RunId IN (SELECT RunId FROM run_tree)
    UNION ALL
    SELECT RunId, 'budget' AS Signal, b.1 AS Kind, '' AS Key, NULL AS Count, b.2 AS Value, b.3 AS Threshold, b.4 AS Action
    FROM runmeter_runs_current ARRAY JOIN arrayZip(Breaches.Limit, Breaches.Value, Breaches.Threshold, Breaches.Action) AS b
    WHERE RunId IN (SELECT RunId FROM run_tree)
)
ORDER BY RunId, Signal, Kind, Key
