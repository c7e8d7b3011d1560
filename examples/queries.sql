-- The key questions, in plain ClickHouse SQL over the runmeter store.
-- (Run them with `clickhouse client`, Grafana, or the runmeter CLI's --json output.)

-- 1. Cost per accepted run, by run name, last 7 days. Rejected, abandoned and failed runs count in
--    the numerator: that is the point. A run with no outcome a day after it ended is abandoned.
SELECT r.Name,
       count() AS runs,
       sum(r.CostUsd) AS total_usd,
       countIf(o.Outcome = 'accepted') AS accepted,
       total_usd / nullIf(accepted, 0) AS cost_per_accepted_run
FROM runmeter_runs_current AS r
LEFT JOIN runmeter_run_outcome AS o ON o.RunId = r.RunId
WHERE r.ParentRunId = '' AND r.StartTime > now() - INTERVAL 7 DAY
GROUP BY r.Name ORDER BY total_usd DESC;

-- 2. Spend by owner, project and provider per day (unpriced calls counted, never summed as $0).
SELECT toDate(Timestamp) AS day, Owner, Project, Provider,
       sumIf(CostUsd, Priced = 1) AS usd, countIf(Priced = 0) AS unpriced_calls
FROM runmeter_calls WHERE Kind = 'llm' AND Duplicate = 0
GROUP BY day, Owner, Project, Provider ORDER BY day, usd DESC;

-- 3. Tool calls and repeated context reads per run.
SELECT RunId, Name, ToolCallsTotal, RepeatedContextReads
FROM runmeter_runs_current WHERE length(mapKeys(RepeatedContextReads)) > 0
ORDER BY ToolCallsTotal DESC LIMIT 20;

-- 4. Runs stuck in loops.
SELECT RunId, Name, LoopSignals.Kind, LoopSignals.Count, CostUsd
FROM runmeter_runs_current WHERE length(LoopSignals.Kind) > 0 ORDER BY CostUsd DESC;

-- 5. Does the newer model write longer answers to short prompts and shorter ones to long prompts?
SELECT Model, multiIf(InputTokens < 1000, 'small', InputTokens <= 10000, 'medium', 'large') AS prompt,
       count() AS calls, quantileExact(0.5)(OutputTokens) AS median_output, avg(CostUsd) AS usd_per_call
FROM runmeter_calls WHERE Kind = 'llm' AND Duplicate = 0
GROUP BY Model, prompt ORDER BY Model, prompt;

-- 6. Budget breaches, stopped vs warned.
SELECT b.1 AS limit, b.2 AS action, count() AS breaches
FROM runmeter_runs_current ARRAY JOIN arrayZip(Breaches.Limit, Breaches.Action) AS b
GROUP BY limit, action;

-- 7. A run's totals recomputed from its calls (runs split across collector replicas sum correctly).
SELECT * FROM runmeter_run_totals WHERE RunId = 'paste-a-run-id';
