-- (shared) One run and its sub-runs, 16 levels deep: the run_tree CTE, included after WITH RECURSIVE.
run_tree AS (
    SELECT {run_id:String} AS RunId, 0 AS Depth
    UNION ALL
    SELECT s.RunId, run_tree.Depth + 1
    FROM runmeter_runs_current AS s
    INNER JOIN run_tree ON s.ParentRunId = run_tree.RunId
    WHERE run_tree.Depth < 16
)
