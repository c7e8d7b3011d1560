-- Run totals recomputed from the calls. A tool call seen twice (runmeter.tool() inside a framework's own
-- tool span of the same tool) is counted once: the other row is a Duplicate, as for LLM calls.
-- Reports sum these over a run and its sub-runs, so calls made in other processes count.
CREATE OR REPLACE VIEW runmeter_run_totals {{on_cluster}} AS
SELECT
    RunId,
    sumIf(CostUsd, Kind = 'llm' AND Duplicate = 0) AS CostUsd,
    countIf(Kind = 'llm' AND Duplicate = 0) AS LlmCalls,
    countIf(Kind = 'llm' AND Duplicate = 0 AND Priced = 0) AS UnpricedCalls,
    countIf(Kind = 'llm' AND Duplicate = 0 AND Estimated = 1) AS EstimatedCalls,
    countIf(Kind = 'tool' AND Duplicate = 0) AS ToolCalls,
    sumIf(InputTokens, Kind = 'llm' AND Duplicate = 0) AS InputTokens,
    sumIf(OutputTokens, Kind = 'llm' AND Duplicate = 0) AS OutputTokens,
    sumIf(CacheReadTokens, Kind = 'llm' AND Duplicate = 0) AS CacheReadTokens,
    sumIf(CacheWriteTokens, Kind = 'llm' AND Duplicate = 0) AS CacheWriteTokens,
    sumIf(ReasoningTokens, Kind = 'llm' AND Duplicate = 0) AS ReasoningTokens,
    min(Timestamp) AS FirstCall,
    max(Timestamp) AS LastCall
FROM runmeter_calls
WHERE RunId != ''
GROUP BY RunId;
