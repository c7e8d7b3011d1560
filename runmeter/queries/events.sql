-- The latest events worth an alert in the window: loop signals, budget breaches (stopped or
-- warned), runs longer than {long_run_s} seconds, and abandoned runs. Newest first.
WITH RECURSIVE {{include:_runs}},
signals AS (
    SELECT r.RunId AS RunId, r.Name AS Name, r.EndTime AS Time, round(r.CostUsd, 6) AS CostUsd,
           arrayJoin(arrayZip(c.LoopSignals.Kind, c.LoopSignals.Key, c.LoopSignals.Count)) AS s
    FROM runs AS r INNER JOIN runmeter_runs_current AS c ON c.RunId = r.RunId
    WHERE length(c.LoopSignals.Kind) > 0
),
breaches AS (
    SELECT r.RunId AS RunId, r.Name AS Name, r.EndTime AS Time, round(r.CostUsd, 6) AS CostUsd,
           arrayJoin(arrayZip(c.Breaches.Limit, c.Breaches.Value, c.Breaches.Threshold, c.Breaches.Action)) AS b
    FROM runs AS r INNER JOIN runmeter_runs_current AS c ON c.RunId = r.RunId
    WHERE length(c.Breaches.Limit) > 0
)
SELECT * FROM (
    SELECT Time, 'loop' AS Event, RunId, Name, CostUsd, s.1 AS Kind,
           concat(s.2, ' × ', toString(s.3)) AS Detail FROM signals
    UNION ALL
    SELECT Time, if(b.4 = 'stop', 'budget_stop', 'budget_warning') AS Event, RunId, Name, CostUsd, b.1 AS Kind,
           concat(toString(round(b.2, 6)), ' over ', toString(round(b.3, 6))) AS Detail FROM breaches
    UNION ALL
    SELECT EndTime AS Time, 'long_run' AS Event, RunId, Name, round(CostUsd, 6) AS CostUsd, 'wall_clock' AS Kind,
           concat(toString(round(dateDiff('millisecond', StartTime, EndTime) / 1000, 1)), ' s') AS Detail
    FROM runs WHERE dateDiff('millisecond', StartTime, EndTime) > {long_run_s:Float64} * 1000
    UNION ALL
    SELECT EndTime AS Time, 'abandoned' AS Event, RunId, Name, round(CostUsd, 6) AS CostUsd, 'no_outcome' AS Kind,
           '' AS Detail
    FROM runs WHERE FinalOutcome = 'abandoned'
)
ORDER BY Time DESC, RunId, Event, Kind
LIMIT {limit:UInt32}
