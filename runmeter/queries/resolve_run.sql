-- The runs whose id starts with a prefix (a short id, as `runmeter runs` shows), at most 10.
SELECT DISTINCT RunId FROM runmeter_runs_current
WHERE startsWith(RunId, {prefix:String})
ORDER BY RunId
LIMIT 10
