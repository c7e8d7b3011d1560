-- One run's outcome history: the outcome set in the run, then each later event (a review, the
-- CLI), oldest first. The last one is the run's outcome.
SELECT Time, Outcome, Reason, Source FROM (
    SELECT EndTime AS Time, Outcome, OutcomeReason AS Reason, 'run' AS Source
    FROM runmeter_runs_current WHERE RunId = {run_id:String} AND Outcome != ''
    UNION ALL
    SELECT Time, Outcome, Reason, toString(Source) AS Source FROM runmeter_outcomes WHERE RunId = {run_id:String}
)
ORDER BY Time
