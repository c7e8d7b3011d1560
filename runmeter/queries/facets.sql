-- The values the run filters can take in the window: owners, projects, run names, models.
SELECT Facet, Value FROM (
    SELECT 'owner' AS Facet, Owner AS Value FROM runmeter_runs_current
    WHERE ParentRunId = '' AND StartTime >= {since:DateTime64(9)} AND StartTime < {until:DateTime64(9)} GROUP BY Owner
    UNION ALL
    SELECT 'project', Project FROM runmeter_runs_current
    WHERE ParentRunId = '' AND StartTime >= {since:DateTime64(9)} AND StartTime < {until:DateTime64(9)} GROUP BY Project
    UNION ALL
    SELECT 'name', Name FROM runmeter_runs_current
    WHERE ParentRunId = '' AND StartTime >= {since:DateTime64(9)} AND StartTime < {until:DateTime64(9)} GROUP BY Name
    UNION ALL
    SELECT 'model', Model FROM runmeter_calls
    WHERE Kind = 'llm' AND Timestamp >= {since:DateTime64(9)} AND Timestamp < {until:DateTime64(9)} GROUP BY Model
)
WHERE Value != ''
ORDER BY Facet, Value
LIMIT 200 BY Facet
