-- The latest record of each run (see runmeter_runs).
CREATE VIEW IF NOT EXISTS runmeter_runs_current {{on_cluster}} AS
SELECT * FROM runmeter_runs FINAL;

-- The latest outcome of each run: the one set in the run, or a later outcome event.
CREATE VIEW IF NOT EXISTS runmeter_run_outcome {{on_cluster}} AS
SELECT RunId, argMax(Outcome, Time) AS Outcome, argMax(Reason, Time) AS Reason, max(Time) AS OutcomeTime
FROM (
    SELECT RunId, Outcome, OutcomeReason AS Reason, EndTime AS Time FROM runmeter_runs FINAL WHERE Outcome != ''
    UNION ALL
    SELECT RunId, Outcome, Reason, Time FROM runmeter_outcomes
)
GROUP BY RunId;

-- Run totals recomputed from the calls (one call counted once), for runs split across
-- writers and for spans that arrived after their run was cut.
CREATE VIEW IF NOT EXISTS runmeter_run_totals {{on_cluster}} AS
SELECT
    RunId,
    sumIf(CostUsd, Kind = 'llm' AND Duplicate = 0) AS CostUsd,
    countIf(Kind = 'llm' AND Duplicate = 0) AS LlmCalls,
    countIf(Kind = 'llm' AND Duplicate = 0 AND Priced = 0) AS UnpricedCalls,
    countIf(Kind = 'tool') AS ToolCalls,
    sumIf(InputTokens, Kind = 'llm' AND Duplicate = 0) AS InputTokens,
    sumIf(OutputTokens, Kind = 'llm' AND Duplicate = 0) AS OutputTokens,
    min(Timestamp) AS FirstCall,
    max(Timestamp) AS LastCall
FROM runmeter_calls
WHERE RunId != ''
GROUP BY RunId;
